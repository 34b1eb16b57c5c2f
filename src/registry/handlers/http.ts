// What every /v2 handler shares: its signature, the request's body and headers as the protocol
// reads them, and how blob bytes go out.
import { once } from 'node:events'
import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { reclaimChunk, type PooledBytes } from '../../content/chunk-pool.ts'
import type { Metrics } from '../../metrics.ts'
import { BlobUploadInvalidError, BodyTooSlowError, ClientAbortedError, TooLargeError, UnsupportedError } from '../../oci/errors.ts'
import { isIpfsRepository } from '../ipfs-images.ts'

/** A handler of one method of one resource; `match` is [repository, ...the rest of the path it matched]. */
export type Handler = (req: FastifyRequest, reply: FastifyReply, match: string[]) => Promise<unknown>
/** The methods a resource takes. */
export type ResourceHandlers = Partial<Record<'GET' | 'HEAD' | 'PUT' | 'PATCH' | 'POST' | 'DELETE', Handler>>

/** Response header carrying the CID of the image directory a manifest names (D3). */
export const IMAGE_CID_HEADER = 'shoal-image-cid'
// Not an ESM import of node:http: see http-errors.ts.
const { IncomingMessage } = process.getBuiltinModule('node:http')
const DEFAULT_PAGE = 1000
const MAX_PAGE = 10_000

/** The repository, if it can be written to: ipfs/<cid> repositories are image directories, immutable. */
export function writable (repository: string): string {
  if (isIpfsRepository(repository)) throw new UnsupportedError('ipfs/<cid> repositories are read-only: an image directory never changes')
  return repository
}

/**
 * How slow a request body may be. Only time spent waiting for the client counts: while the node
 * itself is busy with what arrived (writing blocks, holding a lock) the client is not to blame.
 */
export interface BodyPace {
  /** A body silent this long is cut; 0: never. */
  idleMs: number
  /** Bytes a body must bring per second of waiting, averaged over `windowMs`; 0: no floor. */
  minBytesPerSecond: number
  windowMs: number
}

export const NO_BODY_PACE: BodyPace = { idleMs: 0, minBytesPerSecond: 0, windowMs: 30_000 }

/**
 * The request body, chunk by chunk. A client that leaves before its end is a ClientAbortedError;
 * one that stalls or trickles below `pace` is a BodyTooSlowError: neither is a fault of the node.
 */
export async function * requestBody (req: FastifyRequest, pace: BodyPace = NO_BODY_PACE): AsyncIterable<Buffer> {
  const source = req.raw as Readable
  const watch = new PaceWatch(pace)
  for (;;) {
    const chunk = source.read() as Buffer | null
    if (chunk !== null) {
      watch.received(chunk.length)
      yield chunk
      continue
    }
    if (source.readableEnded) return
    if (source.errored !== null || source.destroyed) {
      if (source.readableAborted) throw new ClientAbortedError('the client went away before the body was complete', undefined, { cause: source.errored })
      throw source.errored ?? new ClientAbortedError('the request was closed before its body was complete')
    }
    await watch.wait(source)
  }
}

/** Accounts the time spent waiting for a body against its pace. */
class PaceWatch {
  private readonly pace: BodyPace
  private windowWaitedMs = 0
  private windowBytes = 0

  constructor (pace: BodyPace) {
    this.pace = pace
  }

  received (bytes: number): void {
    this.windowBytes += bytes
  }

  /** Resolves once the source has something to say (data, end, error); rejects when the body is too slow. */
  async wait (source: Readable): Promise<void> {
    const { idleMs, minBytesPerSecond, windowMs } = this.pace
    const waitStarted = performance.now()
    // Waiting time up to here is already counted in the window.
    let counted = waitStarted
    const count = (): number => {
      const now = performance.now()
      this.windowWaitedMs += now - counted
      counted = now
      return now
    }
    await new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined
      const stop = (): void => {
        clearTimeout(timer)
        source.off('readable', done).off('end', done).off('error', done).off('close', done)
      }
      function done (): void {
        stop()
        count()
        resolve()
      }
      const check = (): void => {
        const now = count()
        if (idleMs > 0 && now - waitStarted >= idleMs) {
          stop()
          reject(new BodyTooSlowError(`the body was silent for ${Math.round(idleMs / 1000)} s`))
          return
        }
        if (minBytesPerSecond > 0 && this.windowWaitedMs >= windowMs) {
          const rate = this.windowBytes / (this.windowWaitedMs / 1000)
          if (rate < minBytesPerSecond) {
            stop()
            reject(new BodyTooSlowError(`the body arrived at ${Math.round(rate)} bytes/s over ${Math.round(windowMs / 1000)} s, below the ${minBytesPerSecond} bytes/s this node asks`))
            return
          }
          this.windowWaitedMs = 0
          this.windowBytes = 0
        }
        const idleLeft = idleMs > 0 ? idleMs - (now - waitStarted) : Infinity
        const windowLeft = minBytesPerSecond > 0 ? windowMs - this.windowWaitedMs : Infinity
        const delay = Math.min(idleLeft, windowLeft)
        if (delay !== Infinity) timer = setTimeout(check, Math.max(1, delay))
      }
      source.on('readable', done).on('end', done).on('error', done).on('close', done)
      check()
    })
  }
}

/**
 * An upload's body, counted into the bytes-received metric. Each chunk is lent: once the next
 * is asked for, a chunk read from a socket (a copy of its own, made by Node's HTTP parser) is
 * freed (reclaimChunk), so a consumer copies what it keeps; the upload writer does. An injected
 * request's body may be its caller's own buffer, and is left alone.
 */
export function countIn (req: FastifyRequest, metrics: Metrics, pace: BodyPace): AsyncIterable<Uint8Array> {
  const fromSocket = req.raw instanceof IncomingMessage
  return (async function * () {
    for await (const chunk of requestBody(req, pace)) {
      metrics.bytesIn.inc(chunk.length)
      yield chunk
      if (fromSocket) reclaimChunk(chunk)
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
export async function writeChunks (reply: FastifyReply, chunks: AsyncIterable<PooledBytes>, metrics: Metrics, closed: AbortSignal): Promise<void> {
  // The first chunk is read before the headers go out: a blob that cannot be read at all (its
  // first block missing or found corrupt, no peer serving it) still gets an error status and body.
  const iterator = chunks[Symbol.asyncIterator]()
  let next = Promise.resolve(await iterator.next())
  reply.header('docker-distribution-api-version', 'registry/2.0')
  reply.hijack()
  const res = reply.raw
  res.writeHead(reply.statusCode, reply.getHeaders() as Record<string, string>)
  // One chunk read ahead: the next leaf comes off disk while this one goes out.
  try {
    for (;;) {
      const result = await next
      if (result.done === true) break
      const chunk = result.value
      if (closed.aborted) {
        chunk.release()
        await iterator.return?.()
        break
      }
      next = iterator.next()
      metrics.bytesOut.inc(chunk.bytes.length)
      if (!res.write(chunk.bytes, () => chunk.release())) {
        await once(res, 'drain', { signal: closed }).catch(() => {})
      }
    }
    res.end()
  } catch (err) {
    // Headers are gone: all that is left is to cut the response short. A read stopped because
    // the client left is no fault of the node.
    if (closed.aborted) reply.log.debug({ err }, 'blob read stopped: the client went away')
    else reply.log.error({ err }, 'blob read failed mid-response')
    res.destroy(err as Error)
  }
}
