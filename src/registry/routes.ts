import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { BlobUploadInvalidError, ClientAbortedError, DigestInvalidError, EndpointUnknownError, MethodUnsupportedError, SizeInvalidError, TooLargeError, UnsupportedError } from '../oci/errors.ts'
import { assertRepositoryName } from '../oci/names.ts'
import type { BlobService, BlobView } from './blob-service.ts'
import { parseRange } from './blob-service.ts'
import { isIpfsRepository, type IpfsImages } from './ipfs-images.ts'
import { MAX_MANIFEST_BYTES, type ManifestService, type StoredManifest } from './manifest-service.ts'
import type { Metrics } from '../metrics.ts'
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import type { PooledBytes } from '../content/chunk-pool.ts'

export interface RegistryRoutesOptions {
  blobs: BlobService
  manifests: ManifestService
  ipfsImages: IpfsImages
  metrics: Metrics
}

/** Response header carrying the CID of the image directory a manifest names (D3). */
export const IMAGE_CID_HEADER = 'shoal-image-cid'
const DEFAULT_PAGE = 1000
const MAX_PAGE = 10_000

type Handler = (req: FastifyRequest, reply: FastifyReply, match: string[]) => Promise<unknown>
interface Route { pattern: RegExp, label: string, methods: Record<string, Handler> }

