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

/**
 * The requests in flight to each provider, across every fetch of a node, bounded per provider
 * so that no peer is swamped: a fetch takes a slot of the least busy provider it may ask, and
 * waits for one to free when all are full.
 */
export class ProviderPool {
  readonly maxInFlightPerProvider: number
  private readonly inFlight = new Map<string, number>()
  /** Fetches waiting for a slot; each is woken whenever any slot frees. */
  private readonly slotWaiters = new Set<() => void>()

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

  release (id: string): void {
    const load = (this.inFlight.get(id) ?? 1) - 1
    if (load === 0) this.inFlight.delete(id)
    else this.inFlight.set(id, load)
    const waiters = [...this.slotWaiters]
    this.slotWaiters.clear()
    for (const wake of waiters) wake()
  }

  /** Resolves once any slot frees (or the signal aborts: the caller then checks it). */
  async slotFreed (signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      const wake = (): void => {
        signal.removeEventListener('abort', wake)
        this.slotWaiters.delete(wake)
        resolve()
      }
      this.slotWaiters.add(wake)
      signal.addEventListener('abort', wake, { once: true })
    })
  }
}
