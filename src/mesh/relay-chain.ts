import type { Provider } from './provider-pool.ts'

/** Each puller relays for at most this many pullers above it: its upload is shared that many ways. */
export const RELAYS_PER_PULLER = 2

/** What this node heard of another node's pull of a DAG (pull notices). */
export interface PullerHeard {
  id: string
  url: string
  /** It holds the whole DAG now. */
  done: boolean
}

/**
 * Whom a node asks for blocks of a DAG that other nodes pull at the same time. Nodes pulling it
 * form a chain by peer id: each asks the (at most RELAYS_PER_PULLER) pullers just below it first
 * (tier 0), who hand on blocks as they receive them, so the seeders upload each block about once
 * instead of once per puller. The holders (`seeders`, and pullers that finished) come next
 * (tier 1), when those fail, and are all a puller at the bottom of the chain has. A node only
 * ever waits on pullers below it (ranksAbove), so no two nodes wait on each other.
 *
 * A pure function of what the node heard, so the fleet simulation (bench/fleet-simulation.ts)
 * runs the very ranking the nodes run.
 */
export function rankProviders (self: string, pullers: PullerHeard[], seeders: Provider[]): Provider[] {
  const below = pullers.filter(p => !p.done && p.id < self).sort((a, b) => (a.id < b.id ? 1 : -1))
    .slice(0, RELAYS_PER_PULLER).map(p => ({ id: p.id, url: p.url, tier: 0 }))
  const holders = new Map<string, Provider>()
  for (const holder of [...seeders, ...pullers.filter(p => p.done)]) {
    if (holder.id !== self && !holders.has(holder.id) && !below.some(b => b.id === holder.id)) holders.set(holder.id, { id: holder.id, url: holder.url, tier: 1 })
  }
  return [...below, ...holders.values()]
}

/** Whether `peer` ranks above `self` in the chain of pullers (and so may wait on it). */
export function ranksAbove (self: string, peer: string): boolean {
  return peer > self
}
