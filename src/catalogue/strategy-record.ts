// A replication strategy as the catalogue stores and replicates it (D6, D7). The catalogue holds
// the records; replication/ gives them their meaning (parsing, placement, status), so the types
// live here, below both, and replication/strategy.ts re-exports them.

/** Labels are `key=value` pairs; a selector matches a node whose labels hold every one of its pairs. */
export type LabelSelector = Record<string, string>

export const STRATEGY_KINDS = ['percentage', 'target', 'replicas', 'all', 'labels'] as const
export type StrategyKind = typeof STRATEGY_KINDS[number]

/**
 * What to replicate and where. `image` is `repo:tag` (the strategy follows the tag as it moves),
 * `repo@sha256:…` or an image CID (`bafy…`).
 */
export type StrategySpec =
  /** p % of the member nodes, rounded up, at least one. */
  | { kind: 'percentage', image: string, percentage: number }
  /** One node, named by its id or its name. */
  | { kind: 'target', image: string, target: string }
  /** k nodes. */
  | { kind: 'replicas', image: string, replicas: number }
  /** Every member node. */
  | { kind: 'all', image: string }
  /** The nodes whose labels match `selector`: all of them, or the first `count`. */
  | { kind: 'labels', image: string, selector: LabelSelector, count?: number }

/** A strategy as stored in the catalogue. */
export type Strategy = StrategySpec & { id: string, createdAt: string, updatedAt: string }
