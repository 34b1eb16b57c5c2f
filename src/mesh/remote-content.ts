import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { PooledBytes } from '../content/chunk-pool.ts'
import type { BlockSource } from '../content/dag-reader.ts'
import { readFileChunks } from '../content/dag-reader.ts'
import { BlockNotFoundError, type FsBlockstore } from '../content/fs-blockstore.ts'
import type { RemoteBlocks } from '../registry/remote-blocks.ts'
import type { BlockFetcher, Provider } from './block-fetcher.ts'

/** Who holds a CID: the mesh's answer, as providers with HTTP URLs. */
export interface ProviderFinder {
  providersOf(cid: CID, signal?: AbortSignal): Promise<Provider[]>
  provide(cid: CID): Promise<void>
}

const FETCH_TIMEOUT_MS = 5 * 60_000

/**
 * The registry's window on content other nodes hold: providers are looked up once per root and
 * every block under it is fetched from them through the BlockFetcher (verified, then kept).
 */
export class RemoteContent implements RemoteBlocks {
  private readonly fetcher: BlockFetcher
  private readonly blockstore: FsBlockstore
  private readonly finder: ProviderFinder
  private readonly logger: Logger

  constructor (options: { fetcher: BlockFetcher, blockstore: FsBlockstore, finder: ProviderFinder, logger: Logger }) {
    this.fetcher = options.fetcher
    this.blockstore = options.blockstore
    this.finder = options.finder
    this.logger = options.logger
  }

  source (root: CID): BlockSource & { has(cid: CID): Promise<boolean> } {
    let providers: Promise<Provider[]> | undefined
    // Looked up once per source; an empty answer is not kept, the fleet may not have converged yet.
    const providersOfRoot = async (): Promise<Provider[]> => {
      providers ??= this.finder.providersOf(root)
      const found = await providers
      if (found.length === 0) providers = undefined
      return found
    }
    const fetched = async (cid: CID): Promise<Uint8Array> => {
      if (await this.blockstore.has(cid)) return await this.blockstore.getBytes(cid)
      return await this.fetcher.fetchBlock(cid, await providersOfRoot(), AbortSignal.timeout(FETCH_TIMEOUT_MS))
    }
    return {
      has: async (cid) => await this.blockstore.has(cid) || (await providersOfRoot()).length > 0,
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
    const [own, ofImage] = await Promise.all([
      this.finder.providersOf(root, signal),
      heldWith === undefined ? [] : this.finder.providersOf(heldWith, signal)
    ])
    // Those that announced the blob itself first: they hold it whole.
    const providers = [...own, ...ofImage.filter(p => !own.some(o => o.id === p.id))]
    yield * this.fetcher.fetchFileChunks(root, providers, start, end, signal ?? AbortSignal.timeout(FETCH_TIMEOUT_MS))
  }

  announce (cids: CID[]): void {
    for (const cid of cids) {
      this.finder.provide(cid).catch((err: unknown) => { this.logger.debug({ err, cid: cid.toString() }, 'could not announce') })
    }
  }
}
