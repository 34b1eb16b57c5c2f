import type { CID } from 'multiformats/cid'
import { CONTENT_UNAVAILABLE, ShoalError } from '../oci/errors.ts'

/** What the source needs of helia: its networked blockstore (the local store, else bitswap). */
export interface NetworkedBlocks {
  get(cid: CID, options: { signal: AbortSignal }): Iterable<Uint8Array> | AsyncIterable<Uint8Array>
}

/**
 * How long one block may take over bitswap. A want has no "nobody has it" answer (peers that lack
 * a block only say so, and may send it later), so the wait is all that ends it; it covers a 1 MiB
 * block from a peer sending the read-ahead's other blocks first on a busy machine.
 */
export const DEFAULT_BITSWAP_WAIT_MS = 10_000

/** No connected peer sent the block over bitswap in time. */
export class BitswapWaitError extends ShoalError {
  static override readonly descriptor = CONTENT_UNAVAILABLE
  readonly cid: CID
  constructor (cid: CID, waitMs: number) {
    super(`no connected peer sent block ${cid.toString()} over bitswap within ${waitMs / 1000} s`)
    this.cid = cid
  }
}

/** No peer outside the fleet is connected: nobody to ask over bitswap. */
export class NoOutsiderError extends ShoalError {
  static override readonly descriptor = CONTENT_UNAVAILABLE
  readonly cid: CID
  constructor (cid: CID) {
    super(`no peer outside the fleet is connected to ask for block ${cid.toString()} over bitswap`)
    this.cid = cid
  }
}

/**
 * Blocks from any peer connected over libp2p that has them, through helia's bitswap: how a node
 * reads content no Shoal node holds, from a plain IPFS node (issue 15). The fetcher asks it only
 * when no HTTP provider could deliver a block (mesh/block-fetcher.ts), and checks its bytes
 * against the CID like a provider's (helia has checked them too). helia keeps what it fetched in
 * the node's blockstore, the one it shares with the registry.
 */
export class BitswapSource {
  readonly name = 'bitswap'
  /** helia puts what bitswap brings into the blockstore it shares with the registry. */
  readonly keepsBlocks = true
  private readonly blocks: () => NetworkedBlocks
  private readonly outsiders: () => boolean
  private readonly waitMs: number

  /**
   * `blocks` is asked at each read: helia exists once the mesh has started. `outsiders` says
   * whether a peer that is not a member is connected: members answered over HTTP already, so
   * without one there is nobody to ask, and a block nobody holds fails at once, not after the wait.
   */
  constructor (options: { blocks: () => NetworkedBlocks, outsiders: () => boolean, waitMs?: number }) {
    this.blocks = options.blocks
    this.outsiders = options.outsiders
    this.waitMs = options.waitMs ?? DEFAULT_BITSWAP_WAIT_MS
  }

  /** The block's bytes; the caller's signal stops the want, and so does the bounded wait (BitswapWaitError). */
  async get (cid: CID, signal: AbortSignal): Promise<Uint8Array> {
    signal.throwIfAborted()
    if (!this.outsiders()) throw new NoOutsiderError(cid)
    const waited = AbortSignal.timeout(this.waitMs)
    try {
      const chunks: Uint8Array[] = []
      for await (const chunk of this.blocks().get(cid, { signal: AbortSignal.any([signal, waited]) })) chunks.push(chunk)
      return chunks.length === 1 ? chunks[0] as Uint8Array : Buffer.concat(chunks)
    } catch (err) {
      signal.throwIfAborted()
      if (waited.aborted) throw new BitswapWaitError(cid, this.waitMs)
      throw err
    }
  }
}
