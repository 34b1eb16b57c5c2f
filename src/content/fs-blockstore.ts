import { randomUUID } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat, readdir, type FileHandle } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import type { AbortOptions } from 'abort-error'
import type { Blockstore, InputPair, Pair } from 'interface-blockstore'
import { DirectorySync, syncDirectory, type SyncDirectory } from './directory-sync.ts'

export interface FsBlockstoreOptions {
  /** How a directory is synced (tests watch it); default fsync. */
  syncDirectory?: SyncDirectory
}

/**
 * Blocks as files, one per multihash, written atomically: temp file, fsync, rename, fsync of the
 * directory (batched across concurrent puts). A crash leaves either no block or a whole one,
 * never a truncated file under a block's name, and a put that resolved survives a power cut.
 * Implements helia's Blockstore interface so the mesh can hand it to helia unchanged.
 *
 * Garbage collection runs beside writers with no lock (see content/gc.ts): while a collection
 * runs, every block a writer puts or looks for is recorded in its tracker, and a block is
 * unlinked only if its key is not in the tracker at that moment; a put of a block being unlinked
 * waits for the unlink and then writes the block again.
 */
export class FsBlockstore implements Blockstore {
  private readonly root: string
  /** Keys being put now, counted (two puts of one block may overlap). */
  private readonly writing = new Map<string, number>()
  /** Temp files being written now: never taken for a crashed write's leftovers. */
  private readonly tempFilesInUse = new Set<string>()
  /** The trackers of the collections running now. */
  private readonly trackers = new Set<Set<string>>()
  /** Blocks a collection is unlinking now. */
  private readonly removing = new Map<string, Promise<void>>()
  /** Shard directories blocks were renamed into, synced in batches before puts resolve. */
  private readonly directories: DirectorySync
  private readonly syncDirectory: SyncDirectory

  constructor (root: string, options: FsBlockstoreOptions = {}) {
    this.root = root
    this.syncDirectory = options.syncDirectory ?? syncDirectory
    this.directories = new DirectorySync(this.syncDirectory)
  }

  async start (): Promise<void> {
    // Every shard directory exists from the start, so a write never has to create one.
    await Promise.all(shardNames().map(async name => {
      const shard = join(this.root, name)
      await mkdir(shard, { recursive: true })
      // Leftover temp files are writes that never finished: they were never visible as blocks.
      for (const file of await readdir(shard)) {
        if (file.endsWith(TMP_SUFFIX)) await rm(join(shard, file), { force: true })
      }
    }))
    // The shard directories (made once) are entries of the root, and the root of its parent.
    await this.syncDirectory(this.root)
    await this.syncDirectory(dirname(this.root))
  }

  async stop (): Promise<void> {}

  /** The file that holds a block (it may not exist). */
  pathOf (cid: CID): string {
    return this.pathOfKey(this.keyOf(cid))
  }

  /** A block's key: its multihash in base32, which is also its file name. */
  keyOf (cid: CID): string {
    return base32.encode(cid.multihash.bytes).slice(1) // drop multibase prefix
  }

  /** The raw-codec CID of a key (the store keeps no codec). */
  cidOf (key: string): CID {
    return CID.createV1(raw.code, Digest.decode(base32.decode(`b${key}`)))
  }

  private pathOfKey (key: string): string {
    return join(this.root, key.slice(-3, -1), key)
  }

  /**
   * Starts recording every block written or looked for (`has`), beginning with those being
   * written right now, until `close`. A collection holds one while it runs.
   */
  trackUse (): BlockUseTracker {
    const used = new Set<string>(this.writing.keys())
    this.trackers.add(used)
    return {
      has: key => used.has(key),
      close: () => { this.trackers.delete(used) }
    }
  }

  private noteUse (key: string): void {
    for (const used of this.trackers) used.add(key)
  }

  async has (cid: CID): Promise<boolean> {
    const key = this.keyOf(cid)
    // A caller that finds the block may skip writing it and link to it: it must stay.
    this.noteUse(key)
    await this.removing.get(key)
    try {
      await stat(this.pathOf(cid))
      return true
    } catch {
      return false
    }
  }

