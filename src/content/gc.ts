import { readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { WriterState } from './chunked-blob-writer.ts'
import { BlockNotFoundError, type BlockFileStat, type BlockUseTracker, type StoreFile } from './fs-blockstore.ts'

/**
 * What must stay. The collector asks for roots once per collection, after the blockstore has
 * begun tracking writers, and keeps every block their DAGs reach that is held here (blocks of
 * remote blobs may be missing: the walk goes through what is present).
 */
export interface GcRoots {
  roots(signal: AbortSignal): AsyncIterable<CID>
  /** Blocks kept for reasons outside those DAGs; asked only about blocks about to go. */
  isPinned?(cid: CID, signal: AbortSignal): Promise<boolean>
}

/** helia's pins, as far as the collector needs them (OrbitDB pins every catalogue block). */
export interface PinSet {
  isPinned(cid: CID, options?: { signal?: AbortSignal }): Promise<boolean>
}

/** The blockstore operations a collection uses; FsBlockstore provides them. */
export interface CollectableBlockstore {
  keyOf(cid: CID): string
  cidOf(key: string): CID
  getBytes(cid: CID): Promise<Uint8Array>
  trackUse(): BlockUseTracker
  files(signal?: AbortSignal): AsyncIterable<StoreFile>
  statBlock(key: string): Promise<BlockFileStat | undefined>
  removeUnused(key: string, tracker: BlockUseTracker, writtenBefore: number): Promise<number | undefined>
  removeAbandonedTempFile(path: string, writtenBefore: number): Promise<boolean>
}

export interface CollectionResult {
  /** Blocks on disk when the collection listed them. */
  scannedBlocks: number
  removedBlocks: number
  removedBytes: number
  /** Temp files of failed writes. */
  removedTempFiles: number
  durationMs: number
}

export type CollectionOutcome = { result: CollectionResult, error?: undefined } | { result?: undefined, error: unknown }

export interface GarbageCollectorOptions {
  blockstore: CollectableBlockstore
  roots: GcRoots
  logger?: Logger
  /** Collect this often; 0 or absent: only when asked. */
  intervalMs?: number
  /**
   * Blocks written this recently stay, with every block they link to. It covers writes that
   * happened before a collection began and are recorded only a moment later: a finished upload
   * between its session's removal and its blob record, a manifest's blocks before its record.
   * (Leaves of uploads in progress are roots themselves: see registryRoots' liveLeaves.)
   */
  graceMs?: number
  /** Called after every collection (metrics). */
  onCollected?: (outcome: CollectionOutcome) => void
}

export const DEFAULT_GRACE_MS = 60_000
/** A temp file untouched this long belongs to no write in progress. */
const ABANDONED_TEMP_FILE_MS = 3_600_000
/** Larger blocks are not read for links when a recent block is walked: dag-pb nodes are small. */
const MAX_NODE_BYTES = 2 * 1024 * 1024
/** dag-pb writes Links (field 2) before Data (field 1): a node starts with one of these tags. */
const DAG_PB_FIRST_BYTES = new Set([0x12, 0x0a])

/**
 * Online garbage collection of blocks no root reaches, beside concurrent pushes and pulls, with
 * no lock. A collection: (1) starts tracking writers in the blockstore; (2) marks every block
 * the roots reach; (3) lists the blocks on disk; (4) keeps the unmarked ones written within the
 * grace period or used by a writer since (1), and what they link to; (5) unlinks the rest, each
 * only if no writer has used it by the time its unlink starts (the blockstore checks and starts
 * the unlink in one synchronous step; a put arriving later waits and writes the block again).
 * One collection runs at a time; a call during one gets the next, which sees its changes.
 */
export class GarbageCollector {
  private readonly blockstore: CollectableBlockstore
  private readonly roots: GcRoots
  private readonly logger: Logger | undefined
  private readonly intervalMs: number
  private readonly graceMs: number
  private readonly onCollected: ((outcome: CollectionOutcome) => void) | undefined
  private stopping: AbortController | undefined
  private timer: NodeJS.Timeout | undefined
  private running: Promise<CollectionResult> | undefined
  private queued: Promise<CollectionResult> | undefined

  constructor (options: GarbageCollectorOptions) {
    this.blockstore = options.blockstore
    this.roots = options.roots
    this.logger = options.logger
    this.intervalMs = options.intervalMs ?? 0
    this.graceMs = options.graceMs ?? DEFAULT_GRACE_MS
    this.onCollected = options.onCollected
    if (!(this.intervalMs >= 0) || !(this.graceMs >= 0)) throw new RangeError('intervalMs and graceMs must be at least 0')
  }

  start (): void {
    if (this.stopping !== undefined) return
    this.stopping = new AbortController()
    if (this.intervalMs > 0) {
      this.timer = setInterval(() => {
        // A tick while a collection runs is skipped, not queued.
        if (this.running === undefined) this.collect().catch(() => {})
      }, this.intervalMs).unref()
    }
  }

  /** Stops the timer, aborts the collection running (if any) and waits for it to end. */
  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    this.stopping?.abort(new GarbageCollectorStoppedError())
    this.stopping = undefined
    await Promise.allSettled([this.running, this.queued])
  }

  /**
   * Runs a collection that starts after this call: at once when none is running, else right
   * after the running one (calls made meanwhile share it). `signal` abandons the wait only;
   * the collection goes on for the others.
   */
  async collect (signal?: AbortSignal): Promise<CollectionResult> {
    signal?.throwIfAborted()
    const stopping = this.stopping
    if (stopping === undefined) throw new GarbageCollectorStoppedError()
    let run: Promise<CollectionResult>
    if (this.queued !== undefined) {
      // Joined first: the running one may have ended a moment before the queued one begins.
      run = this.queued
    } else if (this.running === undefined) {
      run = this.begin(stopping.signal)
    } else {
      run = this.queued = this.running.then(() => {}, () => {}).then(async () => {
        this.queued = undefined
        if (stopping.signal.aborted) throw new GarbageCollectorStoppedError()
        return await this.begin(stopping.signal)
      })
    }
    if (signal === undefined) return await run
    const abandoned = abortion(signal)
    try {
      return await Promise.race([run, abandoned.promise])
    } finally {
      abandoned.dispose()
    }
  }

  private begin (signal: AbortSignal): Promise<CollectionResult> {
    const run = this.collectOnce(signal).then(result => {
      this.logger?.info(result, 'garbage collected')
      this.onCollected?.({ result })
      return result
    }, (error: unknown) => {
      // Stopping is not a failure of the collection.
      if (!(error instanceof GarbageCollectorStoppedError)) {
        this.logger?.warn({ err: error }, 'garbage collection failed')
        this.onCollected?.({ error })
      }
      throw error
    }).finally(() => {
      if (this.running === run) this.running = undefined
    })
    this.running = run
    return run
  }

  private async collectOnce (signal: AbortSignal): Promise<CollectionResult> {
    const startedAt = Date.now()
    const writtenBefore = startedAt - this.graceMs
    const tracker = this.blockstore.trackUse()
    try {
      const marked = new Set<string>()
      // Read only now that writers are tracked: a block put after this reads its source is
      // tracked; one put before is recorded by then, or recent.
      for await (const root of this.roots.roots(signal)) await this.mark(root, marked, signal)

      let scannedBlocks = 0
      const unmarked: string[] = []
      const tempFiles: string[] = []
      for await (const file of this.blockstore.files(signal)) {
        if (file.tempFile !== undefined) {
          tempFiles.push(file.tempFile)
          continue
        }
        scannedBlocks++
        if (!marked.has(file.key)) unmarked.push(file.key)
      }

      const doomed: string[] = []
      for (const key of unmarked) {
        signal.throwIfAborted()
        if (marked.has(key)) continue
        const file = await this.blockstore.statBlock(key)
        if (file === undefined) continue
        if (tracker.has(key) || file.mtimeMs >= writtenBefore) {
          // New, and maybe not recorded yet: what it links to is about to be recorded too.
          await this.markLinksOfRecent(key, file.size, marked, signal)
        } else {
          doomed.push(key)
        }
      }

      let removedBlocks = 0
      let removedBytes = 0
      for (const key of doomed) {
        signal.throwIfAborted()
        if (marked.has(key)) continue
        if (this.roots.isPinned !== undefined && await this.roots.isPinned(this.blockstore.cidOf(key), signal)) continue
        const freed = await this.blockstore.removeUnused(key, tracker, writtenBefore)
        if (freed === undefined) continue
        removedBlocks++
        removedBytes += freed
      }
      let removedTempFiles = 0
      for (const path of tempFiles) {
        if (await this.blockstore.removeAbandonedTempFile(path, startedAt - ABANDONED_TEMP_FILE_MS)) removedTempFiles++
      }
      return { scannedBlocks, removedBlocks, removedBytes, removedTempFiles, durationMs: Date.now() - startedAt }
    } finally {
      tracker.close()
    }
  }

  /** Marks every block of a DAG that is held; only dag-pb nodes are read (raw leaves have no links). */
  private async mark (root: CID, marked: Set<string>, signal: AbortSignal): Promise<void> {
    const stack = [root]
    while (stack.length > 0) {
      const cid = stack.pop() as CID
      const key = this.blockstore.keyOf(cid)
      if (marked.has(key)) continue
      marked.add(key)
      // Other codecs (dag-cbor of the catalogue) are kept by their pins, not walked here.
      if (cid.code !== dagPb.code) continue
      signal.throwIfAborted()
      let bytes: Uint8Array
      try {
        bytes = await this.blockstore.getBytes(cid)
      } catch (err) {
        // A remote blob's blocks arrive when read; until then there is nothing to keep.
        if (err instanceof BlockNotFoundError) continue
        throw err
      }
      for (const link of decodeLinks(bytes) ?? []) stack.push(link)
    }
  }

  /** A recent block of unknown codec: if it reads as a dag-pb node, what it links to stays. */
  private async markLinksOfRecent (key: string, size: number, marked: Set<string>, signal: AbortSignal): Promise<void> {
    if (size > MAX_NODE_BYTES) return
    let bytes: Uint8Array
    try {
      bytes = await this.blockstore.getBytes(this.blockstore.cidOf(key))
    } catch (err) {
      if (err instanceof BlockNotFoundError) return
      throw err
    }
    if (!DAG_PB_FIRST_BYTES.has(bytes[0] ?? -1)) return
    for (const link of decodeLinks(bytes) ?? []) await this.mark(link, marked, signal)
  }
}

