import { once } from 'node:events'
import * as dagPb from '@ipld/dag-pb'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import type { Logger } from 'pino'
import { chunkPool, type PooledBytes } from '../content/chunk-pool.ts'
import { fileSegments, readLeafRange, type BlockSource, type FileSegment } from '../content/dag-reader.ts'
import { BlockNotFoundError, checkBlock } from '../content/fs-blockstore.ts'
import { CONTENT_UNAVAILABLE, ShoalError, UNSUPPORTED } from '../oci/errors.ts'
import { mayRetry, waitToRetry, type RetryPolicy } from '../retry-policy.ts'
import { BlockRequests } from './block-request.ts'
import { fetchDagConcurrently, type DagFetchProgress } from './dag-fetch.ts'
import { ProviderPool, listOf, type Provider, type Providers } from './provider-pool.ts'

export { PEER_HEADER, ROOT_HEADER } from './block-request.ts'
export type { DagFetchProgress } from './dag-fetch.ts'
export type { Provider, Providers } from './provider-pool.ts'

const SHA2_256 = 0x12
/** Defaults, exported for the fleet simulation (bench/fleet-simulation.ts), which models this fetcher. */
export const DEFAULT_READ_AHEAD = 8
export const DEFAULT_MAX_IN_FLIGHT_PER_PROVIDER = 4
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000
export const DEFAULT_RETRY_DELAY_MS = 250
/** Each provider may fail a block this many times. */
export const TRIES_PER_PROVIDER = 2
const MAX_DAG_CONCURRENCY = 32

/** Who asks, sent along with every request so that the provider can relay for it. */
export interface FetchContext {
  /** This node's peer id. */
  peer?: string
  /** The DAG the block belongs to, whose holders the provider may ask in turn. */
  root?: CID
}

/**
 * The block store reads and writes the fetcher needs; FsBlockstore provides them. A read of a
 * block the store lacks throws BlockNotFoundError, and counts as a use for a collection running
 * (as `has` does): a block the fetcher finds it does not fetch again.
 */
export interface FetcherBlockstore extends BlockSource {
  has(cid: CID): Promise<boolean>
  /** `onWritten` runs once `bytes` may be reused, before the block is durable. */
  put(cid: CID, bytes: Uint8Array, options?: { signal?: AbortSignal, onWritten?: () => void }): Promise<unknown>
}

export interface BlockFetcherOptions {
  blockstore: FetcherBlockstore
  /** Requests in flight to one provider, across every fetch of this fetcher. */
  maxInFlightPerProvider?: number
  /** CA certificates (PEM) providers' HTTPS certificates are checked against; default the system's. */
  ca?: string[]
  /** Signs each block request as this node's (providers with authentication on serve members only). */
  sign?: (method: string, target: string) => Promise<Record<string, string>>
  /** One request, body included; defaults to 30 s. */
  requestTimeoutMs?: number
  /** Pause before asking providers again that have all failed once; defaults to 250 ms. */
  retryDelayMs?: number
  /** Leaves fetched ahead of a reader of `fetchFileChunks`; defaults to 8. */
  readAhead?: number
  /** A provider sent bytes that do not hash to the CID asked for. */
  onBadBlock?: (provider: Provider, cid: CID) => void
  /** A block arrived from a provider and verified; `size` is its length in bytes. */
  onBlockFetched?: (provider: Provider, size: number) => void
  /** This node's peer id, sent with requests (see FetchContext); asked when a request goes out. */
  peerId?: () => string
  /** Asked for a block no provider could deliver (none known, or all failed): bitswap-source.ts. */
  fallback?: FallbackSource
  logger?: Logger
}

/**
 * Where a block comes from when no provider has it over HTTP; its bytes are checked against the
 * CID like a provider's. It rejects when it cannot get the block, and stops when `signal` aborts.
 */
export interface FallbackSource {
  /** Named in BlockUnavailableError's reasons, and as the provider in the fetch metrics. */
  readonly name: string
  /** Whether a block it gets is already in this node's blockstore (helia's bitswap puts it there), so the fetcher does not write it again. */
  readonly keepsBlocks: boolean
  get(cid: CID, signal: AbortSignal): Promise<Uint8Array>
}