  /**
   * Stores a block durably. `onWritten` runs once the bytes are in the file and the caller's
   * buffer may be reused, before the (slower) fsync and rename.
   */
  async put (cid: CID, bytes: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options?: AbortOptions & PutOptions): Promise<CID> {
    options?.signal?.throwIfAborted()
    const key = this.keyOf(cid)
    // Recorded before the first await, so a collection either sees the put or has already
    // begun the unlink this put then waits for.
    this.noteUse(key)
    this.writing.set(key, (this.writing.get(key) ?? 0) + 1)
    try {
      await this.removing.get(key)
      await this.write(key, bytes, options)
    } finally {
      const left = (this.writing.get(key) ?? 1) - 1
      if (left === 0) this.writing.delete(key)
      else this.writing.set(key, left)
    }
    return cid
  }

  private async write (key: string, bytes: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options?: PutOptions): Promise<void> {
    // No existence check: renaming identical bytes over a block is harmless and saves a stat.
    const path = this.pathOfKey(key)
    // The temp file sits beside its block: one shard directory per write spreads new inodes
    // over the file system instead of piling them into one directory.
    const tmpPath = `${path}.${randomUUID()}${TMP_SUFFIX}`
    this.tempFilesInUse.add(tmpPath)
    try {
      const handle = await open(tmpPath, 'w')
      try {
        if (bytes instanceof Uint8Array) {
          await handle.write(bytes)
        } else {
          for await (const chunk of bytes) await handle.write(chunk)
        }
        options?.onWritten?.()
        await handle.sync()
      } catch (err) {
        await handle.close()
        await rm(tmpPath, { force: true })
        throw err
      }
      await handle.close()
      await rename(tmpPath, path)
    } finally {
      this.tempFilesInUse.delete(tmpPath)
    }
    // The rename is durable only once its directory is: records that name this block are
    // written after the put resolves.
    this.directories.note(dirname(path))
    await this.directories.flush()
  }

  async * putMany (source: Iterable<InputPair> | AsyncIterable<InputPair>, options?: AbortOptions): AsyncGenerator<CID> {
    for await (const { cid, bytes } of source) yield await this.put(cid, bytes, options)
  }

  async * get (cid: CID, options?: AbortOptions): AsyncGenerator<Uint8Array> {
    options?.signal?.throwIfAborted()
    yield await this.getBytes(cid)
  }

  /** The whole block; throws NotFoundError-like error with code 'ENOENT' when absent. */
  async getBytes (cid: CID): Promise<Uint8Array> {
    try {
      return await readFile(this.pathOf(cid))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlockNotFoundError(cid)
      throw err
    }
  }

