import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { CID } from 'multiformats/cid'
import { walkDag, type BlockReadOptions, type BlockSource } from '../content/dag-reader.ts'
import { chunkPool } from '../content/chunk-pool.ts'
import { BlockNotFoundError } from '../content/fs-blockstore.ts'
import type { Metrics } from '../metrics.ts'
import type { RemoteBlocks } from '../registry/remote-blocks.ts'
import type { ErrorRenderer } from '../http-errors.ts'
import { untilClientLeaves } from '../http-request.ts'
import { UnsupportedError } from '../oci/errors.ts'
import { PEER_HEADER, ROOT_HEADER } from './block-request.ts'
import { CAR, CidInvalidError, FormatUnacceptableError, RAW, TAR } from './gateway-errors.ts'
import type { UnixfsFormat } from './gateway-unixfs.ts'
import { relayedBlock } from './relayed-block.ts'

export { CidInvalidError, FormatUnacceptableError } from './gateway-errors.ts'

/** The /ipfs face's error format: one line of plain text. */
export const renderGatewayError: ErrorRenderer = error => ({
  headers: { 'content-type': 'text/plain; charset=utf-8', ...error.headers },
  body: `${error.message}\n`
})

/** Paces what the gateway sends (a TokenBucket); `take` resolves once `bytes` may go out. */
export interface UploadLimiter {
  take(bytes: number, signal: AbortSignal): Promise<void>
}

export interface GatewayRoutesOptions {
  blocks: BlockSource & { has(cid: CID, options?: BlockReadOptions): Promise<boolean>, readInto?: (cid: CID, into: Buffer) => Promise<Buffer | undefined> }
  metrics: Metrics
  /** Caps this node's upload rate, so a popular seeder is never swamped (D4). None: no cap. */
  uploadLimiter?: UploadLimiter
  /** When given: blocks this node lacks are fetched from the fleet (opt-in). */
  remote?: RemoteBlocks
  /** For a peer's request of a block this node lacks: the block if this node can relay it. */
  relay?: Relay
}

export type Relay = (cid: CID, root: CID | undefined, peer: string | undefined, signal: AbortSignal) => Promise<Uint8Array | undefined>

/**
 * The IPFS Trustless Gateway (`GET /ipfs/<cid>`): one raw block, or a CAR of the whole DAG.
 * This is how blocks move between nodes (mesh/block-fetcher.ts): the receiver verifies each against its CID.
 * Beyond it, path-gateway reads of UnixFS (gateway-unixfs.ts): `/ipfs/<cid>/<path>`, a file's
 * bytes, a tree as tar.
 */