/**
 * No provider could deliver a block that verifies: the content is held by no peer this node can
 * reach now. Not a fault of this node, so a 503 that says so, not a 500.
 */
export class BlockUnavailableError extends ShoalError {
  static override readonly descriptor = CONTENT_UNAVAILABLE
  readonly cid: CID
  /** Why each attempt failed, as `<provider id>: <reason>`. */
  readonly reasons: string[]
  constructor (cid: CID, reasons: string[]) {
    super(`block ${cid.toString()} is not available from any provider${reasons.length > 0 ? ` (${reasons.join('; ')})` : ' (no providers)'}`)
    this.cid = cid
    this.reasons = reasons
  }
}

/** A CID whose hash the fetcher cannot check, so no bytes for it can be trusted. */
export class UnsupportedHashError extends ShoalError {
  static override readonly descriptor = UNSUPPORTED
  readonly cid: CID
  constructor (cid: CID) {
    super(`CID ${cid.toString()} uses multihash 0x${cid.multihash.code.toString(16)}; blocks are verified with sha2-256 (0x12) only`)
    this.cid = cid
  }
}

/**
 * Fetches blocks from other Shoal nodes over the Trustless Gateway (D4) and verifies each
 * against its CID before it is stored or handed on. Load is spread over providers, least busy
 * first, with a bounded number of requests in flight to each across all concurrent fetches.
 */
export class BlockFetcher {
  private readonly blockstore: FetcherBlockstore
  private readonly pool: ProviderPool
  private readonly requests: BlockRequests
  /** Asking a provider again for a block: each may fail twice; a round of failures costs a pause. */
  private readonly retry: RetryPolicy
  private readonly readAhead: number
  private readonly onBadBlock: ((provider: Provider, cid: CID) => void) | undefined
  private readonly onBlockFetched: ((provider: Provider, size: number) => void) | undefined
  private readonly fallback: FallbackSource | undefined
  /** Bytes the fallback source got and already stored here: written once, not again by the fetcher. */
  private readonly keptByFallback = new WeakSet<Uint8Array>()
  private readonly logger: Logger | undefined
  /** Blocks being fetched now, settled once each is stored (or has failed). */
  private readonly arriving = new Map<string, Promise<void>>()

  constructor (options: BlockFetcherOptions) {
    this.blockstore = options.blockstore
    const maxInFlightPerProvider = options.maxInFlightPerProvider ?? DEFAULT_MAX_IN_FLIGHT_PER_PROVIDER
    this.readAhead = options.readAhead ?? DEFAULT_READ_AHEAD
    if (maxInFlightPerProvider < 1 || this.readAhead < 1) throw new RangeError('maxInFlightPerProvider and readAhead must be at least 1')
    this.pool = new ProviderPool(maxInFlightPerProvider)
    this.requests = new BlockRequests({ timeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS, connectionsPerProvider: maxInFlightPerProvider, peerId: options.peerId, ca: options.ca, sign: options.sign })
    this.retry = { tries: TRIES_PER_PROVIDER, delayMs: options.retryDelayMs ?? DEFAULT_RETRY_DELAY_MS }
    this.onBadBlock = options.onBadBlock
    this.onBlockFetched = options.onBlockFetched
    this.fallback = options.fallback
    this.logger = options.logger
  }

  /** Closes the connections to providers (the node is stopping). */
  async close (): Promise<void> {
    await this.requests.close()
  }

  /** A block from the local store, else from the providers (verified, then stored). */
  async fetchBlock (cid: CID, providers: Providers, signal: AbortSignal, root?: CID): Promise<Uint8Array> {
    assertVerifiable(cid)
    signal.throwIfAborted()
    const local = await this.heldOrArrived(cid, signal, async () => await this.blockstore.getBytes(cid))
    if (local !== undefined) return local
    const done = this.expect(cid)
    try {
      const bytes = await this.fetchRemote(cid, providers, signal, undefined, root)
      await this.store(cid, bytes, { signal })
      return bytes
    } finally {
      done()
    }
  }