/** The links of a dag-pb node; undefined when the bytes are not one. */
function decodeLinks (bytes: Uint8Array): CID[] | undefined {
  try {
    return dagPb.decode(bytes).Links.map(link => link.Hash)
  } catch {
    return undefined
  }
}

/** A promise that rejects when `signal` aborts; dispose of it once it is no longer raced. */
function abortion (signal: AbortSignal): { promise: Promise<never>, dispose: () => void } {
  const { promise, reject } = Promise.withResolvers<never>()
  const onAbort = (): void => reject(signal.reason)
  signal.addEventListener('abort', onAbort, { once: true })
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) }
}

/**
 * The registry's roots: the leaves recorded by every upload session (as `state.json`, so an
 * upload resumed after a restart keeps them), then every blob and manifest record, and helia's
 * pins when the node has them. `pins` throws when the node may hold pinned blocks it cannot
 * check now (see GcUnavailableError); undefined means there are none.
 */
export function registryRoots (options: {
  metadata: { contentRoots(): AsyncIterable<string> }
  uploadsDir: string
  /** Leaves of the uploads open in this process, including those not checkpointed yet. */
  liveLeaves?: () => Iterable<CID>
  pins?: () => PinSet | undefined
}): GcRoots {
  const { metadata, uploadsDir, pins, liveLeaves } = options
  return {
    async * roots (signal) {
      pins?.() // fails the collection before anything is marked when pins cannot be read
      if (liveLeaves !== undefined) yield * liveLeaves()
      // Sessions before records: a finished upload leaves its session just before its blob
      // record is written, so read in this order a blob is missed only if both reads fall in
      // that gap, and then its new root block is recent and keeps the rest.
      yield * uploadSessionLeaves(uploadsDir, signal)
      for await (const cid of metadata.contentRoots()) {
        signal.throwIfAborted()
        yield CID.parse(cid)
      }
    },
    isPinned: async (cid, signal) => await (pins?.()?.isPinned(cid, { signal })) ?? false
  }
}

/** The leaves each upload session has recorded so far. */
async function * uploadSessionLeaves (uploadsDir: string, signal: AbortSignal): AsyncGenerator<CID> {
  let sessions: string[]
  try {
    sessions = await readdir(uploadsDir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  for (const id of sessions) {
    signal.throwIfAborted()
    let state: WriterState
    try {
      state = JSON.parse(await readFile(join(uploadsDir, id, 'state.json'), 'utf8')) as WriterState
    } catch (err) {
      // No leaf recorded yet, or the session was completed or cancelled meanwhile.
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') continue
      throw err
    }
    for (const leaf of state.leaves) yield CID.parse(leaf.cid)
  }
}

/** The collector is not running (not started yet, or stopped). */
export class GarbageCollectorStoppedError extends Error {
  constructor () {
    super('the garbage collector is not running')
    this.name = 'GarbageCollectorStoppedError'
  }
}

/** A collection cannot tell what must stay right now, so it removes nothing. */
export class GcUnavailableError extends Error {
  constructor (message: string) {
    super(message)
    this.name = 'GcUnavailableError'
  }
}
