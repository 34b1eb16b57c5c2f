// Strategies as operators see them (D7): create, list, remove, and the status of each against the
// fleet's node records. The placement is computed here from the live members, the same way every
// node's reconciler computes it; the progress comes from what each node wrote in its record.
import { randomUUID } from 'node:crypto'
import { NodeNotFoundError, type FleetNode } from '../mesh/membership.ts'
import type { PlacementState } from '../mesh/presence.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import type { ImageResolver } from './images.ts'
import { place, type Member } from './placement.ts'
import { InvalidStrategyError, checkAgainstFleet, parseStrategyPayload, type Strategy, type StrategySpec } from './strategy.ts'

export { NodeNotFoundError }

/** No strategy has that id. */
export class StrategyNotFoundError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'STRATEGY_UNKNOWN', status: 404, message: 'no strategy has that id' }
}

/** Where strategies are kept: the replicated catalogue. */
export interface StrategyStore {
  putStrategy(strategy: Strategy): Promise<void>
  deleteStrategy(id: string): Promise<void>
  getStrategy(id: string): Promise<Strategy | undefined>
  allStrategies(): Promise<Strategy[]>
}

/** A node of the fleet: identity, presence, and how it stands (silent, gone). */
export type ListedNode = FleetNode

/** The fleet's nodes: every node known; the members are the ones not gone. */
export interface NodeSource {
  nodes(): Promise<ListedNode[]>
}

/** A node chosen by placement. */
export interface PlacedNode {
  node: string
  name: string
}

/** A strategy a dry run would store. */
export type UnsavedStrategy = StrategySpec & { id: null }

export interface CreatedStrategy {
  strategy: Strategy | UnsavedStrategy
  /** The nodes that must hold the image, best-ranked first. */
  placement: PlacedNode[]
}

export type DesiredState = 'pending' | PlacementState['state']

/** A node placement chose, and how far it got. */
export interface DesiredNode extends PlacedNode {
  /** pending: the node has said nothing of this strategy yet. */
  state: DesiredState
  imageCid?: string
  bytesDone?: number
  bytesTotal?: number
  reason?: string
  updatedAt?: string
}

/** A node placement no longer chooses that still reports the image: it is to drop it. */
export interface DroppingNode extends PlacedNode {
  state: 'dropping'
  /** What the node last said. */
  reported: PlacementState['state']
  /** Its heartbeat is stale: it may be gone rather than dropping. */
  silent: boolean
}

export interface StrategyStatus {
  strategy: Strategy
  desired: DesiredNode[]
  extra: DroppingNode[]
}

/** Counts of a status, for lists. */
export interface StatusSummary {
  desired: number
  pending: number
  fetching: number
  held: number
  failed: number
  dropping: number
}

/** Why a node holds (or fetches) an image for a strategy. */
export interface StrategyHolding extends PlacementState {
  strategy: string
  /** The strategy still exists. */
  known: boolean
  /** Placement still chooses this node for it. */
  desired: boolean
}

/** An image a node's inventory lists, with the strategies it holds it for (none: pushed there, or kept). */
export interface ImageHolding {
  imageCid: string
  /** `repo:tag` of the catalogue's tags that point at it. */
  tags: string[]
  strategies: string[]
}

export interface NodeHoldings {
  node: ListedNode
  strategies: StrategyHolding[]
  images: ImageHolding[]
}

export interface StrategyServiceOptions {
  store: StrategyStore
  nodes: NodeSource
  images: ImageResolver
  /** The catalogue's tags, for holdings' tag names. */
  tags: { allTags(): Promise<Array<{ repository: string, tag: string, imageCid: string }>> }
  now?: () => Date
  newId?: () => string
}

export class StrategyService {
  private readonly store: StrategyStore
  private readonly nodeSource: NodeSource
  private readonly images: ImageResolver
  private readonly tags: StrategyServiceOptions['tags']
  private readonly now: () => Date
  private readonly newId: () => string

  constructor (options: StrategyServiceOptions) {
    this.store = options.store
    this.nodeSource = options.nodes
    this.images = options.images
    this.tags = options.tags
    this.now = options.now ?? (() => new Date())
    this.newId = options.newId ?? randomUUID
  }

  /**
   * Reads a strategy in Shoal's or DistroMash's form, checks it against the catalogue and the live
   * members, and stores it unless it is a dry run (`execute: false`).
   */
  async create (body: unknown, signal?: AbortSignal): Promise<CreatedStrategy> {
    const { spec, execute } = parseStrategyPayload(body)
    if (!await this.images.exists(spec.image, signal)) {
      throw new InvalidStrategyError(`unknown image ${JSON.stringify(spec.image)}: no tag, manifest or image CID of the fleet names it`)
    }
    const live = liveNodes(await this.nodeSource.nodes())
    signal?.throwIfAborted()
    checkAgainstFleet(spec, live.map(asMember))
    const placement = placed(spec, live)
    if (!execute) return { strategy: { ...spec, id: null }, placement }
    const at = this.now().toISOString()
    const strategy: Strategy = { ...spec, id: this.newId(), createdAt: at, updatedAt: at }
    await this.store.putStrategy(strategy)
    return { strategy, placement }
  }