  /**
   * Waits for a block this fetcher is fetching right now; false at once when it is not. A node
   * serving a peer uses it to hand on a block it is itself receiving, instead of a 404.
   */
  async whenArrived (cid: CID, signal?: AbortSignal): Promise<boolean> {
    const arriving = this.arriving.get(cid.toString())
    if (arriving === undefined) return false
    await (signal === undefined ? arriving : Promise.race([arriving, once(signal, 'abort')]))
    return true
  }

  /**
   * A local read of a block, held now or once another fetch of this node brings it: a block a
   * relay is fetching for a peer is not fetched a second time when this node's own read reaches
   * it (both happen at once in a swarm; relay-tree.ts).
   */
  private async heldOrArrived<T> (cid: CID, signal: AbortSignal, read: () => Promise<T>): Promise<T | undefined> {
    const local = await readIfHeld(read)
    if (local !== undefined || !(await this.whenArrived(cid, signal))) return local
    signal.throwIfAborted()
    return await readIfHeld(read)
  }

  /** Marks a block as arriving; the returned function marks it settled. */
  private expect (cid: CID): () => void {
    const key = cid.toString()
    let settle = (): void => {}
    const settled = new Promise<void>(resolve => { settle = resolve })
    if (!this.arriving.has(key)) this.arriving.set(key, settled)
    return () => {
      if (this.arriving.get(key) === settled) this.arriving.delete(key)
      settle()
    }
  }

  /**
   * Bytes [start, end] (inclusive) of a UnixFS file, as `readFileChunks` gives them, fetching
   * the blocks the node lacks (and keeping them). Up to `readAhead` leaves are fetched ahead of
   * the consumer, spread over providers, and yielded strictly in order: at most that many leaves
   * are held in memory. The consumer releases every chunk.
   */
  async * fetchFileChunks (root: CID, providers: Providers, start: number, end: number, signal: AbortSignal): AsyncGenerator<PooledBytes> {
    assertVerifiable(root)
    const segments = fileSegments(async cid => await this.fetchBlock(cid, providers, signal, root), root, start, end)
    const ahead: Array<Promise<PooledBytes>> = []
    // Fetched leaves whose fsync and rename are still running.
    const settling = new Set<Promise<unknown>>()
    let exhausted = false
    const fillAhead = async (): Promise<void> => {
      while (!exhausted && ahead.length < this.readAhead) {
        const next = await segments.next()
        if (next.done === true) {
          exhausted = true
          return
        }
        const loading = this.loadSegment(next.value, providers, signal, settling, root)
        // Observed when its turn comes; until then a failure must not count as unhandled.
        loading.catch(() => {})
        ahead.push(loading)
      }
    }
    try {
      await fillAhead()
      while (ahead.length > 0) {
        const chunk = await (ahead.shift() as Promise<PooledBytes>)
        try {
          // Start the next fetch before handing this chunk over, so the window stays full
          // while the consumer writes it out.
          await fillAhead()
        } catch (err) {
          chunk.release()
          throw err
        }
        yield chunk
      }
      // The node holds the whole range only once every fetched block is durable.
      await Promise.all(settling)
    } finally {
      // The consumer stopped early or a fetch failed: give back what was fetched ahead.
      for (const loading of ahead) loading.then(chunk => chunk.release(), () => {})
      await segments.return(undefined)
    }
  }

  /**
   * Every block of a DAG (dag-pb and raw), verified and stored, with a bounded number of blocks
   * in flight. Blocks already held are not fetched again, but a held dag-pb node is still read
   * for its links: an interrupted pull leaves inner nodes without all their children.
   */
  async fetchDag (root: CID, providers: Providers, signal: AbortSignal, onProgress?: (progress: DagFetchProgress) => void): Promise<DagFetchProgress> {
    assertVerifiable(root)
    // Enough blocks in flight to keep every provider busy, without holding many MiB at once.
    const concurrency = Math.min(MAX_DAG_CONCURRENCY, Math.max(DEFAULT_READ_AHEAD, listOf(providers, root).length * this.pool.maxInFlightPerProvider))
    return await fetchDagConcurrently(root, async (cid, inner) => await this.fetchDagBlock(cid, providers, inner, root), { concurrency, signal, onProgress })
  }