  private async openBlock (cid: CID): Promise<FileHandle> {
    try {
      return await open(this.pathOf(cid), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlockNotFoundError(cid)
      throw err
    }
  }

  /**
   * The whole block read into `into` when it fits (a pooled buffer: no garbage per block);
   * undefined when it does not.
   */
  async readInto (cid: CID, into: Buffer): Promise<Buffer | undefined> {
    const handle = await this.openBlock(cid)
    try {
      const { bytesRead } = await handle.read(into, 0, into.length, 0)
      if (bytesRead === into.length && (await handle.read(Buffer.alloc(1), 0, 1, bytesRead)).bytesRead > 0) return undefined
      return into.subarray(0, bytesRead)
    } finally {
      await handle.close()
    }
  }

  /**
   * Part of a block (inclusive `end`) in one read, into `into` when given (it must be large
   * enough), else into a new buffer. Blocks are at most a few MiB.
   */
  async getRange (cid: CID, start: number, end: number, into?: Buffer): Promise<Buffer> {
    const handle = await this.openBlock(cid)
    try {
      const bytes = into === undefined ? Buffer.allocUnsafe(end - start + 1) : into.subarray(0, end - start + 1)
      const { bytesRead } = await handle.read(bytes, 0, bytes.length, start)
      if (bytesRead !== bytes.length) throw new Error(`block ${cid.toString()} is shorter than ${end + 1} bytes`)
      return bytes
    } finally {
      await handle.close()
    }
  }

  async * getMany (source: Iterable<CID> | AsyncIterable<CID>, options?: AbortOptions): AsyncGenerator<Pair> {
    for await (const cid of source) yield { cid, bytes: this.get(cid, options) }
  }

  async delete (cid: CID): Promise<void> {
    await rm(this.pathOf(cid), { force: true })
  }

  async * deleteMany (source: Iterable<CID> | AsyncIterable<CID>): AsyncGenerator<CID> {
    for await (const cid of source) {
      await this.delete(cid)
      yield cid
    }
  }

  /** Every file in the store, shard by shard: blocks by key, and temp files of writes. */
  async * files (signal?: AbortSignal): AsyncGenerator<StoreFile> {
    for (const shard of shardNames()) {
      signal?.throwIfAborted()
      for (const name of await readdir(join(this.root, shard))) {
        yield name.endsWith(TMP_SUFFIX) ? { tempFile: join(this.root, shard, name) } : { key: name }
      }
    }
  }

  /** Size and last write of a block's file; undefined when absent. */
  async statBlock (key: string): Promise<BlockFileStat | undefined> {
    try {
      const { size, mtimeMs } = await stat(this.pathOfKey(key))
      return { size, mtimeMs }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw err
    }
  }

  /**
   * Unlinks a block for a collection holding `tracker`, unless a writer used it since the
   * collection began or its file was written at or after `writtenBefore`. Returns the bytes
   * freed, or undefined when the block stays.
   */
  async removeUnused (key: string, tracker: BlockUseTracker, writtenBefore: number): Promise<number | undefined> {
    if (tracker.has(key) || this.removing.has(key)) return undefined
    const file = await this.statBlock(key)
    if (file === undefined || file.mtimeMs >= writtenBefore) return undefined
    // No await between this check and the unlink's start: a put that began before it is in the
    // tracker, one that begins after it waits for the unlink (JS runs this block atomically).
    if (tracker.has(key) || this.removing.has(key)) return undefined
    const removal = rm(this.pathOfKey(key), { force: true })
    // Waiting puts only need the unlink over; its failure is the collection's to report.
    this.removing.set(key, removal.then(() => {}, () => {}).finally(() => { this.removing.delete(key) }))
    await removal
    return file.size
  }

  /**
   * Removes a temp file (from `files`) that no write is using and was last written before
   * `writtenBefore`: the leftover of a write that failed after opening it (start removes those
   * of a crash). Returns whether it went.
   */
  async removeAbandonedTempFile (path: string, writtenBefore: number): Promise<boolean> {
    if (!path.endsWith(TMP_SUFFIX) || this.tempFilesInUse.has(path)) return false
    try {
      if ((await stat(path)).mtimeMs >= writtenBefore || this.tempFilesInUse.has(path)) return false
      await rm(path, { force: true })
      return true
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
      throw err
    }
  }

  /** Every block, as raw-codec CIDs (the store keys by multihash only). */
  async * getAll (options?: AbortOptions): AsyncGenerator<Pair> {
    for (const shard of await readdir(this.root)) {
      for (const name of await readdir(join(this.root, shard))) {
        if (name.endsWith(TMP_SUFFIX)) continue
        options?.signal?.throwIfAborted()
        const cid = this.cidOf(name)
        yield { cid, bytes: this.get(cid) }
      }
    }
  }
}

const TMP_SUFFIX = '.tmp'
const BASE32_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567'

function shardNames (): string[] {
  return [...BASE32_ALPHABET].flatMap(a => [...BASE32_ALPHABET].map(b => a + b))
}

export interface PutOptions {
  onWritten?: () => void
}

/** What a collection sees of writers while it runs: the blocks they put or looked for. */
export interface BlockUseTracker {
  has(key: string): boolean
  close(): void
}

/** A file of the store: a block, or the temp file of a write. */
export type StoreFile = { key: string, tempFile?: undefined } | { key?: undefined, tempFile: string }

export interface BlockFileStat {
  size: number
  mtimeMs: number
}

export class BlockNotFoundError extends Error {
  readonly cid: CID
  constructor (cid: CID) {
    super(`block not found: ${cid.toString()}`)
    this.name = 'NotFoundError'
    this.cid = cid
  }
}