export function registerGatewayRoutes (app: FastifyInstance, { blocks: local, metrics, uploadLimiter, remote, relay }: GatewayRoutesOptions): void {
  const handler = async (req: FastifyRequest, reply: FastifyReply): Promise<unknown> => {
    const { text, segments } = target(req)
    let cid: CID
    try {
      cid = CID.parse(text)
    } catch {
      throw new CidInvalidError(`not a CID: ${text}`)
    }
    const format = responseFormat(req)
    if (format === undefined) throw new FormatUnacceptableError(`ask for ${RAW}, ${CAR} or ${TAR} (Accept header or ?format=raw|car|tar), or no format for a file's bytes`)
    // Taken before the first wait: a peer that gives up while this node reads or relays the
    // block must not hold a place in the upload cap's queue afterwards.
    const gone = untilClientLeaves(reply)
    if (segments !== undefined || format === 'tar' || format === 'file') {
      // The same source as a CAR's: this node's blocks, and the fleet's for those it lacks (gatewayFetch).
      // The fleet's source reads what is held here first; a DAG held in part (its root alone, fetched
      // by an earlier ?format=raw) is completed from the fleet instead of ending in a 404.
      const blocks = remote === undefined ? local : remote.source(cid)
      if (!(await blocks.has(cid, { signal: gone }))) throw new BlockNotFoundError(cid, `block ${text} is not held by this node${remote === undefined ? '' : ' nor by its peers'}`)
      const pace = async (bytes: number): Promise<void> => {
        if (uploadLimiter !== undefined) await uploadLimiter.take(bytes, gone)
        metrics.bytesOut.inc(bytes)
      }
      // Loaded with the first path, tar or file asked for (tar-stream, @ipld/car): most nodes serve only /v2 and raw blocks.
      const { serveUnixfs } = await import('./gateway-unixfs.ts')
      return await serveUnixfs(req, reply, { root: cid, segments: segments ?? [], format, blocks, pace, signal: gone })
    }
    const held = await local.has(cid)
    const relayed = held || format !== 'raw' ? undefined : await relayFor(req, cid, relay, gone)
    const blocks = relayed !== undefined ? relayedBlock(cid, relayed) : remote === undefined || (held && format === 'raw') ? local : remote.source(cid)
    // A block just found held here is not looked for a second time (a stat per block a peer asks).
    const found = (blocks === local && held) || await blocks.has(cid, { signal: gone })
    if (!found) throw new BlockNotFoundError(cid, `block ${text} is not held by this node${remote === undefined ? '' : ' nor by its peers'}`)
    reply.header('x-content-type-options', 'nosniff').header('cache-control', 'public, max-age=29030400, immutable')
      .header('etag', `"${cid.toString()}.${format}"`).header('vary', 'Accept')
    if (format === 'raw') {
      // Blocks held here are read into a pooled buffer, given back once the socket has sent it:
      // a fresh buffer per block made garbage collection most of a seeder's CPU.
      const pooled = blocks === local && local.readInto !== undefined ? chunkPool.take() : undefined
      const inPool = pooled === undefined || local.readInto === undefined ? undefined : await local.readInto(cid, pooled).catch(() => undefined)
      if (pooled !== undefined && inPool === undefined) chunkPool.give(pooled)
      const bytes = inPool ?? await blocks.getBytes(cid, { signal: gone })
      const release = (): void => { if (inPool !== undefined && pooled !== undefined) chunkPool.give(pooled) }
      reply.header('content-type', RAW).header('content-length', bytes.length)
      if (req.method === 'HEAD') {
        release()
        return await reply.send()
      }
      if (uploadLimiter !== undefined) {
        try {
          await uploadLimiter.take(bytes.length, gone)
        } catch (err) {
          release()
          if (!gone.aborted) throw err
          // The client left while waiting for its turn: there is nobody to answer.
          return reply.hijack()
        }
      }
      metrics.bytesOut.inc(bytes.length)
      if (inPool === undefined) return await reply.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
      reply.hijack()
      reply.raw.writeHead(200, reply.getHeaders() as Record<string, string>)
      reply.raw.once('close', release)
      reply.raw.end(inPool)
      return reply
    }
    reply.header('content-type', `${CAR}; version=1`)
    if (req.method === 'HEAD') return await reply.send()
    const { CarWriter } = await import('@ipld/car')
    const { writer, out } = CarWriter.create([cid])
    const body = Readable.from(out)
    const abort = new AbortController()
    req.raw.once('close', () => abort.abort())
    void (async () => {
      try {
        for await (const block of walkDag(blocks, cid, abort.signal)) {
          if (uploadLimiter !== undefined) await uploadLimiter.take(block.bytes.length, abort.signal)
          metrics.bytesOut.inc(block.bytes.length)
          await writer.put(block)
        }
        await writer.close()
      } catch (err) {
        // The 200 and the first blocks are out: a CAR that simply ended here would look whole, so
        // the response is cut instead (the client sees a broken transfer, never a short CAR).
        if (!abort.signal.aborted) req.log.error({ err, cid: text }, 'CAR walk failed mid-response')
        body.destroy(err as Error)
      }
    })()
    return await reply.send(body)
  }
  app.route({ method: ['GET', 'HEAD'], url: '/ipfs/:cid', exposeHeadRoute: false, handler })
  app.route({ method: ['GET', 'HEAD'], url: '/ipfs/:cid/*', exposeHeadRoute: false, handler })
}

/**
 * The CID and the path below it, read from the URL as sent: the router decodes the wildcard
 * whole, which would split a name holding an encoded '/'. No path (`/ipfs/<cid>`): undefined;
 * `/ipfs/<cid>/` is the root itself, through the UnixFS reads. Empty segments are skipped.
 */
function target (req: FastifyRequest): { text: string, segments: string[] | undefined } {
  const params = req.params as { cid: string, '*'?: string }
  if (params['*'] === undefined) return { text: params.cid, segments: undefined }
  const below = (req.url.split('?', 1)[0] ?? '').split('/').slice(3).filter(segment => segment !== '')
  try {
    return { text: params.cid, segments: below.map(segment => decodeURIComponent(segment)) }
  } catch {
    // The router refuses bad escapes first (FST_ERR_BAD_URL); this is the backstop.
    throw new UnsupportedError('the path is not validly percent-encoded')
  }
}

/** Asks the relay for a block a peer wants, with what the peer said of itself. */
async function relayFor (req: FastifyRequest, cid: CID, relay: Relay | undefined, gone: AbortSignal): Promise<Uint8Array | undefined> {
  if (relay === undefined) return undefined
  const peer = req.headers[PEER_HEADER]
  const rootText = req.headers[ROOT_HEADER]
  let root: CID | undefined
  try {
    root = typeof rootText === 'string' ? CID.parse(rootText) : undefined
  } catch {
    root = undefined
  }
  return await relay(cid, root, typeof peer === 'string' ? peer : undefined, gone)
}

/** `?format=` first, then Accept (raw before CAR, as ever); neither: a file's bytes (deserialized). */
function responseFormat (req: FastifyRequest): UnixfsFormat | undefined {
  const query = (req.query as Record<string, unknown>).format
  if (query === 'raw' || query === 'car' || query === 'tar') return query
  const accept = req.headers.accept ?? ''
  if (accept.includes(RAW)) return 'raw'
  if (accept.includes(CAR)) return 'car'
  if (accept.includes(TAR)) return 'tar'
  // A format asked by name that is none of these is refused, not answered with bytes.
  if (query !== undefined) return undefined
  return 'file'
}