  private async fetchDagBlock (cid: CID, providers: Providers, signal: AbortSignal, root: CID): Promise<{ links: CID[], fetchedBytes?: number }> {
    assertVerifiable(cid)
    signal.throwIfAborted()
    let held = await this.blockstore.has(cid)
    // A held raw block has no links: nothing to read.
    if (held && cid.code === raw.code) return { links: [] }
    let bytes: Uint8Array | undefined
    if (held) bytes = await readIfHeld(async () => await this.blockstore.getBytes(cid))
    held = bytes !== undefined
    if (bytes === undefined) {
      const done = this.expect(cid)
      try {
        bytes = await this.fetchRemote(cid, providers, signal, undefined, root)
        await this.store(cid, bytes, { signal })
      } finally {
        done()
      }
    }
    const links = cid.code === dagPb.code ? dagPb.decode(bytes).Links.map(link => link.Hash) : []
    return held ? { links } : { links, fetchedBytes: bytes.length }
  }

  /** One piece of a file: part of a leaf read locally or fetched (and stored), or inline bytes. */
  private async loadSegment (segment: FileSegment, providers: Providers, signal: AbortSignal, settling: Set<Promise<unknown>>, root: CID): Promise<PooledBytes> {
    if (segment.kind === 'inline') return { bytes: segment.bytes, release: () => {} }
    const { cid, start, end } = segment
    assertVerifiable(cid)
    const local = await this.heldOrArrived(cid, signal, async () => await readLeafRange(this.blockstore, cid, start, end))
    if (local !== undefined) return local
    const buffer = chunkPool.take()
    const done = this.expect(cid)
    try {
      const bytes = await this.fetchRemote(cid, providers, signal, buffer, root)
      if (end >= bytes.length) throw new Error(`block ${cid.toString()} is shorter than ${end + 1} bytes`)
      // The chunk may go to the consumer once the bytes are in the file; the fsync and rename
      // that make the block durable need not hold it up.
      await new Promise<void>((resolve, reject) => {
        const durable = this.store(cid, bytes, { signal, onWritten: resolve })
        durable.catch(reject)
        const tracked = durable.finally(() => {
          settling.delete(tracked)
          done()
        })
        // A failure after onWritten surfaces when the reader awaits `settling`; if it stopped
        // reading early, nobody waits, so the failure is only logged.
        tracked.catch((err: unknown) => this.logger?.warn({ err, cid: cid.toString() }, 'could not store a fetched block'))
        settling.add(tracked)
      })
      return { bytes: bytes.subarray(start, end + 1), release: () => chunkPool.give(buffer) }
    } catch (err) {
      chunkPool.give(buffer)
      done()
      throw err
    }
  }

