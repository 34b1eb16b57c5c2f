import { open } from 'node:fs/promises'

/**
 * fsync of a directory: makes the entries created, renamed or removed in it durable. A file's
 * own fsync does not: after a power cut the rename that gave it its name can be lost.
 */
export async function syncDirectory (dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

export type SyncDirectory = (dir: string) => Promise<void>

/**
 * Directories whose entries changed, synced in batches (a group commit). `flush` resolves once
 * every directory noted before the call has been synced; callers at the same moment share one
 * round, so the many block writes of one request (and of concurrent requests) cost one fsync
 * per directory, not one per block.
 */
export class DirectorySync {
  private readonly sync: SyncDirectory
  private dirty = new Set<string>()
  private running: Promise<void> | undefined
  private queued: Promise<void> | undefined

  constructor (sync: SyncDirectory = syncDirectory) {
    this.sync = sync
  }

  /** Records that an entry of `dir` changed. */
  note (dir: string): void {
    this.dirty.add(dir)
  }

  /** Syncs every directory noted so far (with whatever is noted until the round starts). */
  async flush (): Promise<void> {
    // A round already queued starts after this call, so it covers what was noted before it.
    if (this.queued !== undefined) return await this.queued
    if (this.running === undefined) return await this.round()
    // The running round may have taken its list before this caller's note: wait for the next.
    this.queued = this.running.then(() => {}, () => {}).then(async () => {
      this.queued = undefined
      await this.round()
    })
    return await this.queued
  }

  private round (): Promise<void> {
    const dirs = [...this.dirty]
    this.dirty = new Set()
    const run = Promise.all(dirs.map(async dir => {
      try {
        await this.sync(dir)
      } catch (err) {
        // Not durable yet: the next round tries again (the caller of this one sees the error).
        this.dirty.add(dir)
        throw err
      }
    })).then(() => {}).finally(() => {
      if (this.running === run) this.running = undefined
    })
    this.running = run
    return run
  }
}
