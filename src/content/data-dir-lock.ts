import { constants } from 'node:fs'
import { mkdir, open, readFile, rm, type FileHandle } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { tryLock, unlock } from 'fs-native-extensions'

const LOCK_FILE = 'lock'

/**
 * The exclusive lock a node holds on its data directory for as long as it runs: an OS lock
 * (flock) on `<data>/lock`, so it goes with the process, kill -9 included, and is never stale.
 * The file holds the holder's pid, for the message a second node gives. The file itself stays:
 * unlinking a lock file lets a newcomer lock a fresh file while another holds the old one.
 */
export class DataDirLock {
  /** The data directory, absolute. */
  readonly dir: string
  /** The topmost directory this lock's acquisition created (undefined when the directory existed). */
  readonly created: string | undefined
  private handle: FileHandle | undefined

  private constructor (dir: string, created: string | undefined, handle: FileHandle) {
    this.dir = dir
    this.created = created
    this.handle = handle
  }

  /**
   * Takes the lock, creating the directory if it does not exist; fails with DataDirInUseError
   * when another process (or another node in this one) holds it. Nothing else in the directory
   * is touched.
   */
  static async acquire (data: string): Promise<DataDirLock> {
    const dir = resolve(data)
    const created = await mkdir(dir, { recursive: true })
    let handle: FileHandle | undefined
    try {
      // Neither truncated nor appended to on open: the holder's pid must survive a failed attempt.
      handle = await open(join(dir, LOCK_FILE), constants.O_RDWR | constants.O_CREAT, 0o644)
      if (!tryLock(handle.fd)) {
        const holder = (await readFile(join(dir, LOCK_FILE), 'utf8')).trim()
        throw new DataDirInUseError(dir, /^\d+$/.test(holder) ? Number(holder) : undefined)
      }
      await handle.truncate(0)
      await handle.write(`${process.pid}\n`, 0)
      return new DataDirLock(dir, created, handle)
    } catch (err) {
      await handle?.close()
      if (created !== undefined) await rm(created, { recursive: true, force: true })
      throw err
    }
  }

  /** Lets go of the lock (the file stays, emptied). */
  async release (): Promise<void> {
    const handle = this.handle
    if (handle === undefined) return
    this.handle = undefined
    try {
      await handle.truncate(0)
      unlock(handle.fd)
    } finally {
      await handle.close()
    }
  }

  /**
   * For a start that failed: lets go of the lock and, if acquiring it created the directory,
   * removes it again, so a failed start leaves no new data directory behind.
   */
  async abandon (): Promise<void> {
    await this.release()
    if (this.created !== undefined) await rm(this.created, { recursive: true, force: true })
  }
}

/** Another node runs on this data directory. */
export class DataDirInUseError extends Error {
  readonly dir: string
  readonly pid: number | undefined
  constructor (dir: string, pid: number | undefined) {
    super(`the data directory ${dir} is in use by another node${pid === undefined ? '' : ` (pid ${pid})`}`)
    this.name = 'DataDirInUseError'
    this.dir = dir
    this.pid = pid
  }
}
