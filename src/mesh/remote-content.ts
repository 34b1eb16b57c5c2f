import { setTimeout as sleep } from 'node:timers/promises'
import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { PooledBytes } from '../content/chunk-pool.ts'
import { readFileChunks, type BlockSource } from '../content/dag-reader.ts'
import { BlockNotFoundError, type FsBlockstore } from '../content/fs-blockstore.ts'
import type { RemoteBlocks } from '../registry/remote-blocks.ts'
import type { BlockFetcher, Provider } from './block-fetcher.ts'

/** Who holds a CID, and who is pulling it: the fleet's answers. */
export interface ProviderFinder {
  /** Nodes that hold `cid` whole (DHT and inventory). */
  providersOf(cid: CID, signal?: AbortSignal): Promise<Provider[]>
  /** Whom to ask now for blocks under `root`, given its holders. */
  rankedProviders(root: CID, seeders: Provider[]): Provider[]
  announcePull(root: CID, done: boolean): Promise<void>
  /** Whether `peer` may wait on this node for blocks it is still receiving. */
  ranksAbove(peer: string): boolean
  provide(cid: CID): Promise<void>
  stopProviding(cid: CID): Promise<void>
  /** What this node holds changed: the inventory should say so soon. */
  heldChanged(): void
}

const FETCH_TIMEOUT_MS = 5 * 60_000
/** How long the holders of a root, once found, are trusted without asking again. */
const SEEDERS_TTL_MS = 10_000
/**
 * How long a relay may keep a peer waiting before it answers 404 and the peer turns to the
 * holders: a chain of relays that stalls must not stall everyone above it.
 */
const RELAY_WAIT_MS = 4_000
const SEEDER_LOOKUPS = 4
const SEEDER_RETRY_MS = 500
/** How often a pull in progress is re-announced (the fleet forgets one after 15 s). */
const PULL_ANNOUNCE_INTERVAL_MS = 5_000

/**
 * The registry's window on content other nodes hold: providers are looked up once per root and
 * every block under it is fetched from them through the BlockFetcher (verified, then kept).
 */
export class RemoteContent implements RemoteBlocks {
  private readonly fetcher: BlockFetcher
  private readonly blockstore: FsBlockstore
  private readonly finder: ProviderFinder
  private readonly logger: Logger
  private readonly seeders = new Map<string, { found: Promise<Provider[]>, at: number }>()

  constructor (options: { fetcher: BlockFetcher, blockstore: FsBlockstore, finder: ProviderFinder, logger: Logger }) {
    this.fetcher = options.fetcher
    this.blockstore = options.blockstore
    this.finder = options.finder
    this.logger = options.logger
  }

  /**
   * Holders of `root`, looked up once per SEEDERS_TTL_MS; an empty answer is not kept, the fleet
   * may not have converged yet.
   */
  private async seedersOf (root: CID, signal?: AbortSignal): Promise<Provider[]> {
    const key = root.toString()
    const cached = this.seeders.get(key)
    if (cached !== undefined && Date.now() - cached.at < SEEDERS_TTL_MS) return await cached.found
    let list: Provider[] = []
    // Right after a push the fleet may not know the holder yet (inventory heartbeat, DHT
    // records on their way): ask again a few times before giving up.
    for (let attempt = 0; attempt < SEEDER_LOOKUPS && list.length === 0; attempt++) {
      if (attempt > 0) await sleep(SEEDER_RETRY_MS, undefined, { signal })
      const found = this.finder.providersOf(root, signal)
      this.seeders.set(key, { found, at: Date.now() })
      list = await found.catch(() => [])
    }
    if (list.length === 0) this.seeders.delete(key)
    for (const [other, entry] of this.seeders) if (Date.now() - entry.at >= SEEDERS_TTL_MS) this.seeders.delete(other)
    return list
  }