  /** Every strategy, oldest first, with the counts of its status. */
  async list (): Promise<Array<Strategy & { summary: StatusSummary }>> {
    const [strategies, nodes] = await Promise.all([this.store.allStrategies(), this.nodeSource.nodes()])
    return strategies
      .sort((a, b) => compareText(a.createdAt, b.createdAt) || compareText(a.id, b.id))
      .map(strategy => ({ ...strategy, summary: summarize(statusOf(strategy, nodes)) }))
  }

  async get (id: string): Promise<Strategy> {
    const strategy = await this.store.getStrategy(id)
    if (strategy === undefined) throw new StrategyNotFoundError(`no strategy ${JSON.stringify(id)}`)
    return strategy
  }

  /** Removes a strategy; the nodes holding its image for it then drop it (their reconcilers). */
  async delete (id: string): Promise<void> {
    await this.get(id)
    await this.store.deleteStrategy(id)
  }

  /** The nodes placement chooses now and how far each got, and the nodes still to drop the image. */
  async status (id: string): Promise<StrategyStatus> {
    const strategy = await this.get(id)
    return statusOf(strategy, await this.nodeSource.nodes())
  }

  /** What a node holds and why: its progress per strategy, and the images its inventory lists. */
  async holdings (nodeId: string): Promise<NodeHoldings> {
    const nodes = await this.nodeSource.nodes()
    const node = nodes.find(candidate => candidate.id === nodeId)
    if (node === undefined) throw new NodeNotFoundError(`no node ${JSON.stringify(nodeId)} in the fleet`)
    const [strategies, tags] = await Promise.all([this.store.allStrategies(), this.tags.allTags()])
    const byId = new Map(strategies.map(strategy => [strategy.id, strategy]))
    const live = liveNodes(nodes)
    const entries = Object.entries(node.replication ?? {})
    const holdings = entries.map(([strategyId, state]): StrategyHolding => {
      const strategy = byId.get(strategyId)
      return {
        ...state,
        strategy: strategyId,
        known: strategy !== undefined,
        desired: strategy !== undefined && place(strategy, live.map(asMember)).includes(node.id)
      }
    }).sort((a, b) => compareText(a.strategy, b.strategy))
    const images = [...node.images].sort(compareText).map(imageCid => ({
      imageCid,
      tags: tags.filter(tag => tag.imageCid === imageCid).map(tag => `${tag.repository}:${tag.tag}`).sort(compareText),
      strategies: entries.filter(([, state]) => state.imageCid === imageCid).map(([strategyId]) => strategyId).sort(compareText)
    }))
    return { node, strategies: holdings, images }
  }
}

function statusOf (strategy: Strategy, nodes: readonly ListedNode[]): StrategyStatus {
  const desiredIds = new Set<string>()
  const desired = placed(strategy, liveNodes(nodes)).map(({ node, name }): DesiredNode => {
    desiredIds.add(node)
    const reported = nodes.find(candidate => candidate.id === node)?.replication?.[strategy.id]
    if (reported === undefined) return { node, name, state: 'pending' }
    return { node, name, ...progressOf(reported) }
  })
  const extra = nodes
    .filter(node => !desiredIds.has(node.id) && node.replication?.[strategy.id] !== undefined)
    .map((node): DroppingNode => ({
      node: node.id,
      name: node.name,
      state: 'dropping',
      reported: node.replication?.[strategy.id]?.state ?? 'held',
      silent: node.silent
    }))
  return { strategy, desired, extra }
}

/** The fields of a node's report that a status shows (not the image, which the strategy names). */
function progressOf (reported: PlacementState): Omit<DesiredNode, 'node' | 'name'> {
  const { state, imageCid, bytesDone, bytesTotal, reason, updatedAt } = reported
  return dropUndefined({ state, imageCid, bytesDone, bytesTotal, reason, updatedAt })
}

function summarize (status: StrategyStatus): StatusSummary {
  const summary: StatusSummary = { desired: status.desired.length, pending: 0, fetching: 0, held: 0, failed: 0, dropping: status.extra.length }
  for (const node of status.desired) summary[node.state]++
  return summary
}

function placed (spec: StrategySpec, live: readonly ListedNode[]): PlacedNode[] {
  const names = new Map(live.map(node => [node.id, node.name]))
  return place(spec, live.map(asMember)).map(node => ({ node, name: names.get(node) ?? node }))
}

/** The members placement counts: a silent node (busy, perhaps) still counts until it is gone. */
function liveNodes (nodes: readonly ListedNode[]): ListedNode[] {
  return nodes.filter(node => !node.gone)
}

function asMember (node: ListedNode): Member {
  return { id: node.id, name: node.name, labels: node.labels }
}

function dropUndefined<T extends object> (value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, field]) => field !== undefined)) as T
}

function compareText (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
