import { randomUUID } from 'node:crypto'
import { open, rename } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { syncDirectory, type SyncDirectory } from './directory-sync.ts'

/**
 * Writes a file so that readers see the old or the new content, never a torn one, and so that
 * the new content survives a power cut once this resolves (the directory is synced too).
 */
export async function writeFileAtomic (path: string, bytes: Uint8Array | string, sync: SyncDirectory = syncDirectory): Promise<void> {
  const tmpPath = join(dirname(path), `.${randomUUID()}.tmp`)
  const handle = await open(tmpPath, 'w')
  try {
    await handle.write(typeof bytes === 'string' ? Buffer.from(bytes) : bytes)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmpPath, path)
  await sync(dirname(path))
}
