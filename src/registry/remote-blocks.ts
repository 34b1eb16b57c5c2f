import type { CID } from 'multiformats/cid'
import type { PooledBytes } from '../content/chunk-pool.ts'
import type { BlockReadOptions, BlockSource } from '../content/dag-reader.ts'

/**
 * Content this node may not hold yet but the fleet does. Owned by the registry, implemented by
 * the mesh: every block that comes in is verified against its CID and kept.
 */
export interface RemoteBlocks {
  /**
   * Blocks of the DAG under `root`, fetched from peers that hold `root` when missing here. A
   * read stops its fetches when the signal in its options aborts (the caller's: the request's).
   */
  source(root: CID): BlockSource & { has(cid: CID, options?: BlockReadOptions): Promise<boolean> }
  /**
   * Bytes [start, end] of the file at `root`, leaves fetched ahead from peers where missing.
   * Its holders are found through the images it is part of: `imagesWith` answers their CIDs,
   * asked only when a block is missing here. `signal` stops every fetch it started (the client
   * that asked left).
   */
  fileChunks(root: CID, start: number, end: number, signal: AbortSignal, imagesWith?: () => Promise<CID[]>): AsyncIterable<PooledBytes>
  /** Tells the fleet this node now holds these images whole. */
  announce(imageCids: CID[]): void
  /**
   * These blobs are held whole here now (pulled or pushed): nodes pulling them at the same time
   * hear this node is done. Nobody looks a blob up by itself: others find it through its images.
   */
  blobsHeld(cids: CID[]): void
  /** Tells the fleet this node no longer holds these DAGs (it stops providing them). */
  withdraw(cids: CID[]): void
  /**
   * Tells the fleet this node is about to pull these (a client asked for their manifest), so
   * that nodes pulling them at the same moment find each other before the bytes flow. `image`
   * is the image they are part of: where their holders are found.
   */
  willPull(cids: CID[], image: CID): void
}
