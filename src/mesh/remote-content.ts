import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { PooledBytes } from '../content/chunk-pool.ts'
import { readFileChunks, type BlockReadOptions, type BlockSource } from '../content/dag-reader.ts'
import { BlockNotFoundError, type FsBlockstore } from '../content/fs-blockstore.ts'
import type { RemoteBlocks } from '../registry/remote-blocks.ts'
import { mayRetry, waitToRetry, type RetryPolicy } from '../retry-policy.ts'
import { untilAborted } from '../until-aborted.ts'
import { BlockUnavailableError, readIfHeld, type BlockFetcher, type Provider } from './block-fetcher.ts'
import { PULL_EXPIRY_MS } from './pull-notices.ts'

/** Who holds a CID, and who is pulling it: the fleet's answers. */
export interface ProviderFinder {
  /** Nodes that hold the image `cid` whole. */
  providersOf(cid: CID): Promise<Provider[]>
  /** Whom to ask now for `block` of the DAG `root`, given the DAG's holders. */
  rankedProviders(root: CID, seeders: Provider[], block: CID): Provider[]
  announcePull(root: CID, done: boolean): Promise<void>
  /** Whether `peer` may wait on this node for `block` of the DAG `root`, which it is still receiving. */
  ranksAbove(peer: string, root: CID, block: CID): boolean
  stopProviding(cid: CID): Promise<void>
  /** What this node holds changed: the inventory should say so soon. */
  heldChanged(): void
}

/** For reads whose caller gave no signal. */
const NEVER = new AbortController().signal
/** How long the holders of a root, once found, are trusted without asking again. */
const SEEDERS_TTL_MS = 10_000
/**
 * How long a relay may keep a peer waiting before it answers 404 and the peer turns to the
 * holders: a relay tree that stalls must not stall everyone under it, and the answer must come
 * before the peer's own request times out (30 s). Not shorter: when a pull starts, every puller
 * asks for its first read-ahead windows at once, and a block's first trip down a tree of depth
 * log2 N waits at each relay behind the relay's other child; a relay that gave up before its
 * block came sent its subtree to the seeders. In the fleet simulation at 50 Mbit/s (32 MiB):
 * 100 pullers, seeder egress 6.9x the image with a 4 s wait, 1.1x with 10 s; 1,000 pullers,
 * 2.1x with 10 s, 1.2x with 20 s.
 */
export const RELAY_WAIT_MS = 20_000
/**
 * Looking up the holders of a root again when none were found: right after a push the fleet may
 * not know the holder yet (its presence comes 200 ms after what it holds changed, later on a
 * busy machine): retries over ~7 s.
 */
