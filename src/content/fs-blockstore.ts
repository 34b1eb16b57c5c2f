import { createHash, randomUUID, webcrypto } from 'node:crypto'
import { closeSync, fstatSync, openSync, read } from 'node:fs'
import { mkdir, open, rename, rm, stat, readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import type { AbortOptions } from 'abort-error'
import type { Blockstore, InputPair, Pair } from 'interface-blockstore'
import type { ErrorDescriptor } from '../oci/errors.ts'
import { DirectorySync, syncDirectory, type SyncDirectory } from './directory-sync.ts'
import { VerifiedBlocks, fileStamp } from './verified-blocks.ts'

export interface FsBlockstoreOptions {
  /** How a directory is synced (tests watch it); default fsync. */
  syncDirectory?: SyncDirectory
  /** Where blocks that do not match their CID are moved; default `quarantine` beside the root. */
  quarantineDir?: string
  /** Told of every corrupt block found, once it is moved aside (metrics, logs, a refetch). */
  onCorrupt?: (found: BlockCorruptError) => void
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
  private readonly quarantineDir: string
  /** Blocks known to match their CID as their files stand (see VerifiedBlocks). */
  private readonly verifiedBlocks = new VerifiedBlocks()
  private readonly verifiedBlocksFile: string
  private readonly onCorrupt: ((found: BlockCorruptError) => void) | undefined

  constructor (root: string, options: FsBlockstoreOptions = {}) {
    this.root = root
    this.syncDirectory = options.syncDirectory ?? syncDirectory
    this.directories = new DirectorySync(this.syncDirectory)
    this.quarantineDir = options.quarantineDir ?? join(dirname(root), 'quarantine')
    this.verifiedBlocksFile = join(dirname(root), 'verified-blocks')
    this.onCorrupt = options.onCorrupt
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
    await this.verifiedBlocks.load(this.verifiedBlocksFile)
  }

  async stop (): Promise<void> {
    await this.verifiedBlocks.save(this.verifiedBlocksFile)
  }

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
      // The caller's CID was computed from (or checked against) these very bytes.
      this.verifiedBlocks.remember(key, fileStamp(await stat(path, { bigint: true })))
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

  /**
   * The whole block, checked against its CID; throws BlockNotFoundError when absent, and
   * BlockCorruptError (after moving the file aside) when its bytes do not match.
   */
  async getBytes (cid: CID): Promise<Uint8Array> {
    const { bytes, stamp } = await this.readWhole(cid, undefined)
    return await this.verified(cid, bytes, stamp)
  }

  /**
   * The whole block read into `into` when it fits (a pooled buffer: no garbage per block),
   * checked against its CID; undefined when it does not fit.
   */
  async readInto (cid: CID, into: Buffer): Promise<Buffer | undefined> {
    const { bytes, stamp } = await this.readWhole(cid, into)
    return bytes.buffer === into.buffer && bytes.byteOffset === into.byteOffset ? await this.verified(cid, bytes, stamp) : undefined
  }

  /**
   * Part of a block (inclusive `end`), in `into` when given and the whole block fits it, else in
   * a new buffer. The whole block is read and checked against its CID, so no byte of a corrupt
   * block is ever handed out: a range inside a leaf costs a read of the leaf (at most 1 MiB).
   */
  async getRange (cid: CID, start: number, end: number, into?: Buffer): Promise<Buffer> {
    const { bytes, stamp } = await this.readWhole(cid, into)
    const block = await this.verified(cid, bytes, stamp)
    if (end >= block.length) throw new Error(`block ${cid.toString()} is shorter than ${end + 1} bytes`)
    return block.subarray(start, end + 1)
  }

  /**
   * The block's bytes, in `into` when it fits, else in a new buffer, and its file's stamp; not
   * checked. The open, fstat and close run on the event loop (metadata calls of a few
   * microseconds) and only the read goes to the thread pool: four pool round trips per block
   * made the pull's server spend a fifth of its CPU switching threads (perf, 1 GiB pull).
   */
  private async readWhole (cid: CID, into: Buffer | undefined, use = true): Promise<{ bytes: Buffer, stamp: string }> {
    // A reader that finds a block may rely on it as a caller of `has` does (the fetcher does not
    // fetch it again): the same use for a collection, and the same wait for an unlink under way.
    // Not the scrub's or fsck's reads (`use` false): they would keep every block they pass.
    const key = this.keyOf(cid)
    if (use) {
      this.noteUse(key)
      const removal = this.removing.get(key)
      if (removal !== undefined) await removal
    }
    let fd: number
    try {
      fd = openSync(this.pathOfKey(key), 'r')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new BlockNotFoundError(cid)
      throw err
    }
    try {
      const stats = fstatSync(fd, { bigint: true })
      const size = Number(stats.size)
      const bytes = into !== undefined && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafe(size)
      const bytesRead = await readAt(fd, bytes, size)
      return { bytes: bytes.subarray(0, bytesRead), stamp: fileStamp(stats) }
    } finally {
      closeSync(fd)
    }
  }

  /**
   * `bytes` when they hash to the CID's multihash. Otherwise the file is moved to the
   * quarantine, `onCorrupt` is told, and BlockCorruptError is thrown: a block that does not
   * match its CID is never served, to clients or to peers.
   */
  private async verified<B extends Uint8Array> (cid: CID, bytes: B, stamp: string): Promise<B> {
    const key = this.keyOf(cid)
    // Written or checked by this node, and the file unchanged since: no need to hash again.
    if (this.verifiedBlocks.matches(key, stamp)) return bytes
    const check = await checkBlockOffThread(cid, bytes)
    if (check.ok) {
      if (check.verified) this.verifiedBlocks.remember(key, stamp)
      return bytes
    }
    throw await this.quarantine(cid, check.actual)
  }

  /**
   * Checks one block file against its key, as `shoal fsck` and the scrub do: 'ok', 'corrupt'
   * (moved to the quarantine), 'missing' (gone meanwhile) or 'unverifiable' (a hash this store
   * cannot compute), with the size of the block read.
   */
  async verifyBlock (key: string): Promise<BlockCheck> {
    const cid = this.cidOf(key)
    let read: { bytes: Buffer, stamp: string }
    try {
      read = await this.readWhole(cid, undefined, false)
    } catch (err) {
      if (err instanceof BlockNotFoundError) return { state: 'missing' }
      throw err
    }
    const size = read.bytes.length
    // Always hashed, whatever is remembered: this is how rot that left the file's stamp alone is found.
    const check = checkBlock(cid, read.bytes)
    if (check.ok) {
      if (check.verified) this.verifiedBlocks.remember(key, read.stamp)
      return { state: check.verified ? 'ok' : 'unverifiable', size }
    }
    await this.quarantine(cid, check.actual)
    return { state: 'corrupt', size }
  }

  /** Moves a corrupt block aside (never deleted: an operator may want to look) and reports it. */
  private async quarantine (cid: CID, actual: string): Promise<BlockCorruptError> {
    const path = this.pathOf(cid)
    const key = this.keyOf(cid)
    this.verifiedBlocks.forget(key)
    let movedTo: string | undefined = join(this.quarantineDir, `${key}.${new Date().toISOString().replace(/[:.]/g, '-')}`)
    try {
      await mkdir(this.quarantineDir, { recursive: true })
      await rename(path, movedTo)
    } catch (err) {
      // Another reader moved it first (ENOENT), or the move failed: it is still never served.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') await rm(path, { force: true }).catch(() => {})
      movedTo = undefined
    }
    const error = new BlockCorruptError(cid, path, actual, movedTo)
    if (movedTo !== undefined) this.onCorrupt?.(error)
    return error
  }

  async * getMany (source: Iterable<CID> | AsyncIterable<CID>, options?: AbortOptions): AsyncGenerator<Pair> {
    for await (const cid of source) yield { cid, bytes: this.get(cid, options) }
  }

  async delete (cid: CID): Promise<void> {
    this.verifiedBlocks.forget(this.keyOf(cid))
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
    this.verifiedBlocks.forget(key)
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

/** Up to `length` bytes from the start of the file into `into`, on the thread pool; the count read. */
async function readAt (fd: number, into: Buffer, length: number): Promise<number> {
  return await new Promise((resolve, reject) => {
    read(fd, into, 0, length, 0, (err, bytesRead) => { if (err === null) resolve(bytesRead); else reject(err) })
  })
}
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

/** What a check of one block file found, and the size of what was read. */
export type BlockCheck = { state: 'ok' | 'corrupt' | 'unverifiable', size: number } | { state: 'missing' }

export class BlockNotFoundError extends Error {
  static readonly descriptor: ErrorDescriptor = { code: 'BLOCK_UNKNOWN', status: 404, message: 'block not held by this node' }
  readonly cid: CID
  constructor (cid: CID, message = `block not found: ${cid.toString()}`) {
    super(message)
    this.name = 'NotFoundError'
    this.cid = cid
  }
}

/**
 * A block whose bytes do not hash to its CID. It is not held any more (it was moved to the
 * quarantine), hence a BlockNotFoundError: readers that fetch missing blocks from peers do so.
 */
export class BlockCorruptError extends BlockNotFoundError {
  /** Where the block was. */
  readonly path: string
  /** The multihash digest of the bytes found there, hex. */
  readonly actual: string
  /** Where the file went; undefined when another reader had moved it already. */
  readonly quarantinedAt: string | undefined
  constructor (cid: CID, path: string, actual: string, quarantinedAt: string | undefined) {
    super(cid, `block ${cid.toString()} does not match its CID (its bytes hash to ${actual}): moved to the quarantine`)
    this.name = 'BlockCorruptError'
    this.path = path
    this.actual = actual
    this.quarantinedAt = quarantinedAt
  }
}

const SHA2_256 = 0x12
const SHA2_512 = 0x13
const IDENTITY = 0x00

/** Blocks at least this large are hashed on libuv's thread pool, beside the main thread. */
const OFF_THREAD_BYTES = 64 * 1024

/**
 * checkBlock, with a large block's sha2 computed by WebCrypto on the thread pool: the main
 * thread goes on writing the previous leaf to its socket while this one is hashed.
 */
export async function checkBlockOffThread (cid: CID, bytes: Uint8Array): Promise<{ ok: true, verified: boolean } | { ok: false, actual: string }> {
  const { code, digest } = cid.multihash
  const algorithm = code === SHA2_256 ? 'SHA-256' : code === SHA2_512 ? 'SHA-512' : undefined
  if (algorithm === undefined || bytes.length < OFF_THREAD_BYTES) return checkBlock(cid, bytes)
  const actual = Buffer.from(await webcrypto.subtle.digest(algorithm, bytes))
  return actual.equals(digest) ? { ok: true, verified: true } : { ok: false, actual: actual.toString('hex') }
}

/** Whether `bytes` hash to the CID's multihash; `verified` false for a hash not computed here. */
export function checkBlock (cid: CID, bytes: Uint8Array): { ok: true, verified: boolean } | { ok: false, actual: string } {
  const { code, digest } = cid.multihash
  let actual: Buffer
  if (code === SHA2_256) actual = createHash('sha256').update(bytes).digest()
  else if (code === SHA2_512) actual = createHash('sha512').update(bytes).digest()
  else if (code === IDENTITY) actual = Buffer.from(bytes)
  else return { ok: true, verified: false }
  return actual.equals(digest) ? { ok: true, verified: true } : { ok: false, actual: actual.toString('hex') }
}
