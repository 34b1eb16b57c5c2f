import { readFile } from 'node:fs/promises'
import type { BigIntStats } from 'node:fs'
import { writeFileAtomic } from './atomic-file.ts'

/** At most this many blocks are remembered (~8 MB; 64 GiB of 1 MiB leaves); the oldest go first. */
const MAX_REMEMBERED = 65_536

/**
 * What identifies one state of a block file: inode, size and change time to the nanosecond.
 * Any write to the file, a rename over it or a new file under its name changes it, and no tool
 * can set a change time back (utimes sets only access and modification times).
 */
export function fileStamp (stats: BigIntStats): string {
  return `${stats.ino.toString(36)}.${stats.size.toString(36)}.${stats.ctimeNs.toString(36)}`
}

/**
 * Blocks known to match their CID as their files stand: written by this node (the caller hashed
 * the bytes to get the CID, or verified them as they came from a peer) or read and hashed since,
 * each with its file's stamp. A read of a block whose stamp still matches needs no hash; any
 * change to the file through the file system makes it hash again. Kept across restarts in one
 * file written at stop (a node killed with -9 just hashes again).
 */
export class VerifiedBlocks {
  private readonly stamps = new Map<string, string>()

  matches (key: string, stamp: string): boolean {
    return this.stamps.get(key) === stamp
  }

  remember (key: string, stamp: string): void {
    this.stamps.delete(key)
    this.stamps.set(key, stamp)
    if (this.stamps.size > MAX_REMEMBERED) this.stamps.delete(this.stamps.keys().next().value as string)
  }

  forget (key: string): void {
    this.stamps.delete(key)
  }

  async load (path: string): Promise<void> {
    let text: string
    try {
      text = await readFile(path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    for (const line of text.split('\n')) {
      const [key, stamp] = line.split(' ')
      if (key !== undefined && key !== '' && stamp !== undefined) this.remember(key, stamp)
    }
  }

  async save (path: string): Promise<void> {
    await writeFileAtomic(path, [...this.stamps].map(([key, stamp]) => `${key} ${stamp}`).join('\n'))
  }
}
