import type { Logger } from 'pino'
import type { NodeRecord } from '../catalogue/catalogue.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import { Liveness, type Standing } from './liveness.ts'
import { PresenceChannel, type PlacementState, type Presence, type PresenceTransport } from './presence.ts'

/** A node as the fleet sees it: its durable identity, its last presence, and how it stands. */
export type FleetNode = NodeRecord & {
  /** From its last presence; absent when it has not been heard since this node started. */
  disk?: { usedBytes: number, freeBytes: number }
  /** Image CIDs it said it holds. */
  images: string[]
  /** Strategy id -> its progress with that strategy's image. */
  replication?: Record<string, PlacementState>
  /** When it sent its last presence heard here (its clock). */
  heartbeatAt?: string
  /** Its catalogue writer key, from its presence: what an operator's certificate names. */
  writer?: string
  standing: Standing
  /** No sign of life for three presence intervals (busy, or leaving): still placed on. */
  silent: boolean
  /** No sign of life for the whole grace: its share is placed elsewhere. */
  gone: boolean
  self: boolean
}

/** `shoal nodes forget` of this node itself. */
export class ForgetSelfError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NODE_IS_SELF', status: 409, message: 'a node cannot forget itself' }
}

/** `shoal nodes forget` of a node that still shows life. */
export class NodeStillLiveError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NODE_LIVE', status: 409, message: 'the node is live: stop it first' }
}

/** No node of the fleet has that id (forgetting one, or asking for its holdings). */
export class NodeNotFoundError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NODE_UNKNOWN', status: 404, message: 'no node has that id' }
}

/** Where node identities are kept: the catalogue's nodes database. */
export interface IdentityStore {
  getNode(id: string): Promise<NodeRecord | undefined>
  putNode(record: NodeRecord): Promise<void>
  deleteNode(id: string): Promise<void>
  allNodes(): Promise<NodeRecord[]>
}

/** What membership needs of libp2p: connection events, open connections, dialling, ping. */
export interface PeerLink {
  onPeerConnect(listener: (peer: string) => void): () => void
  isConnected(peer: string): boolean
  connect(addresses: string[], signal: AbortSignal): Promise<unknown>
  ping(peer: string, signal: AbortSignal): Promise<unknown>
}

export interface MembershipOptions {
  self: string
  intervalMs: number
  goneAfterMs: number
  forgetAfterMs: number
  /** This node's identity as it is now. */
  identity: () => NodeRecord
  /** This node's presence as it is now. */
  presence: () => Promise<Presence>
  identities: IdentityStore
  transport: PresenceTransport
  link: PeerLink
  /** Called when a node became gone or counts again: placement must be worked out anew. */
  onMembersChanged: () => void
  logger: Logger
}

/** An answered ping is a sign of life; a busy node may take long to answer. */
const PING_TIMEOUT_MS = 10_000
/** A peer is pinged when nothing was heard of it for this many intervals. */
const PING_AFTER_INTERVALS = 2
/** How often membership is looked at, at most: gone is seen at most this late. */
const MAX_TICK_MS = 5_000
/**
 * A known member this node has no connection to is dialled at most this often. Presence goes
 * only to connected members (presence-link.ts), so every member keeps a connection to every
 * other, as the byte path needs anyway (nodes fetch from each other's HTTP URLs).
 */
const REDIAL_MS = 30_000
/** How long one dial may take. */
const DIAL_TIMEOUT_MS = 5_000

/**
 * Who is in the fleet (D12): node identities from the catalogue, presence from each member
 * (presence-link.ts), and liveness from every sign of life (presence, connections, pings). It
 * keeps a connection to every known member, keeps this node's identity
 * record current (written only when it changes), and forgets nodes gone for `forgetAfterMs`.
 */
export class Membership {
  private readonly options: MembershipOptions
  private readonly presence: PresenceChannel
  private readonly liveness: Liveness
  private readonly pinging = new Set<string>()
  /** When each member this node was not connected to was last dialled (monotonic ms). */
  private readonly dialledAt = new Map<string, number>()
  private tickTimer: NodeJS.Timeout | undefined
  private ticking = false
  private identityWrite: Promise<void> | undefined
  private identityAgain = false
  private stopListening: (() => void) | undefined
  private readonly stopped = new AbortController()

  constructor (options: MembershipOptions) {
    this.options = options
    this.liveness = new Liveness({ intervalMs: options.intervalMs, goneAfterMs: options.goneAfterMs })
    this.presence = new PresenceChannel({
      transport: options.transport,
      self: options.self,
      intervalMs: options.intervalMs,
      current: options.presence,
      onHeard: peer => { this.liveness.heard(peer) },
      logger: options.logger
    })
  }

