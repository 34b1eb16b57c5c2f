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

/**
 * Frees a chunk's memory now rather than at the next scavenge, by detaching its ArrayBuffer; a
 * chunk that shares its ArrayBuffer (a slice, Node's small-buffer pool) is left alone. Only for
 * chunks nothing else holds once the caller is done with them: each body read of Node's HTTP
 * parser is a copy of its own, which a 1 GiB push made ~20,000 of. Left to the collector, they
 * piled up between scavenges (~20 MiB of RSS at the push's peak) and came back as fresh pages.
 */
export function reclaimChunk (chunk: Uint8Array): void {
  const buffer = chunk.buffer
  if (buffer instanceof ArrayBuffer && chunk.byteOffset === 0 && chunk.byteLength === buffer.byteLength && !buffer.detached && !buffer.resizable) {
    buffer.transfer(0)
  }
}
