import { randomUUID } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat, readdir, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { base32 } from 'multiformats/bases/base32'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import * as Digest from 'multiformats/hashes/digest'
import type { AbortOptions } from 'abort-error'
import type { Blockstore, InputPair, Pair } from 'interface-blockstore'

/**
 * Blocks as files, one per multihash, written atomically: temp file, fsync, rename.
 * A crash leaves either no block or a whole one, never a truncated file under a block's name.
 * Implements helia's Blockstore interface so the mesh can hand it to helia unchanged.
 */
export class FsBlockstore implements Blockstore {
  private readonly root: string

  constructor (root: string) {
    this.root = root
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
  }

  async stop (): Promise<void> {}

  /** The file that holds a block (it may not exist). */
  pathOf (cid: CID): string {
    const key = base32.encode(cid.multihash.bytes).slice(1) // drop multibase prefix
    return join(this.root, key.slice(-3, -1), key)
  }

  async has (cid: CID): Promise<boolean> {
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
    // No existence check: renaming identical bytes over a block is harmless and saves a stat.
    const path = this.pathOf(cid)
    // The temp file sits beside its block: one shard directory per write spreads new inodes
    // over the file system instead of piling them into one directory.
    const tmpPath = `${path}.${randomUUID()}${TMP_SUFFIX}`
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
    return cid
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

  /** Every block, as raw-codec CIDs (the store keys by multihash only). */
  async * getAll (options?: AbortOptions): AsyncGenerator<Pair> {
    for (const shard of await readdir(this.root)) {
      for (const name of await readdir(join(this.root, shard))) {
        if (name.endsWith(TMP_SUFFIX)) continue
        options?.signal?.throwIfAborted()
        const cid = CID.createV1(raw.code, Digest.decode(base32.decode(`b${name}`)))
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

export class BlockNotFoundError extends Error {
  readonly cid: CID
  constructor (cid: CID) {
    super(`block not found: ${cid.toString()}`)
    this.name = 'NotFoundError'
    this.cid = cid
  }
}
