import type { CID } from 'multiformats/cid'
import type * as Undici from 'undici'
import type { Pool } from 'undici'
import { reclaimChunk } from '../content/chunk-pool.ts'
import { undici } from '../undici.ts'
import type { Provider } from './provider-pool.ts'

const RAW = 'application/vnd.ipld.raw'
/** Shoal writes blocks of at most 1 MiB; other importers stay under 2 MiB (bitswap's limit). */
const MAX_BLOCK_BYTES = 4 * 1024 * 1024

export const PEER_HEADER = 'shoal-peer'
export const ROOT_HEADER = 'shoal-root'

/** A provider answered, but not with a block (status, media type, size, time). */
export class ProviderResponseError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'ProviderResponseError'
  }
}

export interface BlockRequestsOptions {
  /** One request, body included. */
  timeoutMs: number
  /** Connections kept to each provider (as many as requests may be in flight to it). */
  connectionsPerProvider: number
  /** CA certificates (PEM) a provider's HTTPS certificate is checked against; default the system's. */
  ca?: string[]
  /** Headers that prove the request is this node's (mesh/peer-signature.ts), for `host:port/path?query`: a provider with authentication on serves members only. */
  sign?: (method: string, target: string) => Promise<Record<string, string>>
  /** This node's peer id, sent so that the provider may relay for it; asked per request. */
  peerId?: () => string
}

/**
 * `GET /ipfs/<cid>` of one raw block from a provider, the body read whole, within a timeout.
 * undici's Pool keeps connections to each provider open across requests (a pull makes
 * thousands); unlike fetch, it does not refuse ports on the Fetch standard's "bad ports" list
 * (6000, 5060, 10080, ...), where a node may well listen. The bytes are not checked here: that
 * is the caller's part.
 */
export class BlockRequests {
  private readonly options: BlockRequestsOptions
  private readonly pools = new Map<string, Pool>()

  constructor (options: BlockRequestsOptions) {
    this.options = options
  }

  /**
   * The block's bytes, into `into` when they fit it (a pooled buffer), else a new buffer. Through
   * undici's dispatch handler, not a body stream: each socket chunk is copied straight into
   * place, where a Readable and its async iterator cost a fetching node a third of its
   * allocations (tick callbacks, buffer views, iterator promises per 64 KiB).
   */
  async get (provider: Provider, cid: CID, signal: AbortSignal, into?: Buffer, root?: CID): Promise<Buffer> {
    const url = new URL(`${provider.url.replace(/\/+$/, '')}/ipfs/${cid.toString()}`)
    const timeout = AbortSignal.timeout(this.options.timeoutMs)
    const headers: Record<string, string> = { accept: RAW }
    if (this.options.peerId !== undefined) headers[PEER_HEADER] = this.options.peerId()
    if (root !== undefined) headers[ROOT_HEADER] = root.toString()
    if (this.options.sign !== undefined) Object.assign(headers, await this.options.sign('GET', `${url.host}${url.pathname}${url.search}`))
    signal.throwIfAborted()
    const stop = AbortSignal.any([signal, timeout])
    try {
      return await new Promise<Buffer>((resolve, reject) => {
        const body = new BodyInto(into)
        let controller: Undici.Dispatcher.DispatchController | undefined
        let settled = false
        const finish = (err: unknown, bytes?: Buffer): void => {
          if (settled) return
          settled = true
          stop.removeEventListener('abort', onStop)
          if (err === undefined && bytes !== undefined) resolve(bytes)
          else {
            // A body not read to its end cannot go back to the pool: the connection is dropped.
            if (controller !== undefined && !controller.aborted) controller.abort(err as Error)
            reject(err)
          }
        }
        const onStop = (): void => { finish(stop.reason) }
        stop.addEventListener('abort', onStop, { once: true })
        this.poolOf(url.origin).dispatch({ method: 'GET', path: url.pathname, headers }, {
          onRequestStart: (started) => {
            controller = started
            if (settled) started.abort(stop.reason as Error)
          },
          onResponseStart: (_controller, statusCode, responseHeaders) => {
            if (statusCode !== 200) return finish(new ProviderResponseError(`HTTP ${statusCode}`))
            const type = String(responseHeaders['content-type'] ?? '')
            if (!type.startsWith(RAW)) return finish(new ProviderResponseError(`answered with ${type === '' ? 'no content type' : type}, not ${RAW}`))
            const declared = Number(responseHeaders['content-length'] ?? 0)
            if (declared > MAX_BLOCK_BYTES) return finish(new ProviderResponseError(`block of ${declared} bytes is over the ${MAX_BLOCK_BYTES} byte limit`))
          },
          onResponseData: (_controller, chunk) => {
            if (settled) return
            if (body.length + chunk.length > MAX_BLOCK_BYTES) return finish(new ProviderResponseError(`block is over the ${MAX_BLOCK_BYTES} byte limit`))
            body.add(chunk)
            // undici lends the socket read it is parsing: a chunk that is that whole read is not
            // looked at again (the parser works on its own copy, and only a paused parser, which
            // this handler never asks for, hands a read's rest back to the socket), so its memory
            // is freed now rather than at the next scavenge (reclaimChunk).
            reclaimChunk(chunk)
          },
          onResponseEnd: () => { finish(undefined, body.bytes()) },
          onResponseError: (_controller, err) => { finish(err) }
        })
      })
    } catch (err) {
      if (timeout.aborted && !signal.aborted) throw new ProviderResponseError(`no answer within ${this.options.timeoutMs} ms`)
      throw err
    }
  }

  /** Closes every connection (the node is stopping). */
  async close (): Promise<void> {
    const pools = [...this.pools.values()]
    this.pools.clear()
    await Promise.all(pools.map(async pool => { await pool.destroy() }))
  }

  private poolOf (origin: string): Pool {
    let pool = this.pools.get(origin)
    if (pool === undefined) {
      // undici is loaded with the first pool (src/undici.ts).
      const { Pool: UndiciPool } = undici()
      pool = new UndiciPool(origin, { connections: this.options.connectionsPerProvider, pipelining: 1, ...(this.options.ca === undefined ? {} : { connect: { ca: this.options.ca } }) })
      this.pools.set(origin, pool)
    }
    return pool
  }
}

/**
 * A response body gathered into `into` (a pooled buffer: a fresh MiB per leaf makes garbage
 * collection the main cost) while it fits, else into chunks joined at the end.
 */
class BodyInto {
  length = 0
  private readonly into: Buffer | undefined
  private chunks: Buffer[] | undefined

  constructor (into: Buffer | undefined) {
    this.into = into
    if (into === undefined) this.chunks = []
  }

  add (chunk: Buffer): void {
    if (this.chunks === undefined && this.into !== undefined && this.length + chunk.length <= this.into.length) {
      chunk.copy(this.into, this.length)
    } else {
      // Past the pooled buffer: what it holds so far becomes the first chunk.
      this.chunks ??= this.into === undefined ? [] : [Buffer.from(this.into.subarray(0, this.length))]
      this.chunks.push(Buffer.from(chunk))
    }
    this.length += chunk.length
  }

  bytes (): Buffer {
    if (this.chunks === undefined) return (this.into as Buffer).subarray(0, this.length)
    const out = this.into !== undefined && this.length <= this.into.length ? this.into.subarray(0, this.length) : Buffer.allocUnsafe(this.length)
    let offset = 0
    for (const chunk of this.chunks) {
      out.set(chunk, offset)
      offset += chunk.length
    }
    return out
  }
}
