import type { Provider } from './provider-pool.ts'

/**
 * Each puller relays each block to at most this many pullers above it, and a DAG's blocks are cut
 * into as many stripes: a puller's upload is shared that many ways in the one stripe where it
 * relays, and it relays nothing in the others.
 */
export const RELAYS_PER_PULLER = 2
/** Pullers that finished, offered besides the seeders (a few: the fetcher scans every candidate per block). */
export const FINISHED_HOLDERS = 4

/** What this node heard of another node's pull of a DAG (pull notices). */
export interface PullerHeard {
  id: string
  url: string
  /** It holds the whole DAG now. */
  done: boolean
}

interface Placed {
  puller: PullerHeard
  /** Its place in every stripe's order: a hash of the DAG and its id. */
  score: number
  /** The stripe where it relays: its score modulo the stripes. */
  stripe: number
}

/**
 * The relay trees of one DAG, built from what a node heard of its pullers (once per change of
 * that, not per block). See rankProviders.
 */
export interface RelayTrees {
  root: string
  /** Per stripe: the pullers in that stripe's order, its relays first. */
  orders: Placed[][]
  /** Pullers that finished, by score. */
  finished: Placed[]
  /** Every puller heard, by id. */
  byId: Map<string, Placed>
}

/**
 * Pullers of the same DAG relay its blocks to each other along RELAYS_PER_PULLER trees, one per
 * stripe of the blocks (a block's stripe: its hash, modulo the stripes). Each tree is a heap of
 * fan-out RELAYS_PER_PULLER over an order of the pullers that puts first those whose own stripe it
 * is: every puller relays in one tree only, to at most RELAYS_PER_PULLER pullers, so its upload
 * carries about one image whatever the fleet's size, while the depth of a tree grows with the
 * logarithm of the pullers. A puller asks for a block its parent in the block's tree first
 * (tier 0), and the holders when that fails (tier 1: the seeders, and a few pullers that
 * finished); the top of each tree asks the holders, so the seeders send about one image in all.
 * (A chain by peer id, each asking the two just below it, was used before: its depth, and the
 * time of the last puller, grew with N: bench/RESULTS.md, "Fleet simulation".)
 *
 * The orders hash the DAG's root with each peer id, so roles change from one DAG to the next.
 * Nodes that heard different pullers (notices still on their way) may disagree on a parent, but
 * never on who ranks above whom (ranksAbove depends on the two ids alone): a parent is always
 * earlier in the order, so waits go one way and never form a cycle.
 */
export function relayTrees (root: string, pullers: PullerHeard[]): RelayTrees {
  const placed = pullers.map(puller => place(root, puller))
  const orders: Placed[][] = []
  for (let stripe = 0; stripe < RELAYS_PER_PULLER; stripe++) orders.push([...placed].sort((a, b) => compare(a, b, stripe)))
  const finished = placed.filter(p => p.puller.done).sort((a, b) => compare(a, b, -1))
  return { root, orders, finished, byId: new Map(placed.map(p => [p.puller.id, p])) }
}

/** The stripe of a block, from its multihash digest. */
export function stripeOf (digest: Uint8Array): number {
  return (digest[digest.length - 1] ?? 0) % RELAYS_PER_PULLER
}

/**
 * Whom `self` asks for a block of the trees' DAG (`digest`: the block's multihash digest): its
 * parent in the block's tree (tier 0), then the seeders and a few finished pullers (tier 1).
 * `self` may be among the pullers or not (a node does not hear its own notices).
 */
export function rankProviders (self: string, trees: RelayTrees, seeders: Provider[], digest: Uint8Array): Provider[] {
  const stripe = stripeOf(digest)
  const order = trees.orders[stripe] ?? []
  const me = trees.byId.get(self) ?? place(trees.root, { id: self, url: '', done: false })
  // Its place in the heap: how many pullers come before it in this tree's order.
  const position = lowerBound(order, me, stripe)
  const parent = position === 0 ? undefined : order[Math.floor((position - 1) / RELAYS_PER_PULLER)]?.puller
  const ranked: Provider[] = []
  if (parent !== undefined) ranked.push({ id: parent.id, url: parent.url, tier: 0 })
  const seen = new Set([self, ...ranked.map(p => p.id)])
  for (const seeder of seeders) {
    if (seen.has(seeder.id)) continue
    seen.add(seeder.id)
    ranked.push({ id: seeder.id, url: seeder.url, tier: 1 })
  }
  // Finished pullers from its own score on, so that the askers spread over them.
  const finished = trees.finished
  const from = lowerBound(finished, me, -1)
  for (let i = 0, added = 0; i < finished.length && added < FINISHED_HOLDERS; i++) {
    const holder = (finished[(from + i) % finished.length] as Placed).puller
    if (seen.has(holder.id)) continue
    seen.add(holder.id)
    ranked.push({ id: holder.id, url: holder.url, tier: 1 })
    added++
  }
  return ranked
}

/**
 * Whether `peer` ranks above `self` in the tree of the block (`digest`) of the DAG `root`, and so
 * may wait on it: a relay fetches a block it lacks only for a peer above it.
 */
export function ranksAbove (self: string, peer: string, root: string, digest: Uint8Array): boolean {
  const stripe = stripeOf(digest)
  return compare(place(root, { id: peer, url: '', done: false }), place(root, { id: self, url: '', done: false }), stripe) > 0
}

function place (root: string, puller: PullerHeard): Placed {
  const score = fnv1a(`${root}/${puller.id}`)
  return { puller, score, stripe: score % RELAYS_PER_PULLER }
}

/** The order of one stripe (-1: by score alone): that stripe's relays first, then by score, then by id. */
function compare (a: Placed, b: Placed, stripe: number): number {
  const aFirst = a.stripe === stripe ? 0 : 1
  const bFirst = b.stripe === stripe ? 0 : 1
  if (aFirst !== bFirst) return aFirst - bFirst
  if (a.score !== b.score) return a.score - b.score
  return a.puller.id < b.puller.id ? -1 : a.puller.id > b.puller.id ? 1 : 0
}

/** How many entries of `sorted` come before `item` in the stripe's order. */
function lowerBound (sorted: Placed[], item: Placed, stripe: number): number {
  let low = 0
  let high = sorted.length
  while (low < high) {
    const middle = (low + high) >> 1
    if (compare(sorted[middle] as Placed, item, stripe) < 0) low = middle + 1
    else high = middle
  }
  return low
}

/** 32-bit FNV-1a: a cheap, well-spread hash of a short string (no adversary here: ids come from keys). */
function fnv1a (text: string): number {
  let hash = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i)
    hash = Math.imul(hash, 0x01000193)
  }
  return hash >>> 0
}
