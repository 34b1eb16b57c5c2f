// The convergence loop of D7: each node works out from the strategies and the live members which
// images it must hold, fetches and pins what it lacks, lets go of what no strategy places on it
// any more, and then collects the garbage. No coordinator: every node runs the same placement.
import type { Logger } from 'pino'
import { retryDelay, type RetryPolicy } from '../retry-policy.ts'
import type { PlacementState } from '../mesh/presence.ts'
import type { Placement, PlacementLog, ResolvedImage } from '../registry/image-holdings.ts'
import { place, type Member } from './placement.ts'
import type { Strategy } from './strategy.ts'

export type { Placement, PlacementLog, ResolvedImage }

/** What the reconciler needs of the registry to hold an image whole and to let it go. */
export interface ImageHolder {
  holds(image: ResolvedImage): Promise<boolean>
  size(image: ResolvedImage): Promise<{ total: number, held: number }>
  fetch(image: ResolvedImage, onProgress: (done: number, total: number) => void, signal: AbortSignal): Promise<void>
  drop(image: ResolvedImage): Promise<void>
}

/** A node of the inventory as the reconciler reads it. */
export interface FleetMember extends Member {
  /** No sign of life for the grace: placement no longer counts it. */
  gone: boolean
}

export interface ReconcilerOptions {
  selfId: () => string
  strategies: () => Promise<Strategy[]>
  members: () => Promise<FleetMember[]>
  /** The image a strategy names, as it is now (a tag follows its updates); undefined if unknown. */
  resolve: (image: string) => Promise<ResolvedImage | undefined>
  holder: ImageHolder
  placements: PlacementLog
  /** Called when this node's states changed (to be written into its inventory record). */
  onStatesChanged: () => void
  collectGarbage: () => Promise<unknown>
  logger: Logger
  /** A pass at least this often, besides the ones changes in the catalogue trigger. */
  intervalMs?: number
  /** How many images are fetched at once. */
  concurrentFetches?: number
  /** The first wait before a failed fetch is tried again; it doubles up to 2 minutes. */
  retryMs?: number
}

const DEFAULT_INTERVAL_MS = 5_000
const PROGRESS_REPORT_MS = 1_000
const MAX_RETRY_MS = 120_000
const POKE_DELAY_MS = 100

interface Fetching {
  image: ResolvedImage
  controller: AbortController
  done: number
  total: number
  finished?: Promise<void>
}

interface Failure {
  reason: string
  at: number
  retryAfter: number
  attempts: number
}

/**
 * One node's reconciler. A pass reads the strategies and the live members, places every strategy
 * (the same pure function on every node), and compares what this node must hold with what it
 * placed before: missing images are fetched in the background (a few at once, progress reported),
 * images no strategy places here any more are dropped, then garbage is collected so the disk space
 * really comes back. Passes run one at a time: on every catalogue change (debounced) and on a timer.
 */
export class Reconciler {
  private readonly options: ReconcilerOptions
  private readonly logger: Logger
  private readonly intervalMs: number
  private readonly concurrentFetches: number
  /** A failed fetch is tried again after 5 s, then 10 s, doubling up to 2 minutes, for ever. */
  private readonly retry: RetryPolicy
  /** strategy id -> this node's state for it, as written into its inventory record. */
  private current: Record<string, PlacementState> = {}
  private readonly fetching = new Map<string, Fetching>()
  private readonly failures = new Map<string, Failure>()
  private timer: NodeJS.Timeout | undefined
  private pokeTimer: NodeJS.Timeout | undefined
  private running: Promise<void> | undefined
  private again = false
  private stopped = false
  private lastProgressReport = 0

  constructor (options: ReconcilerOptions) {
    this.options = options
    this.logger = options.logger
    this.intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS
    this.concurrentFetches = options.concurrentFetches ?? 2
    this.retry = { tries: Number.POSITIVE_INFINITY, delayMs: options.retryMs ?? 5_000, factor: 2, maxDelayMs: MAX_RETRY_MS }
  }

