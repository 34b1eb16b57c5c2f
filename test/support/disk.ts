import { readdir, stat, utimes } from 'node:fs/promises'
import { join } from 'node:path'

/** Bytes of every block file under `blocksDir` (temp files of writes in flight left out). */
export async function blockBytes (blocksDir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(blocksDir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || entry.name.endsWith('.tmp')) continue
    try {
      total += (await stat(join(entry.parentPath, entry.name))).size
    } catch (err) {
      // Collected or renamed between the listing and the stat.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  return total
}

/** Sets every file under `dir` as last written `ageMs` ago (past the collector's grace period). */
export async function age (dir: string, ageMs: number): Promise<void> {
  const when = new Date(Date.now() - ageMs)
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) await utimes(join(entry.parentPath, entry.name), when, when)
  }
}