  source (root: CID): BlockSource & { has(cid: CID): Promise<boolean> } {
    const seedersOfRoot = async (): Promise<Provider[]> => await this.seedersOf(root)
    const fetched = async (cid: CID): Promise<Uint8Array> => {
      if (await this.blockstore.has(cid)) return await this.blockstore.getBytes(cid)
      const known = await seedersOfRoot()
      return await this.fetcher.fetchBlock(cid, () => this.finder.rankedProviders(root, known), AbortSignal.timeout(FETCH_TIMEOUT_MS), root)
    }
    return {
      has: async (cid) => await this.blockstore.has(cid) || (await seedersOfRoot()).length > 0,
      getBytes: fetched,
      getRange: async (cid, start, end, into) => {
        if (await this.blockstore.has(cid)) return await this.blockstore.getRange(cid, start, end, into)
        const bytes = await fetched(cid)
        const part = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start + 1)
        if (into === undefined) return Buffer.from(part)
        part.copy(into)
        return into.subarray(0, part.length)
      }
    }
  }

  /**
   * Reads locally while the blocks are here; at the first one missing, asks the fleet who holds
   * the file and fetches the rest (so a blob held whole never costs a provider lookup).
   */
  async * fileChunks (root: CID, start: number, end: number, signal?: AbortSignal, heldWith?: CID): AsyncGenerator<PooledBytes> {
    let next = start
    try {
      for await (const chunk of readFileChunks(this.blockstore, root, start, end)) {
        next += chunk.bytes.length
        yield chunk
      }
      return
    } catch (err) {
      if (!(err instanceof BlockNotFoundError)) throw err
    }
    yield * this.fetchFileChunks(root, next, end, signal, heldWith)
  }

  private async * fetchFileChunks (root: CID, start: number, end: number, signal?: AbortSignal, heldWith?: CID): AsyncGenerator<PooledBytes> {
    void this.finder.announcePull(root, false)
    const reannounce = setInterval(() => { void this.finder.announcePull(root, false) }, PULL_ANNOUNCE_INTERVAL_MS).unref()
    try {
      const [own, ofImage] = await Promise.all([
        this.seedersOf(root, signal),
        heldWith === undefined ? [] : this.seedersOf(heldWith, signal)
      ])
      // Those that announced the blob itself first: they hold it whole.
      const seeders = [...own, ...ofImage.filter(p => !own.some(o => o.id === p.id))]
      yield * this.fetcher.fetchFileChunks(root, () => this.finder.rankedProviders(root, seeders), start, end, signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS))
    } finally {
      clearInterval(reannounce)
    }
  }

  /**
   * A block a peer asked this node for and it lacks. It is handed on if this node is receiving it
   * right now, or, for a peer ranked above this node in a shared pull of `root`, fetched for it
   * (this node only waits on peers below it, so the waits can never form a cycle).
   */
  async relay (cid: CID, root: CID | undefined, peer: string | undefined, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const bounded = AbortSignal.any([signal, AbortSignal.timeout(RELAY_WAIT_MS)])
    try {
      if (await this.fetcher.whenArrived(cid, bounded) && await this.blockstore.has(cid)) return await this.blockstore.getBytes(cid)
      if (root === undefined || peer === undefined || !this.finder.ranksAbove(peer)) return undefined
      const seeders = await this.seedersOf(root, bounded)
      return await this.fetcher.fetchBlock(cid, () => this.finder.rankedProviders(root, seeders), bounded, root)
    } catch (err) {
      this.logger.debug({ err, cid: cid.toString() }, 'could not relay a block')
      return undefined
    }
  }

  willPull (cids: CID[]): void {
    for (const cid of cids) void this.finder.announcePull(cid, false)
  }

  announce (cids: CID[]): void {
    this.finder.heldChanged()
    for (const cid of cids) {
      void this.finder.announcePull(cid, true)
      this.finder.provide(cid).catch((err: unknown) => { this.logger.debug({ err, cid: cid.toString() }, 'could not announce') })
    }
  }

  withdraw (cids: CID[]): void {
    this.finder.heldChanged()
    for (const cid of cids) {
      this.finder.stopProviding(cid).catch((err: unknown) => { this.logger.debug({ err, cid: cid.toString() }, 'could not stop providing') })
    }
  }
}
