import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from 'pino'
import type { BlockCheck, StoreFile } from './fs-blockstore.ts'

/** What a check of the blocks needs of the store; FsBlockstore provides it. */
export interface VerifiableBlockstore {
  files(signal?: AbortSignal): AsyncIterable<StoreFile>
  /** Reads one block and checks it against its key; a corrupt one is moved to the quarantine. */
  verifyBlock(key: string): Promise<BlockCheck>
}

export interface CheckResult {
  checked: number
  bytes: number
  corrupt: string[]
  /** Blocks hashed with a function this store does not compute (never Shoal's own). */
  unverifiable: number
  /** Blocks that could not be read at all (an I/O error), with the reason. */
  unreadable: Array<{ key: string, reason: string }>
  durationMs: number
}

export interface CheckOptions {
  signal?: AbortSignal
  /** Reads at most this many bytes a second (a scrub beside live traffic); none: as fast as it can. */
  bytesPerSecond?: number
  /** Called for each problem as it is found. */
  onProblem?: (problem: { key: string, kind: 'corrupt' | 'unreadable', reason?: string }) => void
  onChecked?: (key: string) => void
}

/**
 * Reads every block of the store and checks it against its CID; corrupt ones are moved to the
 * quarantine by the store (which tells its onCorrupt). Temp files of writes are left alone.
 */
export async function checkAllBlocks (store: VerifiableBlockstore, options: CheckOptions = {}): Promise<CheckResult> {
  const startedAt = Date.now()
  const result: CheckResult = { checked: 0, bytes: 0, corrupt: [], unverifiable: 0, unreadable: [], durationMs: 0 }
  for await (const file of store.files(options.signal)) {
    if (file.key === undefined) continue
    options.signal?.throwIfAborted()
    let check: BlockCheck
    try {
      check = await store.verifyBlock(file.key)
    } catch (err) {
      const reason = (err as Error).message
      result.unreadable.push({ key: file.key, reason })
      options.onProblem?.({ key: file.key, kind: 'unreadable', reason })
      continue
    }
    if (check.state === 'missing') continue // collected meanwhile
    result.checked++
    result.bytes += check.size
    options.onChecked?.(file.key)
    if (check.state === 'unverifiable') result.unverifiable++
    if (check.state === 'corrupt') {
      result.corrupt.push(file.key)
      options.onProblem?.({ key: file.key, kind: 'corrupt' })
    }
    if (options.bytesPerSecond !== undefined) {
      const due = startedAt + result.bytes / options.bytesPerSecond * 1000
      if (due > Date.now()) await sleep(due - Date.now(), undefined, { signal: options.signal })
    }
  }
  result.durationMs = Date.now() - startedAt
  return result
}

export interface ScrubberOptions {
  blockstore: VerifiableBlockstore
  /** A full pass this often; 0: never. */
  intervalMs: number
  /** Read rate of a pass, so a scrub never crowds out pulls. */
  bytesPerSecond: number
  logger?: Logger
  onChecked?: (key: string) => void
}

/**
 * The periodic scrub: every `intervalMs`, one pass over every block at a bounded read rate.
 * Reads by clients and peers already check each block they touch; the scrub finds rot in
 * blocks nobody reads, while a peer may still hold a good copy.
 */
export class Scrubber {
  private readonly options: ScrubberOptions
  private timer: NodeJS.Timeout | undefined
  private stopping: AbortController | undefined
  private running: Promise<CheckResult | undefined> | undefined

  constructor (options: ScrubberOptions) {
    this.options = options
  }

  start (): void {
    if (this.options.intervalMs <= 0 || this.stopping !== undefined) return
    this.stopping = new AbortController()
    this.timer = setInterval(() => { if (this.running === undefined) void this.scrub() }, this.options.intervalMs).unref()
  }

  /** One pass now (undefined when stopped meanwhile). */
  async scrub (): Promise<CheckResult | undefined> {
    const signal = this.stopping?.signal ?? AbortSignal.abort()
    const run = checkAllBlocks(this.options.blockstore, { signal, bytesPerSecond: this.options.bytesPerSecond, onChecked: this.options.onChecked })
      .then(result => {
        this.options.logger?.info({ checked: result.checked, bytes: result.bytes, corrupt: result.corrupt.length, unreadable: result.unreadable.length, durationMs: result.durationMs }, 'scrubbed every block')
        for (const { key, reason } of result.unreadable) this.options.logger?.error({ key, reason }, 'a block could not be read')
        return result
      }, (err: unknown) => {
        if (!signal.aborted) this.options.logger?.warn({ err }, 'scrub failed')
        return undefined
      })
      .finally(() => { this.running = undefined })
    this.running = run
    return await run
  }

  async stop (): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    this.stopping?.abort()
    this.stopping = undefined
    await this.running
  }
}
