import { CHUNK_SIZE } from './unixfs-dag.ts'

const MAX_POOLED = 32

/**
 * Reused 1 MiB buffers for leaves on their way in (uploads, only while a request streams) and
 * out (blob reads). A fresh
 * buffer per MiB made garbage collection the largest cost after hashing, and let tens of MB
 * of dead buffers pile up between collections.
 */
class ChunkPool {
  private readonly free: Buffer[] = []

  take (): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafeSlow(CHUNK_SIZE)
  }

  give (chunk: Buffer): void {
    if (this.free.length < MAX_POOLED) this.free.push(chunk)
  }
}

export const chunkPool = new ChunkPool()

/** Bytes lent from the pool: call `release` once they are written out and not before. */
export interface PooledBytes {
  bytes: Buffer
  release(): void
}
