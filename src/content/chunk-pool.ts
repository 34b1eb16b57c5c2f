import { CHUNK_SIZE } from './unixfs-dag.ts'

const MAX_POOLED = 32
// How often chunks the node did not use are freed: a burst (many pulls or pushes at once) left
// up to MAX_POOLED MiB held for the rest of the process's life.
const TRIM_INTERVAL_MS = 30_000

/**
 * Reused 1 MiB buffers for leaves on their way in (uploads, only while a request streams) and
 * out (blob reads). A fresh
 * buffer per MiB made garbage collection the largest cost after hashing, and let tens of MB
 * of dead buffers pile up between collections. Every TRIM_INTERVAL_MS the chunks that stayed in
 * the pool the whole interval are freed: what the work of the last interval did not need.
 */
export class ChunkPool {
  private readonly free: Buffer[] = []
  /** The fewest chunks the pool held since the last trim: those none of the work took. */
  private untouched = 0

  constructor (trimIntervalMs?: number) {
    if (trimIntervalMs !== undefined) setInterval(() => { this.trim() }, trimIntervalMs).unref()
  }

  take (): Buffer {
    const chunk = this.free.pop()
    if (this.free.length < this.untouched) this.untouched = this.free.length
    return chunk ?? Buffer.allocUnsafeSlow(CHUNK_SIZE)
  }

  give (chunk: Buffer): void {
    if (this.free.length < MAX_POOLED) this.free.push(chunk)
  }

  /** Frees the chunks no take reached since the last trim (the bottom of the stack); how many. */
  trim (): number {
    const unused = this.free.splice(0, this.untouched)
    for (const chunk of unused) reclaimChunk(chunk)
    this.untouched = this.free.length
    return unused.length
  }

  /** Chunks held for reuse now. */
  get size (): number {
    return this.free.length
  }
}

export const chunkPool = new ChunkPool(TRIM_INTERVAL_MS)

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
