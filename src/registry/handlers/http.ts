// What every /v2 handler shares: its signature, the request's body and headers as the protocol
// reads them, and how blob bytes go out.
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { PooledBytes } from '../../content/chunk-pool.ts'
import type { Metrics } from '../../metrics.ts'
import { BlobUploadInvalidError, ClientAbortedError, TooLargeError, UnsupportedError } from '../../oci/errors.ts'
import { isIpfsRepository } from '../ipfs-images.ts'

/** A handler of one method of one resource; `match` is [repository, ...the rest of the path it matched]. */
export type Handler = (req: FastifyRequest, reply: FastifyReply, match: string[]) => Promise<unknown>
/** The methods a resource takes. */
export type ResourceHandlers = Partial<Record<'GET' | 'HEAD' | 'PUT' | 'PATCH' | 'POST' | 'DELETE', Handler>>

/** Response header carrying the CID of the image directory a manifest names (D3). */
export const IMAGE_CID_HEADER = 'shoal-image-cid'
const DEFAULT_PAGE = 1000
const MAX_PAGE = 10_000

/** The repository, if it can be written to: ipfs/<cid> repositories are image directories, immutable. */
export function writable (repository: string): string {
  if (isIpfsRepository(repository)) throw new UnsupportedError('ipfs/<cid> repositories are read-only: an image directory never changes')
  return repository
}

/** The request body; a client that leaves before its end is a ClientAbortedError, not a fault of the node. */
export async function * requestBody (req: FastifyRequest): AsyncIterable<Buffer> {
  const source = req.raw as Readable
  try {
    for await (const chunk of source) yield chunk as Buffer
  } catch (err) {
    if (source.readableAborted) throw new ClientAbortedError('the client went away before the body was complete', undefined, { cause: err })
    throw err
  }
}

/** The request body, counted into the bytes-received metric. */
export function countIn (req: FastifyRequest, metrics: Metrics): AsyncIterable<Uint8Array> {
  return (async function * () {
    for await (const chunk of requestBody(req)) {
      metrics.bytesIn.inc(chunk.length)
      yield chunk
    }
  })()
}

/** A whole small body (a manifest), refused past `limit` bytes. */
export async function readLimited (source: AsyncIterable<Buffer>, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of source) {
    size += chunk.length
    if (size > limit) throw new TooLargeError(`${what} is larger than ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** Content-Length as a number; undefined when absent (Node's parser has already refused malformed ones). */
export function contentLength (req: FastifyRequest): number | undefined {
  const header = req.headers['content-length']
  if (header === undefined) return undefined
  const length = Number(header)
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined
}

/** An upload chunk's Content-Range (`<start>-<end>`, with or without `bytes`). */
export function contentRange (req: FastifyRequest): { start: number, end: number } | undefined {
  const header = req.headers['content-range']
  if (header === undefined) return undefined
  const match = /^(?:bytes[ =])?(\d+)-(\d+)(?:\/\d+|\/\*)?$/.exec(header.trim())
  if (match === null || Number(match[2]) < Number(match[1])) throw new BlobUploadInvalidError(`invalid Content-Range: ${header}`)
  return { start: Number(match[1]), end: Number(match[2]) }
}

/** The `n` and `last` of a paginated list. */
export function pageOf (req: FastifyRequest): { n: number, last: string | undefined } {
  const query = req.query as Record<string, string | undefined>
  const n = query.n === undefined ? DEFAULT_PAGE : Number(query.n)
  if (!Number.isSafeInteger(n) || n < 0) throw new UnsupportedError(`invalid n: ${query.n ?? ''}`)
  return { n: Math.min(n, MAX_PAGE), last: query.last }
}

/** A Link header to the next page of a list, when this page is full. */
export function nextPageLink (reply: FastifyReply, path: string, page: string[], n: number): void {
  const next = page.length === n ? page.at(-1) : undefined
  if (next !== undefined) reply.header('link', `<${path}?n=${n}&last=${encodeURIComponent(next)}>; rel="next"`)
}

/**
 * Writes pooled chunks straight to the socket, handing each buffer back to the pool once the
 * socket is done with it (fastify's stream piping cannot tell when that is).
 */
export async function writeChunks (reply: FastifyReply, chunks: AsyncIterable<PooledBytes>, metrics: Metrics): Promise<void> {
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