  start (): void {
    this.stopped = false
    this.timer = setInterval(() => { this.poke() }, this.intervalMs).unref()
    this.poke()
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.pokeTimer)
    for (const fetch of this.fetching.values()) fetch.controller.abort()
    await this.running
  }

  /** This node's state per strategy it is placed on, for its inventory record. */
  states (): Record<string, PlacementState> {
    return this.current
  }

  /** Asks for a pass soon (bursts of changes make one pass). */
  poke (): void {
    if (this.stopped || this.pokeTimer !== undefined) return
    this.pokeTimer = setTimeout(() => {
      this.pokeTimer = undefined
      void this.reconcile()
    }, POKE_DELAY_MS)
  }

  /** One pass; if one is running, another follows it. Resolves when the pass (or both) ended. */
  async reconcile (): Promise<void> {
    if (this.running !== undefined) {
      this.again = true
      return await this.running
    }
    this.running = (async () => {
      try {
        do {
          this.again = false
          try {
            await this.pass()
          } catch (err) {
            this.logger.warn({ err }, 'reconciliation pass failed')
          }
        } while (this.again && !this.stopped)
      } finally {
        this.running = undefined
      }
    })()
    return await this.running
  }

  private async pass (): Promise<void> {
    const self = this.options.selfId()
    const members = (await this.options.members()).filter(member => !member.gone)
    // Until this node sees itself as a member (just started, or its record is late), its share is
    // unknown: doing nothing is safe, dropping everything is not.
    if (!members.some(member => member.id === self)) return
    const strategies = await this.options.strategies()
    const now = new Date().toISOString()

    const desired = new Map<string, { image: ResolvedImage, strategies: Strategy[] }>()
    const states: Record<string, PlacementState> = {}
    for (const strategy of strategies) {
      if (!place(strategy, members).includes(self)) continue
      const image = await this.options.resolve(strategy.image)
      if (image === undefined) {
        states[strategy.id] = { image: strategy.image, state: 'failed', reason: `${strategy.image} is not in the catalogue`, updatedAt: now }
        continue
      }
      const entry = desired.get(image.imageCid) ?? { image, strategies: [] }
      entry.strategies.push(strategy)
      desired.set(image.imageCid, entry)
    }

    const placed = new Map((await this.options.placements.all()).map(placement => [placement.imageCid, placement]))
    for (const [imageCid, { image, strategies: wanting }] of desired) {
      const ids = wanting.map(strategy => strategy.id).sort()
      const before = placed.get(imageCid)
      const holds = await this.options.holder.holds(image)
      if (before === undefined || before.strategies.join() !== ids.join()) {
        await this.options.placements.put({ ...image, strategies: ids, kept: before?.kept ?? holds, placedAt: before?.placedAt ?? now })
      }
      for (const strategy of wanting) states[strategy.id] = await this.stateOf(strategy, image, holds, now)
      if (!holds) this.startFetch(image)
    }

    let dropped = false
    for (const placement of placed.values()) {
      if (desired.has(placement.imageCid)) continue
      // A fetch still writing records would undo the drop: stop it and let it end first.
      const fetching = this.fetching.get(placement.imageCid)
      fetching?.controller.abort()
      await fetching?.finished
      this.failures.delete(placement.imageCid)
      if (!placement.kept) {
        await this.options.holder.drop(placement)
        dropped = true
        this.logger.info({ image: placement.imageCid, repository: placement.repository }, 'dropped an image no strategy places here')
      }
      await this.options.placements.delete(placement.imageCid)
    }
    this.setStates(states)
    if (dropped) {
      const freed = await this.options.collectGarbage()
      this.logger.info({ freed }, 'collected garbage after dropping images')
    }
  }

  private async stateOf (strategy: Strategy, image: ResolvedImage, holds: boolean, now: string): Promise<PlacementState> {
    const base = { image: strategy.image, imageCid: image.imageCid }
    if (holds) {
      const { total } = await this.options.holder.size(image)
      return { ...base, state: 'held', bytesDone: total, bytesTotal: total, updatedAt: this.current[strategy.id]?.state === 'held' ? this.current[strategy.id]!.updatedAt : now }
    }
    const fetching = this.fetching.get(image.imageCid)
    const failure = this.failures.get(image.imageCid)
    if (fetching === undefined && failure !== undefined) {
      return { ...base, state: 'failed', reason: failure.reason, updatedAt: new Date(failure.at).toISOString() }
    }
    // The size of an image not here yet is read from the fleet, which may not answer.
    const size = fetching === undefined ? await this.options.holder.size(image).catch(() => undefined) : undefined
    return {
      ...base,
      state: 'fetching',
      bytesDone: fetching?.done ?? size?.held ?? 0,
      bytesTotal: fetching?.total ?? size?.total ?? 0,
      updatedAt: now
    }
  }

  private startFetch (image: ResolvedImage): void {
    if (this.stopped || this.fetching.has(image.imageCid) || this.fetching.size >= this.concurrentFetches) return
    const failure = this.failures.get(image.imageCid)
    if (failure !== undefined && Date.now() < failure.retryAfter) return
    const fetch: Fetching = { image, controller: new AbortController(), done: 0, total: 0 }
    this.fetching.set(image.imageCid, fetch)
    this.logger.info({ image: image.imageCid, repository: image.repository, digest: image.digest }, 'fetching an image a strategy places here')
    const started = Date.now()
    fetch.finished = this.options.holder.fetch(image, (done, total) => {
      fetch.done = done
      fetch.total = total
      this.progressed(image.imageCid, done, total)
    }, fetch.controller.signal).then(() => {
      this.failures.delete(image.imageCid)
      this.logger.info({ image: image.imageCid, ms: Date.now() - started }, 'fetched an image')
    }, (err: unknown) => {
      if (fetch.controller.signal.aborted) return
      const attempts = (failure?.attempts ?? 0) + 1
      const reason = err instanceof Error ? err.message : String(err)
      this.failures.set(image.imageCid, { reason, at: Date.now(), attempts, retryAfter: Date.now() + retryDelay(this.retry, attempts) })
      this.logger.warn({ err, image: image.imageCid, attempts }, 'could not fetch an image a strategy places here')
    }).finally(() => {
      this.fetching.delete(image.imageCid)
      this.poke()
    })
  }

  /** Progress goes into the states at once, and out to the fleet at most once a second. */
  private progressed (imageCid: string, done: number, total: number): void {
    let changed = false
    for (const state of Object.values(this.current)) {
      if (state.imageCid !== imageCid || state.state !== 'fetching') continue
      state.bytesDone = done
      state.bytesTotal = total
      changed = true
    }
    if (changed && Date.now() - this.lastProgressReport >= PROGRESS_REPORT_MS) {
      this.lastProgressReport = Date.now()
      this.options.onStatesChanged()
    }
  }

  private setStates (states: Record<string, PlacementState>): void {
    const changed = JSON.stringify(withoutTimes(states)) !== JSON.stringify(withoutTimes(this.current))
    this.current = states
    if (changed) this.options.onStatesChanged()
  }
}

function withoutTimes (states: Record<string, PlacementState>): unknown {
  return Object.entries(states).sort(([a], [b]) => a.localeCompare(b)).map(([id, { updatedAt: _updatedAt, ...rest }]) => [id, rest])
}
