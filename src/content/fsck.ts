import { join, resolve } from 'node:path'
import { DataDirLock } from './data-dir-lock.ts'
import { FsBlockstore } from './fs-blockstore.ts'
import { checkAllBlocks, type CheckResult } from './scrub.ts'

/**
 * `shoal fsck`: checks every block of a data directory against its CID, offline. It holds the
 * directory's lock (no node may run on it meanwhile), moves each corrupt block to the quarantine
 * and reports one line per problem through `report`.
 */
export async function fsck (data: string, report: (line: string) => void): Promise<CheckResult> {
  const dir = resolve(data)
  const lock = await DataDirLock.acquire(dir)
  try {
    if (lock.created !== undefined) throw new Error(`${dir} is not a Shoal data directory: it did not exist`)
    const blockstore = new FsBlockstore(join(dir, 'blocks'), {
      onCorrupt: found => { report(`corrupt block ${found.cid.toString()} (${found.path}): its bytes hash to ${found.actual}; moved to ${found.quarantinedAt ?? 'the quarantine'}`) }
    })
    return await checkAllBlocks(blockstore, {
      onProblem: problem => {
        if (problem.kind === 'unreadable') report(`unreadable block ${blockstore.cidOf(problem.key).toString()}: ${problem.reason ?? ''}`)
      }
    })
  } finally {
    await lock.abandon()
  }
}
