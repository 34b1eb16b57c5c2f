// The names' HTTP faces beside /ipfs: `/ipns/<name>[/path]` (an IPNS name, or a domain through
// its DNSLink, as gateways resolve them) answers with a redirect to the `/ipfs/<cid>[/path]` it
// names now, so the content is served, and guarded, by the one /ipfs route; asked for its record
// (`?format=ipns-record`) it answers the record. `/routing/v1/ipns/<name>` is the delegated
// routing API's record lookup (specs.ipfs.tech/routing/http-routing-v1).
import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { untilClientLeaves } from '../http-request.ts'
import { FormatUnacceptableError } from '../mesh/gateway-errors.ts'
import { UnsupportedError } from '../oci/errors.ts'
import { InvalidNameError, NotImplementedError } from './errors.ts'
import { looksLikeDomain } from './domain.ts'
import type { ContentPath, ResolvedRecord } from './names.ts'

export const IPNS_RECORD = 'application/vnd.ipfs.ipns-record'
/** The spec's default max-age for an answer without a TTL. */
const DEFAULT_MAX_AGE_SECONDS = 60

export interface NameGatewayOptions {
  names: {
    resolvePath(path: string, signal: AbortSignal, field?: string): Promise<ContentPath>
    record(name: string, signal: AbortSignal, field?: string): Promise<ResolvedRecord>
  }
}

export function registerNameGatewayRoutes (app: FastifyInstance, { names }: NameGatewayOptions): void {
  const gateway = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const { name, segments, trailingSlash } = target(req)
    const signal = untilClientLeaves(reply)
    const query = new URLSearchParams(req.url.split('?', 2)[1] ?? '')
    if (query.get('format') === 'ipns-record' || (req.headers.accept ?? '').includes(IPNS_RECORD)) {
      if (looksLikeDomain(name)) throw new InvalidNameError(`${name} is a domain: it has a DNSLink, not an IPNS record (ask /ipns/${name} for its content)`)
      return await sendRecord(reply, await names.record(name, signal), req.method === 'HEAD')
    }
    const resolved = await names.resolvePath(`/ipns/${name}`, signal)
    const below = [...resolved.segments, ...segments].map(segment => `/${encodeURIComponent(segment)}`).join('')
    // A trailing slash asks for the directory itself (the /ipfs face's UnixFS read), so it stays.
    const search = req.url.includes('?') ? `?${req.url.split('?', 2)[1] ?? ''}` : ''
    return await reply.code(302)
      .header('location', `/ipfs/${resolved.cid.toString()}${below}${trailingSlash ? '/' : ''}${search}`)
      .header('x-ipfs-path', req.url.split('?', 1)[0] ?? '')
      .header('content-length', 0)
      .send()
  }
  app.route({ method: ['GET', 'HEAD'], url: '/ipns/:name', exposeHeadRoute: false, handler: gateway })
  app.route({ method: ['GET', 'HEAD'], url: '/ipns/:name/*', exposeHeadRoute: false, handler: gateway })

  app.route<{ Params: { name: string } }>({
    method: ['GET', 'HEAD'],
    url: '/routing/v1/ipns/:name',
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const accept = req.headers.accept
      // No Accept, or */*, is taken as asking for the record (curl sends */*).
      if (accept !== undefined && accept !== '' && !accept.includes(IPNS_RECORD) && !accept.includes('*/*')) {
        throw new FormatUnacceptableError(`ask with Accept: ${IPNS_RECORD}`)
      }
      reply.header('access-control-allow-origin', '*')
      return await sendRecord(reply, await names.record(req.params.name, untilClientLeaves(reply)), req.method === 'HEAD')
    }
  })
  app.put('/routing/v1/ipns/:name', async () => {
    throw new NotImplementedError('this node takes no records from outside: names are published with shoal name publish')
  })
}

/** The record as the routing API and the trustless gateway send it: the bytes, an ETag of them, cached for its TTL. */
async function sendRecord (reply: FastifyReply, { bytes, facts }: ResolvedRecord, head: boolean): Promise<FastifyReply> {
  const maxAge = facts.ttlMs > 0 ? Math.floor(facts.ttlMs / 1000) : DEFAULT_MAX_AGE_SECONDS
  reply.header('content-type', IPNS_RECORD).header('content-length', bytes.length)
    .header('etag', `"${createHash('sha256').update(bytes).digest('hex')}"`)
    .header('cache-control', `public, max-age=${maxAge}`)
  return await reply.send(head ? undefined : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
}

/** The name and the segments below it, read from the URL as sent: the router would decode an encoded '/' into a separator. */
function target (req: FastifyRequest): { name: string, segments: string[], trailingSlash: boolean } {
  const path = req.url.split('?', 1)[0] ?? ''
  const [, , rawName = '', ...rest] = path.split('/')
  try {
    return { name: decodeURIComponent(rawName), segments: rest.filter(segment => segment !== '').map(segment => decodeURIComponent(segment)), trailingSlash: rest.length > 0 && path.endsWith('/') }
  } catch {
    throw new UnsupportedError('the path is not validly percent-encoded')
  }
}