  /**
   * Asks providers for a block until one delivers bytes that verify. A provider that sends a
   * bad block is not asked again for it; one that fails is asked again (up to the retry
   * policy's tries) only once every other has failed as often, after the policy's pause.
   */
  private async fetchRemote (cid: CID, providers: Providers, signal: AbortSignal, into?: Buffer, root?: CID): Promise<Buffer> {
    const failures = new Map<string, number>()
    const lying = new Set<string>()
    const reasons: string[] = []
    let retryRound = 0
    for (;;) {
      signal.throwIfAborted()
      // Asked again every round: who is worth asking changes while a pull goes on.
      const candidates = [...new Map(listOf(providers, cid).map(p => [p.id, p])).values()]
      const usable = candidates.filter(p => !lying.has(p.id) && mayRetry(this.retry, failures.get(p.id) ?? 0))
      if (usable.length === 0) return await this.fromFallback(cid, signal, reasons)
      const fewestFailures = Math.min(...usable.map(p => failures.get(p.id) ?? 0))
      if (fewestFailures > retryRound) {
        // Everyone left has failed: they may have been busy, or still pulling the block themselves.
        retryRound = fewestFailures
        await waitToRetry(this.retry, retryRound, signal)
        continue
      }
      const leastFailed = usable.filter(p => (failures.get(p.id) ?? 0) === fewestFailures)
      const tier = Math.min(...leastFailed.map(p => p.tier ?? 0))
      const provider = await this.pool.acquire(leastFailed.filter(p => (p.tier ?? 0) === tier), signal)
      // None within a while (or the signal aborted): who is worth asking is looked at again.
      if (provider === undefined) continue
      let bytes: Buffer
      try {
        bytes = await this.requests.get(provider, cid, signal, into, root)
      } catch (err) {
        if (signal.aborted) throw signal.reason
        const reason = describe(err)
        failures.set(provider.id, (failures.get(provider.id) ?? 0) + 1)
        reasons.push(`${provider.id}: ${reason}`)
        this.logger?.debug({ provider: provider.id, cid: cid.toString(), reason }, 'block request failed')
        continue
      } finally {
        this.pool.release(provider.id)
      }
      if (!checkBlock(cid, bytes).ok) {
        lying.add(provider.id)
        reasons.push(`${provider.id}: sent bytes that do not match the CID`)
        this.logger?.warn({ provider: provider.id, url: provider.url, cid: cid.toString() }, 'provider sent a block that does not match its CID')
        this.onBadBlock?.(provider, cid)
        continue
      }
      this.onBlockFetched?.(provider, bytes.length)
      return bytes
    }
  }

  /** Keeps a fetched block: in the blockstore, unless the fallback source that brought it put it there already. */
  private async store (cid: CID, bytes: Uint8Array, options: { signal: AbortSignal, onWritten?: () => void }): Promise<void> {
    if (this.keptByFallback.has(bytes)) options.onWritten?.()
    else await this.blockstore.put(cid, bytes, options)
  }

  /** No provider could deliver the block: the fallback source, if any, once. */
  private async fromFallback (cid: CID, signal: AbortSignal, reasons: string[]): Promise<Buffer> {
    const fallback = this.fallback
    if (fallback === undefined) throw new BlockUnavailableError(cid, reasons)
    let bytes: Uint8Array
    try {
      bytes = await fallback.get(cid, signal)
    } catch (err) {
      if (signal.aborted) throw signal.reason
      throw new BlockUnavailableError(cid, [...reasons, `${fallback.name}: ${describe(err)}`])
    }
    if (!checkBlock(cid, bytes).ok) {
      this.logger?.warn({ source: fallback.name, cid: cid.toString() }, 'fallback source sent a block that does not match its CID')
      throw new BlockUnavailableError(cid, [...reasons, `${fallback.name}: sent bytes that do not match the CID`])
    }
    this.onBlockFetched?.({ id: fallback.name, url: '' }, bytes.length)
    const fetched = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    if (fallback.keepsBlocks) this.keptByFallback.add(fetched)
    return fetched
  }
}

function assertVerifiable (cid: CID): void {
  if (cid.multihash.code !== SHA2_256 || cid.multihash.size !== 32) throw new UnsupportedHashError(cid)
}

/**
 * A local read of a block, or undefined when the block is absent or was found corrupt (and
 * quarantined): either way it is to be fetched like a missing one. No `has` first: the read's
 * own open finds out, and a stat per block was 4 % of a fetching node's CPU (bench/fleet.ts).
 */
export async function readIfHeld<T> (read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read()
  } catch (err) {
    if (err instanceof BlockNotFoundError) return undefined
    throw err
  }
}

function describe (err: unknown): string {
  if (!(err instanceof Error)) return String(err)
  const code = (err as NodeJS.ErrnoException).code
  return code !== undefined && !err.message.includes(code) ? `${err.message} (${code})` : err.message
}