/** The OCI Distribution 1.1 API under /v2/. */
export function registerRegistryRoutes (app: FastifyInstance, options: RegistryRoutesOptions): void {
  const { blobs, manifests, ipfsImages, metrics } = options

  const blobOf = (repository: string, digest: string): Promise<BlobView> =>
    isIpfsRepository(repository) ? ipfsImages.blob(repository, digest) : blobs.stat(repository, digest)
  const manifestOf = (repository: string, reference: string): Promise<StoredManifest> =>
    isIpfsRepository(repository) ? ipfsImages.manifest(repository, reference) : manifests.get(repository, reference)
  const writable = (repository: string): string => {
    if (isIpfsRepository(repository)) throw new UnsupportedError('ipfs/<cid> repositories are read-only: an image directory never changes')
    return repository
  }

  const sendBlob = async (req: FastifyRequest, reply: FastifyReply, [name, digest]: string[]): Promise<unknown> => {
    const blob = await blobOf(name as string, digest as string)
    reply.header('docker-content-digest', blob.digest).header('accept-ranges', 'bytes').header('content-type', 'application/octet-stream')
    const range = parseRange(req.headers.range, blob.size)
    const length = range === undefined ? blob.size : range.end - range.start + 1
    reply.header('content-length', length)
    if (range !== undefined) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${blob.size}`)
    if (req.method === 'HEAD') return await reply.send()
    await writeChunks(reply, blob.chunks(range), metrics)
    return reply
  }

  const sendManifest = async (req: FastifyRequest, reply: FastifyReply, [name, reference]: string[]): Promise<unknown> => {
    const manifest = await manifestOf(name as string, reference as string)
    reply.header('docker-content-digest', manifest.digest).header('content-type', manifest.mediaType)
      .header('content-length', manifest.bytes.length).header(IMAGE_CID_HEADER, manifest.imageCid)
    return await reply.send(req.method === 'HEAD' ? undefined : manifest.bytes)
  }

  const uploadLocation = (name: string, id: string): string => `/v2/${name}/blobs/uploads/${id}`
  const uploadAccepted = (reply: FastifyReply, name: string, id: string, size: number): FastifyReply =>
    reply.code(202).header('location', uploadLocation(name, id)).header('docker-upload-uuid', id)
      .header('range', `0-${Math.max(0, size - 1)}`).header('content-length', 0)
  const blobCreated = (reply: FastifyReply, name: string, digest: string): FastifyReply =>
    reply.code(201).header('location', `/v2/${name}/blobs/${digest}`).header('docker-content-digest', digest).header('content-length', 0)

  const routes: Route[] = [
    {
      pattern: /^(.+)\/blobs\/uploads\/?$/,
      label: 'upload',
      methods: {
        POST: async (req, reply, [name]) => {
          const repository = writable(name as string)
          const query = req.query as Record<string, string | undefined>
          if (query.mount !== undefined && await blobs.mount(repository, query.mount)) {
            return await blobCreated(reply, repository, query.mount).send()
          }
          const session = await blobs.startUpload(repository)
          if (query.digest !== undefined) {
            const blob = await blobs.finishUpload(repository, session.id, query.digest, countIn(req, metrics), contentLength(req))
            return await blobCreated(reply, repository, blob.digest).send()
          }
          return await uploadAccepted(reply, repository, session.id, 0).send()
        }
      }
    },
    {
      pattern: /^(.+)\/blobs\/uploads\/([^/]+)$/,
      label: 'upload',
      methods: {
        GET: async (_req, reply, [name, id]) => {
          const size = await blobs.uploadSize(name as string, id as string)
          return await uploadAccepted(reply, name as string, id as string, size).code(204).send()
        },
        PATCH: async (req, reply, [name, id]) => {
          const range = contentRange(req)
          const length = contentLength(req)
          if (range !== undefined && length !== undefined && range.end - range.start + 1 !== length) {
            throw new SizeInvalidError(`Content-Range ${range.start}-${range.end} does not match Content-Length ${length}`)
          }
          const size = await blobs.appendChunk(writable(name as string), id as string, countIn(req, metrics), { start: range?.start, length })
          return await uploadAccepted(reply, name as string, id as string, size).send()
        },
        PUT: async (req, reply, [name, id]) => {
          const digest = (req.query as Record<string, string | undefined>).digest
          if (digest === undefined) throw new DigestInvalidError('the digest query parameter is required')
          const length = contentLength(req)
          const hasBody = (length ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined
          const blob = await blobs.finishUpload(writable(name as string), id as string, digest, hasBody ? countIn(req, metrics) : undefined, hasBody ? length : undefined)
          return await blobCreated(reply, name as string, blob.digest).send()
        },
        DELETE: async (_req, reply, [name, id]) => {
          await blobs.cancelUpload(name as string, id as string)
          return await reply.code(204).send()
        }
      }
    },
    {
      pattern: /^(.+)\/blobs\/([^/]+)$/,
      label: 'blob',
      methods: {
        GET: sendBlob,
        HEAD: sendBlob,
        DELETE: async (_req, reply, [name, digest]) => {
          await blobs.delete(writable(name as string), digest as string)
          return await reply.code(202).header('content-length', 0).send()
        }
      }
    },
    {
      pattern: /^(.+)\/manifests\/([^/]+)$/,
      label: 'manifest',
      methods: {
        GET: sendManifest,
        HEAD: sendManifest,
        PUT: async (req, reply, [name, reference]) => {
          const repository = writable(name as string)
          const body = await readLimited(requestBody(req), MAX_MANIFEST_BYTES)
          const pushed = await manifests.put(repository, reference as string, body, req.headers['content-type'] ?? '')
          reply.code(201).header('location', `/v2/${repository}/manifests/${pushed.digest}`)
            .header('docker-content-digest', pushed.digest).header(IMAGE_CID_HEADER, pushed.imageCid).header('content-length', 0)
          if (pushed.subject !== undefined) reply.header('oci-subject', pushed.subject)
          return await reply.send()
        },
        DELETE: async (_req, reply, [name, reference]) => {
          await manifests.delete(writable(name as string), reference as string)
          return await reply.code(202).header('content-length', 0).send()
        }
      }
    },
    {
      pattern: /^(.+)\/tags\/list$/,
      label: 'tags',
      methods: {
        GET: async (req, reply, [name]) => {
          const { n, last } = pageOf(req)
          const tags = isIpfsRepository(name as string)
            ? (await ipfsImages.tags(name as string)).filter(t => last === undefined || t > last).slice(0, n)
            : await manifests.tags(name as string, last, n)
          const next = tags.length === n ? tags.at(-1) : undefined
          if (next !== undefined) reply.header('link', `</v2/${name}/tags/list?n=${n}&last=${encodeURIComponent(next)}>; rel="next"`)
          return await reply.header('content-type', 'application/json').send({ name, tags })
        }
      }
    },
    {
      pattern: /^(.+)\/referrers\/([^/]+)$/,
      label: 'referrers',
      methods: {
        GET: async (req, reply, [name, digest]) => {
          const artifactType = (req.query as Record<string, string | undefined>).artifactType
          const index = isIpfsRepository(name as string)
            ? { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }
            : await manifests.referrers(name as string, digest as string, artifactType)
          if (artifactType !== undefined) reply.header('oci-filters-applied', 'artifactType')
          return await reply.header('content-type', 'application/vnd.oci.image.index.v1+json').send(Buffer.from(JSON.stringify(index)))
        }
      }
    }
  ]

  app.addHook('onSend', async (req, reply) => {
    if (req.url.startsWith('/v2')) reply.header('docker-distribution-api-version', 'registry/2.0')
  })

  app.get('/v2/', async (_req, reply) => reply.header('content-type', 'application/json').send('{}'))
  app.get('/v2', async (_req, reply) => reply.header('content-type', 'application/json').send('{}'))
  app.get('/v2/_catalog', async (req, reply) => {
    const { n, last } = pageOf(req)
    const repositories = await manifests.repositories(last, n)
    const next = repositories.length === n ? repositories.at(-1) : undefined
    if (next !== undefined) reply.header('link', `</v2/_catalog?n=${n}&last=${encodeURIComponent(next)}>; rel="next"`)
    return await reply.header('content-type', 'application/json').send({ repositories })
  })

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'],
    url: '/v2/*',
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const path = decodePath((req.url.split('?')[0] ?? '').slice('/v2/'.length))
      for (const route of routes) {
        const match = route.pattern.exec(path)
        if (match === null) continue
        const [, name = '', ...rest] = match
        routeLabels.set(req, route.label)
        assertRepositoryName(name)
        const handler = route.methods[req.method]
        if (handler === undefined) throw new MethodUnsupportedError(`${req.method} is not supported on ${route.label}`)
        return await handler(req, reply, [name, ...rest])
      }
      throw new EndpointUnknownError(`no registry endpoint at /v2/${path}`)
    }
  })
}

/** The registry route each request matched, for metrics. */
export const routeLabels = new WeakMap<FastifyRequest, string>()

/**
 * Writes pooled chunks straight to the socket, handing each buffer back to the pool once the
 * socket is done with it (fastify's stream piping cannot tell when that is).
 */
async function writeChunks (reply: FastifyReply, chunks: AsyncIterable<PooledBytes>, metrics: Metrics): Promise<void> {
  reply.header('docker-distribution-api-version', 'registry/2.0')
  reply.hijack()
  const res = reply.raw
  res.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string>)
  const closed = new AbortController()
  res.once('close', () => closed.abort())
  // One chunk read ahead: the next leaf comes off disk while this one goes out.
  const iterator = chunks[Symbol.asyncIterator]()
  let next = iterator.next()
  try {
    for (;;) {
      const result = await next
      if (result.done === true) break
      const chunk = result.value
      if (closed.signal.aborted) {
        chunk.release()
        await iterator.return?.()
        break
      }
      next = iterator.next()
      metrics.bytesOut.inc(chunk.bytes.length)
      if (!res.write(chunk.bytes, () => chunk.release())) {
        await once(res, 'drain', { signal: closed.signal }).catch(() => {})
      }
    }
    res.end()
  } catch (err) {
    // Headers are gone: all that is left is to cut the response short.
    reply.log.error({ err }, 'blob read failed mid-response')
    res.destroy(err as Error)
  }
}

function countIn (req: FastifyRequest, metrics: Metrics): AsyncIterable<Uint8Array> {
  return (async function * () {
    for await (const chunk of requestBody(req)) {
      metrics.bytesIn.inc(chunk.length)
      yield chunk
    }
  })()
}

/** The request body; a client that leaves before its end is a ClientAbortedError, not a fault of the node. */
async function * requestBody (req: FastifyRequest): AsyncIterable<Buffer> {
  const source = req.raw as Readable
  try {
    for await (const chunk of source) yield chunk as Buffer
  } catch (err) {
    if (source.readableAborted) throw new ClientAbortedError('the client went away before the body was complete', undefined, { cause: err })
    throw err
  }
}

function decodePath (path: string): string {
  try {
    return decodeURIComponent(path)
  } catch {
    throw new EndpointUnknownError(`malformed URL path: ${path}`)
  }
}

function contentLength (req: FastifyRequest): number | undefined {
  const header = req.headers['content-length']
  if (header === undefined) return undefined
  const length = Number(header)
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined
}

function contentRange (req: FastifyRequest): { start: number, end: number } | undefined {
  const header = req.headers['content-range']
  if (header === undefined) return undefined
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(header.trim())
  if (match === null || Number(match[2]) < Number(match[1])) throw new BlobUploadInvalidError(`invalid Content-Range: ${header}`)
  return { start: Number(match[1]), end: Number(match[2]) }
}

function pageOf (req: FastifyRequest): { n: number, last: string | undefined } {
  const query = req.query as Record<string, string | undefined>
  const n = query.n === undefined ? DEFAULT_PAGE : Number(query.n)
  if (!Number.isSafeInteger(n) || n < 0) throw new UnsupportedError(`invalid n: ${query.n ?? ''}`)
  return { n: Math.min(n, MAX_PAGE), last: query.last }
}

async function readLimited (source: AsyncIterable<Buffer>, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of source) {
    size += chunk.length
    if (size > limit) throw new TooLargeError(`manifest is larger than ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}
