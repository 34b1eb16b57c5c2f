// Placement (D7): which nodes must hold a strategy's image. Pure: the same strategy and the same
// members give the same answer on every node, in any member order.
//
// Rendezvous (highest-random-weight) hashing: each node gets a score from hash(image, node id) and
// the image goes to the best-scoring nodes. Every node computes the same set from the member list
// alone, with no coordinator; and since a node's score for an image does not depend on the other
// nodes, a member joining or leaving moves only the copies it must: a leaver's copies go to the
// next-ranked nodes, a joiner takes only the slots where it outranks the current holder.
// The key is the image reference, not the strategy, so two strategies on one image overlap
// instead of doubling its copies.
import { hash } from 'node:crypto'
import type { LabelSelector, StrategySpec } from '../catalogue/strategy-record.ts'

/** A member node as placement sees it. */
export interface Member {
  id: string
  name?: string
  labels?: Record<string, string>
}

/** Whether a node is the one a target strategy names: by id, or by name. */
export function isTarget (member: Member, target: string): boolean {
  return member.id === target || member.name === target
}

/** Whether labels hold every pair of the selector. A node without labels matches no selector. */
export function matchesSelector (labels: Readonly<Record<string, string>> | undefined, selector: LabelSelector): boolean {
  if (labels === undefined) return false
  return Object.entries(selector).every(([key, value]) => Object.hasOwn(labels, key) && labels[key] === value)
}

/** The ids of the nodes that must hold the strategy's image, best-ranked first. */
export function place (strategy: StrategySpec, members: readonly Member[]): string[] {
  const ranked = rank(strategy.image, members)
  switch (strategy.kind) {
    case 'all':
      return ranked.map(member => member.id)
    case 'replicas':
      return ranked.slice(0, strategy.replicas).map(member => member.id)
    case 'percentage':
      return ranked.slice(0, percentageCount(strategy.percentage, ranked.length)).map(member => member.id)
    case 'target': {
      // An id names one node; a name shared by several (a misconfiguration) still gives one copy.
      const byId = ranked.find(member => member.id === strategy.target)
      const chosen = byId ?? ranked.find(member => isTarget(member, strategy.target))
      return chosen === undefined ? [] : [chosen.id]
    }
    case 'labels': {
      const matching = ranked.filter(member => matchesSelector(member.labels, strategy.selector)).map(member => member.id)
      return strategy.count === undefined ? matching : matching.slice(0, strategy.count)
    }
  }
}

/** p % of n nodes, rounded up, at least one (none when there are no nodes). */
export function percentageCount (percentage: number, nodeCount: number): number {
  if (nodeCount === 0) return 0
  return Math.min(nodeCount, Math.max(1, Math.ceil((percentage * nodeCount) / 100)))
}

/** A node's rendezvous score for a key: the first 8 bytes of sha256(key + '\n' + node id). */
export function rendezvousScore (key: string, nodeId: string): bigint {
  return hash('sha256', `${key}\n${nodeId}`, 'buffer').readBigUInt64BE(0)
}

/**
 * Members by descending score for the key, one per id. Equal scores (never seen in practice) fall
 * back to id order; of two records with one id, the one kept is chosen by content, not position.
 * Either way the result never depends on the order members came in.
 */
function rank (key: string, members: readonly Member[]): Member[] {
  const byId = new Map<string, Member>()
  for (const member of members) {
    const seen = byId.get(member.id)
    if (seen === undefined || compareText(canonical(member), canonical(seen)) < 0) byId.set(member.id, member)
  }
  return [...byId.values()]
    .map(member => ({ member, score: rendezvousScore(key, member.id) }))
    .sort((a, b) => a.score === b.score ? compareText(a.member.id, b.member.id) : a.score > b.score ? -1 : 1)
    .map(scored => scored.member)
}

function canonical (member: Member): string {
  const labels = Object.entries(member.labels ?? {}).sort(([a], [b]) => compareText(a, b))
  return JSON.stringify([member.name ?? null, labels])
}

function compareText (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