  async start (): Promise<void> {
    // In the background: an OrbitDB write waits behind the database's syncs, which on a node
    // joining a large fleet can take long, and serving (/v2 ready) must not wait for it.
    this.keepIdentitySoon()
    for (const record of await this.options.identities.allNodes()) if (record.id !== this.options.self) this.liveness.known(record.id)
    // A connection is a sign of life (and the presence channel greets every member that connects).
    this.stopListening = this.options.link.onPeerConnect(peer => {
      if (this.isMember(peer)) this.liveness.heard(peer)
    })
    await this.presence.start()
    const tickMs = Math.min(this.options.intervalMs, MAX_TICK_MS)
    this.tickTimer = setInterval(() => { void this.tick() }, tickMs).unref()
  }

  stop (): void {
    this.stopped.abort()
    clearInterval(this.tickTimer)
    this.stopListening?.()
    this.presence.stop()
  }

  /** What this node holds changed: tell the fleet shortly. */
  heldChanged (): void {
    this.presence.sendSoon()
  }

  /** A node identity changed in the catalogue (written, or deleted by a forget). */
  async identityChanged (id: string, deleted: boolean): Promise<void> {
    if (id === this.options.self) {
      // Forgotten while alive, or rewritten by an older copy of this node: put it right.
      this.keepIdentitySoon()
      return
    }
    if (!deleted) {
      this.liveness.known(id)
      // A member heard of through the catalogue only (a newcomer's first sync) is dialled now.
      const record = await this.options.identities.getNode(id)
      if (record !== undefined) this.reach(record)
    } else if (this.liveness.standing(id) !== 'live') {
      this.liveness.forget(id)
      this.presence.forget(id)
      this.options.onMembersChanged()
    }
  }

  /** Every node the fleet knows of, this one included, by name. */
  async nodes (): Promise<FleetNode[]> {
    // This node's holdings as they are now, and its heartbeat as the fleet last heard it.
    const current = await this.options.presence()
    return await this.listing({ ...current, at: this.presence.lastSentAt ?? current.at })
  }

  /**
   * Every node as `nodes()` lists it, but this node without its presence (no disk, holdings or
   * progress): what placement, liveness and provider lookups need. Building this node's presence
   * counts its blobs and images, too much for every tick and every fetched blob.
   */
  async members (): Promise<FleetNode[]> {
    return await this.listing(undefined)
  }

