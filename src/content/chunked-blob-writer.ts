import { createHash, type Hash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { open, readFile, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { SIZE_INVALID } from '../oci/errors.ts'
import { writeFileAtomic } from './atomic-file.ts'
import { syncDirectory, type SyncDirectory } from './directory-sync.ts'
import { chunkPool } from './chunk-pool.ts'
import { CHUNK_SIZE, ParallelPuts, buildFileDag, rawCid, type BlockSink, type DagNode } from './unixfs-dag.ts'

/** What survives a restart: the leaves stored so far and the length of the partial tail. */
export interface WriterState {
  leaves: Array<{ cid: string, size: number }>
  tailLength: number
}

export interface FinishedBlob {
  root: DagNode
  size: number
  /** sha256 of the content, when the writer saw every byte since it was created. */
  sha256?: string
}

// Leaves whose bytes are still being written (each holds a pooled 1 MiB buffer): a write into
// the page cache takes about as long as the next leaf takes to arrive, so two keep the upload
// going; four held ~1 MiB more at a 1 GiB push's peak for no faster push (bench/RESULTS.md)...
const MAX_LEAVES_IN_MEMORY = 2
// ...and leaves written but still being fsynced and renamed (these hold no memory).
const MAX_LEAVES_IN_FLIGHT = 32
// A long chunk is checkpointed so a crash mid-request keeps most of what arrived.
const CHECKPOINT_EVERY_LEAVES = 32

/**
 * Cuts an upload into the profile's 1 MiB raw leaves as bytes arrive, across any number of
 * requests and restarts. Full leaves go to the blockstore; the partial tail lives in the
 * session directory. Memory: a chunk buffer (plus a few leaves being written) only while a
 * request streams or the upload finishes; between requests the partial leaf is on disk only,
 * so an open session costs a few hundred bytes, however many are open.
 */
export class ChunkedBlobWriter {
  private readonly dir: string
  private readonly sink: BlockSink
  private leaves: DagNode[]
  /** The partial leaf, while a request works on the upload; undefined between requests. */
  private buffer: Buffer | undefined
  private filled: number
  private hash: Hash | undefined
  private pending = new Set<Promise<unknown>>()
  private inMemory = 0
  private wake: (() => void) | undefined
  private readonly syncDirectory: SyncDirectory
  /** The leaf count of the tail file on disk (its name), so a stale one can go. */
  private savedTailOf: number | undefined
  /** What is in memory may differ from what is on disk (a save failed): reload before use. */
  private stale = false

  private constructor (dir: string, sink: BlockSink, leaves: DagNode[], tailLength: number, hash: Hash | undefined, sync: SyncDirectory) {
    this.dir = dir
    this.sink = sink
    this.syncDirectory = sync
    this.leaves = leaves
    this.filled = tailLength
    this.savedTailOf = tailLength > 0 ? leaves.length : undefined
    this.hash = hash
  }

  static create (dir: string, sink: BlockSink, sync: SyncDirectory = syncDirectory): ChunkedBlobWriter {
    return new ChunkedBlobWriter(dir, sink, [], 0, createHash('sha256'), sync)
  }

  /** Reopens a writer from its directory; the running hash is lost and recomputed when needed. */
  static async load (dir: string, sink: BlockSink, sync: SyncDirectory = syncDirectory): Promise<ChunkedBlobWriter> {
    const state = JSON.parse(await readFile(join(dir, 'state.json'), 'utf8')) as WriterState
    const leaves = state.leaves.map(leaf => ({ cid: CID.parse(leaf.cid), dagSize: leaf.size, fileSize: leaf.size }))
    if (state.tailLength > 0) {
      // Sessions saved before tails were named by leaf count have a plain `tail`.
      if (!existsSync(tailPath(dir, leaves.length)) && existsSync(join(dir, 'tail'))) await rename(join(dir, 'tail'), tailPath(dir, leaves.length))
      const { size } = await stat(tailPath(dir, leaves.length))
      if (size < state.tailLength) throw new Error(`upload tail in ${dir} is shorter than recorded`)
    }
    return new ChunkedBlobWriter(dir, sink, leaves, state.tailLength, undefined, sync)
  }

  get size (): number {
    return this.leaves.length * CHUNK_SIZE + this.filled
  }

  /** A save failed: memory and disk may differ, so the session must be loaded again from disk. */
  get needsReload (): boolean {
    return this.stale
  }

  /**
   * Appends a stream of bytes. Whatever arrived before an error (a client that went away)
   * is kept and recorded, so the client can resume from `size`. When `signal` aborts (the
   * session is cancelled) reading stops at once and nothing more is recorded.
   */
  async append (source: AsyncIterable<Uint8Array>, limit = Number.POSITIVE_INFINITY, signal?: AbortSignal): Promise<number> {
    let appended = 0
    let sinceCheckpoint = 0
    let buffer = await this.takeBuffer()
    let recorded = false
    try {
      try {
        for await (const chunk of untilAborted(source, signal)) {
          appended += chunk.length
          if (appended > limit) throw new AppendLimitError(limit)
          this.hash?.update(chunk)
          let offset = 0
          while (offset < chunk.length) {
            const n = Math.min(chunk.length - offset, CHUNK_SIZE - this.filled)
            buffer.set(chunk.subarray(offset, offset + n), this.filled)
            this.filled += n
            offset += n
            if (this.filled === CHUNK_SIZE) {
              const full = buffer
              buffer = this.buffer = chunkPool.take()
              this.filled = 0
              await this.storeLeaf(full, () => chunkPool.give(full))
              if (++sinceCheckpoint >= CHECKPOINT_EVERY_LEAVES) {
                await this.save()
                sinceCheckpoint = 0
              }
            }
          }
        }
      } finally {
        // A cancelled session's files are about to go: leaves still being written are waited
        // for (so none lands later), nothing is recorded.
        if (signal?.aborted === true) {
          await this.drain().catch(() => {})
        } else {
          await this.save()
          recorded = true
        }
      }
    } catch (err) {
      // Memory went past what the disk records: the next request must start from the disk.
      if (!recorded && signal?.aborted !== true) this.stale = true
      throw err
    } finally {
      this.releaseBuffer()
    }
    return appended
  }

  /** Stores the tail as the last leaf and assembles the file DAG. */
  async finish (): Promise<FinishedBlob> {
    try {
      const buffer = await this.takeBuffer()
      if (this.filled > 0 || this.leaves.length === 0) {
        await this.storeLeaf(buffer.subarray(0, this.filled), () => {})
        this.filled = 0
      }
      await this.drain()
    } catch (err) {
      this.stale = true
      throw err
    } finally {
      this.releaseBuffer()
    }
    const puts = new ParallelPuts(this.sink)
    const root = await buildFileDag(this.leaves, puts)
    await puts.flush()
    return { root, size: root.fileSize, sha256: this.hash === undefined ? undefined : `sha256:${this.hash.digest('hex')}` }
  }

  /** A pooled buffer holding the partial leaf, read back from the tail file. */
  private async takeBuffer (): Promise<Buffer> {
    if (this.buffer !== undefined) return this.buffer
    const buffer = chunkPool.take()
    if (this.filled > 0) {
      try {
        const handle = await open(tailPath(this.dir, this.leaves.length), 'r')
        try {
          const { bytesRead } = await handle.read(buffer, 0, this.filled, 0)
          if (bytesRead !== this.filled) throw new Error(`upload tail in ${this.dir} is shorter than recorded`)
        } finally {
          await handle.close()
        }
      } catch (err) {
        chunkPool.give(buffer)
        throw err
      }
    }
    this.buffer = buffer
    return buffer
  }

  private releaseBuffer (): void {
    if (this.buffer === undefined) return
    chunkPool.give(this.buffer)
    this.buffer = undefined
  }

  /** Every leaf of the upload so far, saved in a checkpoint or not (garbage collection keeps them). */
  leafCids (): CID[] {
    return this.leaves.map(leaf => leaf.cid)
  }

  /** Hashes and stores a leaf; `release` runs once the bytes are written and may be reused. */
  private async storeLeaf (bytes: Buffer, release: () => void): Promise<void> {
    const cid = rawCid(bytes)
    this.leaves.push({ cid, dagSize: bytes.length, fileSize: bytes.length })
    this.inMemory++
    let released = false
    const written = (): void => {
      if (released) return
      released = true
      this.inMemory--
      release()
      this.wake?.()
    }
    const write = this.sink.put(cid, bytes, { onWritten: written }).finally(() => {
      this.pending.delete(write)
      written()
    })
    this.pending.add(write)
    while (this.inMemory >= MAX_LEAVES_IN_MEMORY || this.pending.size >= MAX_LEAVES_IN_FLIGHT) {
      const woken = new Promise<void>(resolve => { this.wake = resolve })
      await Promise.race([woken, Promise.race(this.pending)])
      this.wake = undefined
    }
  }

  private async drain (): Promise<void> {
    await Promise.all(this.pending)
  }

  /**
   * Records leaves (once durably stored, directory entries included) and the tail, atomically;
   * one sync of the session directory makes both renames durable before the client is told.
   */
  private async save (): Promise<void> {
    await this.drain()
    // The tail file is named by the leaf count it follows: a crash between the two renames
    // leaves the old state naming the old tail, never the old state over a new leaf's tail.
    const tailOf = this.leaves.length
    if (this.filled > 0) {
      if (this.buffer === undefined) throw new Error('the partial leaf is not in memory')
      await writeFileAtomic(tailPath(this.dir, tailOf), this.buffer.subarray(0, this.filled), async () => {})
    }
    const state: WriterState = {
      leaves: this.leaves.map(leaf => ({ cid: leaf.cid.toString(), size: leaf.fileSize })),
      tailLength: this.filled
    }
    await writeFileAtomic(join(this.dir, 'state.json'), JSON.stringify(state), this.syncDirectory)
    const stale = this.savedTailOf
    this.savedTailOf = this.filled > 0 ? tailOf : undefined
    if (stale !== undefined && stale !== this.savedTailOf) await rm(tailPath(this.dir, stale), { force: true })
  }
}

/** The file of an upload's partial leaf, which follows `leafCount` full leaves. */
function tailPath (dir: string, leafCount: number): string {
  return join(dir, `tail.${leafCount}`)
}

/**
 * The chunks of `source` until `signal` aborts; then the wait for the next chunk ends at once
 * with the abort reason. The rest of the source is then read and dropped in the background: it
 * is a request body the caller still answers, and returning it would destroy the socket, while
 * leaving it unread would leave the connection paused, deaf even to the client closing it.
 */
async function * untilAborted (source: AsyncIterable<Uint8Array>, signal: AbortSignal | undefined): AsyncGenerator<Uint8Array> {
  if (signal === undefined) {
    yield * source
    return
  }
  signal.throwIfAborted()
  const iterator = source[Symbol.asyncIterator]()
  let finished = false
  try {
    for (;;) {
      const result = await nextOrAbort(iterator, signal)
      if (result.done === true) {
        finished = true
        return
      }
      yield result.value
    }
  } finally {
    // Stopped by the consumer or by an error of the source: hand the source back as for-await would.
    if (!finished && !signal.aborted) await iterator.return?.()
    if (!finished && signal.aborted) void discardRest(iterator)
  }
}

/**
 * The iterator's next result, or the abort's reason as soon as `signal` aborts. One listener per
 * wait, removed when it settles: racing every chunk against one long-lived abort promise would
 * keep every chunk of the body reachable from that promise until the request ends.
 */
async function nextOrAbort<T> (iterator: AsyncIterator<T>, signal: AbortSignal): Promise<IteratorResult<T>> {
  signal.throwIfAborted()
  const next = iterator.next()
  return await new Promise<IteratorResult<T>>((resolve, reject) => {
    const onAbort = (): void => {
      next.catch(() => {}) // settled later by discardRest's reads, or by the client leaving
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
    next.then(result => {
      signal.removeEventListener('abort', onAbort)
      resolve(result)
    }, (err: unknown) => {
      signal.removeEventListener('abort', onAbort)
      reject(err)
    })
  })
}

async function discardRest (iterator: AsyncIterator<Uint8Array>): Promise<void> {
  try {
    while ((await iterator.next()).done !== true) { /* dropped */ }
  } catch { /* the client went away: nothing more to read */ }
}

/** A body longer than the length it declared. */
export class AppendLimitError extends Error {
  static readonly descriptor = SIZE_INVALID
  readonly limit: number
  constructor (limit: number) {
    super(`the body is longer than its declared length of ${limit} bytes`)
    this.name = 'AppendLimitError'
    this.limit = limit
  }
}
