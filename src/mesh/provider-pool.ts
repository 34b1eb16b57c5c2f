import type { CID } from 'multiformats/cid'

/** A Shoal node that may hold blocks: its peer id and the base URL of its HTTP server. */
export interface Provider {
  id: string
  url: string
  /**
   * Lower tiers are asked first; a higher tier only once every provider of the lower ones has
   * failed for the block (not merely when they are busy). Default 0.
   */
  tier?: number
}

/**
 * Providers as a list, or as a function asked again for every block (the fleet changes, and whom
 * to ask depends on the block: relay-tree.ts).
 */
export type Providers = Provider[] | ((cid: CID) => Provider[])

export function listOf (providers: Providers, cid: CID): Provider[] {
  return typeof providers === 'function' ? providers(cid) : providers
}

const RECHECK_MS = 1_000

/** A fetch waiting for a slot of one of its candidates. */
interface SlotWaiter {
  candidates: Provider[]
  /** Ends the wait with the provider whose slot it was handed, or with none. */
  settle(provider: Provider | undefined): void
}

/**
 * The requests in flight to each provider, across every fetch of a node, bounded per provider
 * so that no peer is swamped: a fetch takes a slot of the least busy provider it may ask, and
 * waits for one to free when all are full.
 */
export class ProviderPool {
  readonly maxInFlightPerProvider: number
  private readonly inFlight = new Map<string, number>()
  /**
   * Fetches waiting for a slot, in the order they began to wait, under each provider they may
   * ask: a freed slot is handed to the first of them. Waking every waiter at every release made
   * each rank its providers again, and most went back to waiting: a fifth of a fetching node's
   * allocations.
   */
  private readonly slotWaiters = new Map<string, Set<SlotWaiter>>()

  constructor (maxInFlightPerProvider: number) {
    if (maxInFlightPerProvider < 1) throw new RangeError('maxInFlightPerProvider must be at least 1')
    this.maxInFlightPerProvider = maxInFlightPerProvider
  }

  /**
   * Takes a slot of the provider with the fewest requests in flight and a free slot (ties broken
   * at random); undefined, taking nothing, when every one of them is full.
   */
  tryAcquire (candidates: Provider[]): Provider | undefined {
    let best: Provider | undefined
    let bestLoad = this.maxInFlightPerProvider
    let ties = 0
    for (const provider of candidates) {
      const load = this.inFlight.get(provider.id) ?? 0
      if (load < bestLoad) {
        best = provider
        bestLoad = load
        ties = 1
      } else if (load === bestLoad && best !== undefined && Math.random() * ++ties < 1) {
        // Reservoir sampling: each of the tied providers ends up chosen with equal chance.
        best = provider
      }
    }
    if (best !== undefined) this.inFlight.set(best.id, bestLoad + 1)
    return best
  }

  /**
   * A slot of one of `candidates`: at once when one is free, else the first that frees and is
   * not handed to a fetch that waited longer. Undefined when the signal aborts, or after
   * RECHECK_MS: whom a fetch may ask changes (a puller starts relaying), and a provider that
   * stopped answering holds its slots until its requests time out.
   */
  async acquire (candidates: Provider[], signal: AbortSignal): Promise<Provider | undefined> {
    const now = this.tryAcquire(candidates)
    if (now !== undefined || candidates.length === 0 || signal.aborted) return now
    return await new Promise<Provider | undefined>(resolve => {
      const waiter: SlotWaiter = {
        candidates,
        settle: (provider) => {
          clearTimeout(recheck)
          signal.removeEventListener('abort', giveUp)
          for (const candidate of candidates) {
            const waiters = this.slotWaiters.get(candidate.id)
            waiters?.delete(waiter)
            if (waiters?.size === 0) this.slotWaiters.delete(candidate.id)
          }
          resolve(provider)
        }
      }
      const giveUp = (): void => { waiter.settle(undefined) }
      const recheck = setTimeout(giveUp, RECHECK_MS)
      signal.addEventListener('abort', giveUp, { once: true })
      for (const candidate of candidates) {
        let waiters = this.slotWaiters.get(candidate.id)
        if (waiters === undefined) this.slotWaiters.set(candidate.id, waiters = new Set())
        waiters.add(waiter)
      }
    })
  }

  /** Gives back a slot: to the fetch that has waited longest for one of this provider's, if any. */
  release (id: string): void {
    const next = this.slotWaiters.get(id)?.values().next().value
    const provider = next?.candidates.find(candidate => candidate.id === id)
    if (next !== undefined && provider !== undefined) {
      // Handed over: the provider's load stays as it is.
      next.settle(provider)
      return
    }
    const load = (this.inFlight.get(id) ?? 1) - 1
    if (load === 0) this.inFlight.delete(id)
    else this.inFlight.set(id, load)
  }
}