  private async listing (own: Presence | undefined): Promise<FleetNode[]> {
    const self = this.options.self
    const identities = new Map((await this.options.identities.allNodes()).map(record => [record.id, record]))
    const ids = new Set([...identities.keys(), ...this.presence.all().keys(), self])
    const nodes: FleetNode[] = []
    for (const id of ids) {
      const presence = id === self ? own : this.presence.get(id)?.presence
      const identity = id === self ? this.options.identity() : identities.get(id)
      if (identity === undefined && presence === undefined) continue
      const standing = id === self ? 'live' : this.liveness.standing(id) ?? 'live'
      nodes.push({
        id,
        name: identity?.name ?? presence?.name ?? id,
        url: identity?.url ?? presence?.url ?? '',
        addresses: identity?.addresses ?? [],
        // Sorted as the catalogue stores them (dag-cbor), so this node reads like every other.
        labels: Object.fromEntries(Object.entries(identity?.labels ?? presence?.labels ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))),
        images: presence?.images ?? [],
        ...(presence === undefined ? {} : { disk: presence.disk, replication: presence.replication, heartbeatAt: presence.at }),
        ...(presence?.writer === undefined ? {} : { writer: presence.writer }),
        standing,
        silent: standing !== 'live',
        gone: standing === 'gone',
        self: id === self
      })
    }
    return nodes.sort((a, b) => a.name.localeCompare(b.name))
  }

  /**
   * Forgets a node that left for good, fleet-wide, at once (`shoal nodes forget`): its identity
   * is deleted from the catalogue and what was heard of it dropped. A node that still shows life
   * is refused: it would only write itself back.
   */
  async forget (id: string): Promise<void> {
    if (id === this.options.self) throw new ForgetSelfError(`${id} is this node: forget it from another node once it has stopped`)
    const known = this.isMember(id) || (await this.options.identities.getNode(id)) !== undefined
    if (!known) throw new NodeNotFoundError(`no node ${JSON.stringify(id)} in the fleet`)
    if (this.liveness.standing(id) === 'live') throw new NodeStillLiveError(`node ${id} is live (a sign of life ${Math.round((this.liveness.sinceLastSign(id) ?? 0) / 1000)} s ago): stop it first, or wait until it is silent`)
    await this.options.identities.deleteNode(id)
    this.liveness.forget(id)
    this.presence.forget(id)
    this.options.onMembersChanged()
  }

  /** A member this node knows of (an identity, or presence heard), other than itself. */
  isMember (peer: string): boolean {
    return this.liveness.standing(peer) !== undefined || this.presence.get(peer) !== undefined
  }

  /** Writes this node's identity if the catalogue lacks it or has it otherwise (one write at a time). */
  private keepIdentitySoon (): void {
    if (this.identityWrite !== undefined) {
      this.identityAgain = true
      return
    }
    this.identityWrite = this.keepIdentity().catch((err: unknown) => {
      if (!this.stopped.signal.aborted) this.options.logger.warn({ err }, 'could not write this node\'s identity into the catalogue')
    }).finally(() => {
      this.identityWrite = undefined
      if (this.identityAgain && !this.stopped.signal.aborted) {
        this.identityAgain = false
        this.keepIdentitySoon()
      }
    })
  }

  private async keepIdentity (): Promise<void> {
    const identity = this.options.identity()
    const recorded = await this.options.identities.getNode(identity.id)
    if (!sameIdentity(recorded, identity)) await this.options.identities.putNode(identity)
  }

  private async tick (): Promise<void> {
    // A catalogue write can wait long (OrbitDB writes queue behind its syncs): ticks never pile up.
    if (this.ticking) return
    this.ticking = true
    try {
      const nodes = await this.members()
      for (const node of nodes) {
        if (node.self) continue
        this.probe(node.id)
        this.reach(node)
        // Every connected member gets presence, whether or not libp2p told of it: at 30 nodes
        // forming at once, one node never heard another's presence for the whole run (its
        // identify lost, so no topology event), and found no holder for that node's images.
        if (this.options.link.isConnected(node.id)) this.options.transport.adopt(node.id)
      }
      const { departed, returned } = this.liveness.update()
      for (const peer of departed) this.options.logger.warn({ peer, goneAfterSeconds: this.options.goneAfterMs / 1000 }, 'node gone: no sign of life for the grace, its share is placed elsewhere')
      for (const peer of returned) this.options.logger.warn({ peer }, 'node back: it counts for placement again')
      if (departed.length > 0 || returned.length > 0) this.options.onMembersChanged()
      await this.forgetDeparted(nodes)
    } catch (err) {
      this.options.logger.debug({ err }, 'membership tick failed')
    } finally {
      this.ticking = false
    }
  }

  /** Pings a connected peer that said nothing for a while: a busy node still answers a ping. */
  private probe (peer: string): void {
    const quietFor = this.liveness.sinceLastSign(peer)
    if (quietFor === undefined || quietFor < PING_AFTER_INTERVALS * this.options.intervalMs) return
    if (this.pinging.has(peer) || !this.options.link.isConnected(peer)) return
    this.pinging.add(peer)
    const signal = AbortSignal.any([this.stopped.signal, AbortSignal.timeout(PING_TIMEOUT_MS)])
    this.options.link.ping(peer, signal).then(() => { this.liveness.heard(peer) }, () => {}).finally(() => { this.pinging.delete(peer) })
  }

  /** Dials a known member this node is not connected to (at most every REDIAL_MS). */
  private reach (node: Pick<FleetNode, 'id' | 'addresses'>): void {
    if (node.addresses.length === 0 || this.options.link.isConnected(node.id)) return
    const now = performance.now()
    if (now - (this.dialledAt.get(node.id) ?? -Infinity) < REDIAL_MS) return
    this.dialledAt.set(node.id, now)
    const signal = AbortSignal.any([this.stopped.signal, AbortSignal.timeout(DIAL_TIMEOUT_MS)])
    this.options.link.connect(node.addresses, signal).catch((err: unknown) => {
      this.options.logger.debug({ err, peer: node.id }, 'could not reach a member')
    })
  }

  /** Nodes gone for `forgetAfterMs` are forgotten; one member (the lowest id) writes it. */
  private async forgetDeparted (nodes: FleetNode[]): Promise<void> {
    const writer = nodes.filter(node => !node.gone).map(node => node.id).sort()[0]
    if (writer !== this.options.self) return
    for (const node of nodes) {
      const goneFor = this.liveness.goneFor(node.id)
      if (goneFor === undefined || goneFor < this.options.forgetAfterMs) continue
      this.options.logger.info({ peer: node.id, name: node.name }, 'forgetting a node gone for the forget time')
      this.liveness.forget(node.id)
      this.presence.forget(node.id)
      this.dialledAt.delete(node.id)
      if (node.addresses.length > 0 || await this.options.identities.getNode(node.id) !== undefined) await this.options.identities.deleteNode(node.id)
    }
  }
}

function sameIdentity (a: NodeRecord | undefined, b: NodeRecord): boolean {
  if (a === undefined) return false
  return a.name === b.name && a.url === b.url && JSON.stringify(a.addresses) === JSON.stringify(b.addresses) &&
    sameFields(a.labels, b.labels) && sameFields(a.tokenKey ?? {}, b.tokenKey ?? {})
}

/**
 * Whether two flat records hold the same fields, in whatever order: the catalogue stores maps
 * in dag-cbor's key order, not the order they were written in (a token key compared as JSON text
 * never matched, and every node with users rewrote its identity in a loop).
 */
function sameFields (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  return JSON.stringify(Object.entries(a).sort()) === JSON.stringify(Object.entries(b).sort())
}