const SEEDER_LOOKUP_RETRY: RetryPolicy = { tries: 8, delayMs: 250, factor: 1.5, maxDelayMs: 2_000 }
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
  /** `none`: nobody holds the root, and its blocks came from elsewhere (see servedElsewhere). */
  private readonly seeders = new Map<string, { found: Promise<Provider[]>, at: number, none?: true }>()
  /** Roots being fetched here -> the images they are part of (a relay asked for one looks there too). */
  private readonly imagesOfPull = new Map<string, CID[]>()
  /**
   * Roots announced as pulls before their reads begin (willPull) -> the image they are part of,
   * and when. Peers ask this node for their blocks from the announcement on; a relay for one
   * that found no images looked the blob itself up, which no presence lists, and waited out the
   * whole lookup (~7 s) before it fetched: every `all` convergence stalled ~7 s on the blob
   * that a node reads last (bench/convergence.ts).
   */
  private readonly announcedPulls = new Map<string, { image: CID, at: number }>()

  constructor (options: { fetcher: BlockFetcher, blockstore: FsBlockstore, finder: ProviderFinder, logger: Logger }) {
    this.fetcher = options.fetcher
    this.blockstore = options.blockstore
    this.finder = options.finder
    this.logger = options.logger
  }

  /**
   * Holders of `root`, looked up once per SEEDERS_TTL_MS and shared by every read of it; an
   * empty answer is not kept, the fleet may not have converged yet. The lookup is bounded (a
   * read of the members' presence, retried while it is empty) and shared, so a reader that
   * leaves stops waiting for it but does not cancel it for the others.
   */
  private async seedersOf (root: CID, signal?: AbortSignal): Promise<Provider[]> {
    const key = root.toString()
    let entry = this.seeders.get(key)
    if (entry === undefined || Date.now() - entry.at >= SEEDERS_TTL_MS) {
      const found = this.lookUpSeeders(root)
      const created = { found, at: Date.now() }
      entry = created
      this.seeders.set(key, created)
      void found.then(list => { if (list.length === 0 && this.seeders.get(key) === created) this.seeders.delete(key) })
      for (const [other, old] of this.seeders) if (Date.now() - old.at >= SEEDERS_TTL_MS) this.seeders.delete(other)
    }
    return await untilAborted(entry.found, signal)
  }

  private async lookUpSeeders (root: CID): Promise<Provider[]> {
    for (let tried = 0; ; tried++) {
      if (tried > 0) await waitToRetry(SEEDER_LOOKUP_RETRY, tried)
      const list = await this.finder.providersOf(root).catch(() => [])
      if (list.length > 0 || !mayRetry(SEEDER_LOOKUP_RETRY, tried + 1)) return list
    }
  }

  /**
   * A root no member holds, whose blocks came all the same (the fetcher's fallback: bitswap, from
   * a peer outside the fleet): the empty holder list is kept, renewed by each such block, so that
   * the next block does not wait out another lookup (~7 s) first.
   */
  private servedElsewhere (root: CID): void {
    const key = root.toString()
    const entry = this.seeders.get(key)
    if (entry === undefined || entry.none === true) this.seeders.set(key, { found: Promise.resolve([]), at: Date.now(), none: true })
  }

  source (root: CID): BlockSource & { has(cid: CID, options?: BlockReadOptions): Promise<boolean> } {
    const fetched = async (cid: CID, signal: AbortSignal | undefined): Promise<Uint8Array> => {
      const local = await readIfHeld(async () => await this.blockstore.getBytes(cid))
      if (local !== undefined) return local
      const known = await this.seedersOf(root, signal)
      // The caller's signal, or none: every request has its own timeout, and a fetch that no
      // provider can serve ends with BlockUnavailableError, so nothing waits forever.
      const bytes = await this.fetcher.fetchBlock(cid, block => this.finder.rankedProviders(root, known, block), signal ?? NEVER, root)
      if (known.length === 0) this.servedElsewhere(root)
      return bytes
    }
    // Held by no member: it is here if the fetcher's fallback brings it (and keeps it).
    const fromElsewhere = async (cid: CID, signal: AbortSignal | undefined): Promise<boolean> => {
      try {
        await this.fetcher.fetchBlock(cid, [], signal ?? NEVER, root)
      } catch (err) {
        if (err instanceof BlockUnavailableError) return false
        throw err
      }
      this.servedElsewhere(root)
      return true
    }
    return {
      has: async (cid, options) => await this.blockstore.has(cid) || (await this.seedersOf(root, options?.signal)).length > 0 || await fromElsewhere(cid, options?.signal),
      getBytes: async (cid, options) => await fetched(cid, options?.signal),
      getRange: async (cid, start, end, into, options) => {
        const local = await readIfHeld(async () => await this.blockstore.getRange(cid, start, end, into))
        if (local !== undefined) return local
        const bytes = await fetched(cid, options?.signal)
        const part = Buffer.from(bytes.buffer, bytes.byteOffset + start, end - start + 1)
        if (into === undefined) return Buffer.from(part)
        part.copy(into)
        return into.subarray(0, part.length)
      }
    }
  }

  /**
   * Holders of `root`: those of the images it is part of, or, with none known, those of `root`
   * itself. A blob is found through its images: presence lists every node's images, while
   * announcing each blob in the DHT cost every node of the fleet more CPU than the rest of a
   * push (bench/tag-cost.ts), and a lookup of a blob nobody announces would only wait out its
   * time.
   */
  private async holdersOf (root: CID, images: CID[], signal?: AbortSignal): Promise<Provider[]> {
    const found = await Promise.all((images.length > 0 ? images : [root]).map(async cid => await this.seedersOf(cid, signal)))
    const holders = new Map<string, Provider>()
    for (const provider of found.flat()) if (!holders.has(provider.id)) holders.set(provider.id, provider)
    return [...holders.values()]
  }

  /**
   * Reads locally while the blocks are here; at the first one missing, asks the fleet who holds
   * the file and fetches the rest (so a blob held whole never costs a provider lookup).
   */
  async * fileChunks (root: CID, start: number, end: number, signal: AbortSignal, imagesWith?: () => Promise<CID[]>): AsyncGenerator<PooledBytes> {
    let next = start
    try {
      for await (const chunk of readFileChunks(this.blockstore, root, start, end, signal)) {
        next += chunk.bytes.length
        yield chunk
      }
      return
    } catch (err) {
      if (!(err instanceof BlockNotFoundError)) throw err
    }
    yield * this.fetchFileChunks(root, next, end, signal, imagesWith)
  }

  private async * fetchFileChunks (root: CID, start: number, end: number, signal: AbortSignal, imagesWith?: () => Promise<CID[]>): AsyncGenerator<PooledBytes> {
    const key = root.toString()
    void this.finder.announcePull(root, false)
    const reannounce = setInterval(() => { void this.finder.announcePull(root, false) }, PULL_ANNOUNCE_INTERVAL_MS).unref()
    let images: CID[] = []
    try {
      images = imagesWith === undefined ? [] : await imagesWith()
      this.imagesOfPull.set(key, images)
      const seeders = await this.holdersOf(root, images, signal)
      yield * this.fetcher.fetchFileChunks(root, block => this.finder.rankedProviders(root, seeders, block), start, end, signal)
    } finally {
      clearInterval(reannounce)
      if (this.imagesOfPull.get(key) === images) this.imagesOfPull.delete(key)
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
      if (await this.fetcher.whenArrived(cid, bounded)) {
        const arrived = await readIfHeld(async () => await this.blockstore.getBytes(cid))
        if (arrived !== undefined) return arrived
      }
      if (root === undefined || peer === undefined || !this.finder.ranksAbove(peer, root, cid)) return undefined
      const images = this.imagesOf(root)
      // With no image known (a pull announced long enough ago to have expired here, while the
      // asking peer still ranks this node), one look at who holds the root itself, not the
      // retried lookup: no presence lists a blob, so retrying held the asking peer ~7 s for
      // nothing (bench/fleet.ts --timeline: the config blob, read last, cost every pull 7 s).
      const seeders = images.length > 0
        ? await this.holdersOf(root, images, bounded)
        : await untilAborted(this.finder.providersOf(root).catch(() => []), bounded)
      return await this.fetcher.fetchBlock(cid, block => this.finder.rankedProviders(root, seeders, block), bounded, root)
    } catch (err) {
      this.logger.debug({ err, cid: cid.toString() }, 'could not relay a block')
      return undefined
    }
  }

  willPull (cids: CID[], image: CID): void {
    const now = Date.now()
    for (const [key, announced] of this.announcedPulls) if (now - announced.at >= PULL_EXPIRY_MS) this.announcedPulls.delete(key)
    for (const cid of cids) {
      this.announcedPulls.set(cid.toString(), { image, at: now })
      void this.finder.announcePull(cid, false)
    }
  }

  /** The images a root being pulled here (or about to be) is part of. */
  private imagesOf (root: CID): CID[] {
    const key = root.toString()
    const reading = this.imagesOfPull.get(key)
    if (reading !== undefined && reading.length > 0) return reading
    const announced = this.announcedPulls.get(key)
    return announced !== undefined && Date.now() - announced.at < PULL_EXPIRY_MS ? [announced.image] : []
  }

  announce (imageCids: CID[]): void {
    this.finder.heldChanged()
    for (const cid of imageCids) {
      void this.finder.announcePull(cid, true)
    }
  }

  blobsHeld (cids: CID[]): void {
    this.finder.heldChanged()
    for (const cid of cids) void this.finder.announcePull(cid, true)
  }

  withdraw (cids: CID[]): void {
    this.finder.heldChanged()
    for (const cid of cids) {
      this.finder.stopProviding(cid).catch((err: unknown) => { this.logger.debug({ err, cid: cid.toString() }, 'could not stop providing') })
    }
  }
}
