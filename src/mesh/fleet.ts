import type { KeyObject } from 'node:crypto'
import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import { multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { Blockstore } from 'interface-blockstore'
import type { Signed, Statement } from '../access/certificates.ts'
import type { Catalogue, CatalogueDatabase, CatalogueTransport, TagRecord, TokenKey, TrustStatus } from '../catalogue/catalogue.ts'
import { parseTagKey } from '../catalogue/tag-key.ts'
import type { PinSet } from '../content/gc.ts'
import type { Strategy } from '../replication/strategy.ts'
import type { Config } from '../config.ts'
import type { SharedTag, SharedTags, TagChange } from '../registry/shared-tags.ts'
import type { Provider } from './block-fetcher.ts'
import { Mesh, type PeerStatus } from './mesh.ts'
import { Membership, type FleetNode } from './membership.ts'
import { meshNameRouting } from './name-routing.ts'
import type { NameRouting } from '../names/name-routing.ts'
import type { PlacementState, Presence } from './presence.ts'
import type { PresenceLink } from './presence-link.ts'
import { PULL_EXPIRY_MS, PullNotices, type NoticeTransport } from './pull-notices.ts'
import { rankProviders, ranksAbove, relayTrees, type RelayTrees } from './relay-tree.ts'

export type { FleetNode }

/** Relay trees are built again at least this often, whatever the notices say. */
const TREES_KEPT_MS = 1_000
/** DAGs whose relay trees are kept at once (pulls at the same time); past this all go. */
const MAX_KEPT_TREES = 64

/** What the fleet needs to know of this node that only the node itself can tell. */
export interface LocalNodeFacts {
  url(): string
  usedBytes(): Promise<number>
  heldImages(): Promise<string[]>
  /** This node's progress per replication strategy placed on it. */
  replication?(): Record<string, PlacementState>
  /** The public key this node signs registry tokens with, when it issues them. */
  tokenKey?(): TokenKey | undefined
}

/**
 * This node as a fleet member: the libp2p mesh, the replicated catalogue of durable facts, and
 * membership (identities, presence, liveness: D12).
 */
export class Fleet {
  readonly mesh: Mesh
  private readonly config: Config
  private readonly dataDir: string
  private readonly facts: LocalNodeFacts
  private readonly logger: Logger
  private catalogueInstance: Catalogue | undefined
  private membershipInstance: Membership | undefined
  private pullNotices: PullNotices | undefined
  /** Relay trees by DAG root: see relayTreesOf. */
  private readonly keptTrees = new Map<string, { version: number | undefined, validUntil: number, trees: RelayTrees }>()
  private presenceLink: PresenceLink | undefined
  /** Collects unpinned blocks (the catalogue unpins a dropped generation's entries). */
  private readonly collectGarbage: (() => Promise<unknown>) | undefined
  private stopWatchingIdentities: (() => void) | undefined
  /** Listeners to changes of the catalogue and of membership. */
  private readonly listeners = new Set<() => void>()
  private readonly tagListeners = new Set<(change: TagChange) => void>()

  private readonly operatorKey: KeyObject | undefined

  constructor (options: { config: Config, operatorKey?: KeyObject, dataDir: string, blockstore: Blockstore, facts: LocalNodeFacts, logger: Logger, collectGarbage?: () => Promise<unknown> }) {
    this.config = options.config
    this.operatorKey = options.operatorKey
    this.collectGarbage = options.collectGarbage
    this.dataDir = options.dataDir
    this.facts = options.facts
    this.logger = options.logger
    this.mesh = new Mesh({
      dataDir: join(options.dataDir, 'mesh'),
      listen: options.config.p2pListen,
      peers: options.config.peers,
      mdns: options.config.mdns,
      swarmKeyFile: options.config.swarmKeyFile,
      blockstore: options.blockstore,
      logger: options.logger.child({ part: 'mesh' })
    })
  }

  get catalogue (): Catalogue {
    if (this.catalogueInstance === undefined) throw new Error('the fleet is not started')
    return this.catalogueInstance
  }

  private get membership (): Membership {
    if (this.membershipInstance === undefined) throw new Error('the fleet is not started')
    return this.membershipInstance
  }

  async start (): Promise<void> {
    await this.mesh.start()
    const libp2p = this.mesh.helia.libp2p
    // Before the catalogue opens: peers learn that this node speaks presence as they identify it.
    const { PresenceLink } = await import('./presence-link.ts')
    const presenceLink = this.presenceLink = new PresenceLink(libp2p, this.logger.child({ part: 'presence' }))
    await presenceLink.start()
    const onPeerConnect = (listener: (peer: string) => void): () => void => {
      const onConnect = (event: CustomEvent<{ toString(): string }>): void => { listener(event.detail.toString()) }
      libp2p.addEventListener('peer:connect', onConnect)
      return () => { libp2p.removeEventListener('peer:connect', onConnect) }
    }
    const transport = {
      self: this.mesh.peerId,
      publish: (topic: string, bytes: Uint8Array) => libp2p.services.pubsub.publish(topic, bytes),
      onPeerSubscribe: (listener: (topic: string, peer: string) => void) => {
        const onChange = (event: CustomEvent<{ peerId: { toString(): string }, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
          for (const { topic, subscribe } of event.detail.subscriptions) if (subscribe) listener(topic, event.detail.peerId.toString())
        }
        libp2p.services.pubsub.addEventListener('subscription-change', onChange)
        return () => libp2p.services.pubsub.removeEventListener('subscription-change', onChange)
      },
      subscribe: gossipTransport(libp2p.services.pubsub).subscribe
    }
    // OrbitDB loads only when a fleet starts, like libp2p (mesh.ts).
    const { Catalogue } = await import('../catalogue/catalogue.ts')
    this.catalogueInstance = new Catalogue(this.mesh.helia, transport, join(this.dataDir, 'orbitdb'), this.logger.child({ part: 'catalogue' }), {
      compactEntries: this.config.catalogueCompactEntries,
      graceMs: this.config.catalogueGraceSeconds * 1000,
      collectGarbage: this.collectGarbage,
      operatorKey: this.operatorKey
    })
    await this.catalogueInstance.start()
    this.pullNotices = new PullNotices(gossipTransport(libp2p.services.pubsub), { peer: this.mesh.peerId, url: () => this.facts.url() }, this.logger.child({ part: 'pulls' }))
    this.pullNotices.start()
    const catalogue = this.catalogueInstance
    this.membershipInstance = new Membership({
      self: this.mesh.peerId,
      intervalMs: this.config.heartbeatSeconds * 1000,
      goneAfterMs: this.config.goneAfterSeconds * 1000,
      forgetAfterMs: this.config.forgetAfterHours * 3_600_000,
      identity: () => {
        const tokenKey = this.facts.tokenKey?.()
        return { id: this.mesh.peerId, name: this.config.name ?? this.mesh.peerId, url: this.facts.url(), addresses: this.mesh.addresses, labels: this.config.labels, ...(tokenKey === undefined ? {} : { tokenKey }) }
      },
      presence: async () => await this.presence(),
      identities: catalogue,
      transport: presenceLink,
      link: {
        onPeerConnect,
        isConnected: peer => libp2p.getConnections().some(connection => connection.remotePeer.toString() === peer && connection.status === 'open'),
        connect: async (addresses, signal) => { await libp2p.dial(addresses.map(address => multiaddr(address)), { signal }) },
        ping: async (peer, signal) => {
          const connection = libp2p.getConnections().find(c => c.remotePeer.toString() === peer && c.status === 'open')
          if (connection === undefined) throw new Error('not connected')
          return await libp2p.services.ping.ping(connection.remotePeer, { signal })
        }
      },
      onMembersChanged: () => { this.changed() },
      logger: this.logger.child({ part: 'membership' })
    })
    this.stopWatchingIdentities = catalogue.onChange(change => {
      if (change.kind === 'node') void this.membership.identityChanged(change.key, change.deleted).catch((err: unknown) => { this.logger.warn({ err }, 'could not follow a node identity change') })
      if (change.kind === 'tag') {
        const tag = { ...parseTagKey(change.key), deleted: change.deleted }
        for (const listener of this.tagListeners) listener(tag)
      }
      this.changed()
    })
    await this.membership.start()
  }

  async stop (): Promise<void> {
    this.stopWatchingIdentities?.()
    this.membershipInstance?.stop()
    this.pullNotices?.stop()
    await this.catalogueInstance?.stop()
    await this.presenceLink?.stop()
    await this.mesh.stop()
  }

  /** This node's presence as it is now: what changes by the minute (D12). */
  private async presence (): Promise<Presence> {
    const disk = await statfs(this.dataDir)
    return {
      peer: this.mesh.peerId,
      name: this.config.name ?? this.mesh.peerId,
      url: this.facts.url(),
      labels: this.config.labels,
      disk: { usedBytes: await this.facts.usedBytes(), freeBytes: disk.bavail * disk.bsize },
      images: await this.facts.heldImages(),
      replication: this.facts.replication?.() ?? {},
      writer: this.catalogue.writer,
      at: new Date().toISOString()
    }
  }

  private changed (): void {
    for (const listener of this.listeners) listener()
  }

  /**
   * Nodes that hold the image `cid`, with the HTTP URLs to fetch from, this node left out: the
   * members whose presence lists it. (Blobs are found through their images. The DHT's provider
   * records were the first way: announcing each blob and image cost every node of a 12-node
   * fleet 26 ms of CPU per push, 60 % of what a push cost them, bench/tag-cost.ts.)
   */
  async providersOf (cid: CID): Promise<Provider[]> {
    const self = this.mesh.peerId
    const image = cid.toString()
    return (await this.membership.members())
      .filter(node => node.id !== self && node.url !== '' && node.images.includes(image))
      .map(node => ({ id: node.id, url: node.url }))
  }

  /**
   * Tells the fleet this node is pulling `root` (or has just finished it). Others then fetch
   * blocks of `root` from it as it receives them: see rankedProviders.
   */
  async announcePull (root: CID, done: boolean): Promise<void> {
    this.pullNotices?.announce(root.toString(), done)
  }

  /** Whom to ask for `block` of the DAG `root` now: see relay-tree.ts. */
  rankedProviders (root: CID, seeders: Provider[], block: CID): Provider[] {
    return rankProviders(this.mesh.peerId, this.relayTreesOf(root.toString()), seeders, block.multihash.digest)
  }

  /**
   * The relay trees of `root` as the pull notices stand, kept until a notice changes them or a
   * puller in them may have expired: built for every block asked (and again by every fetch that
   * waited for a slot), they were a fifth of a fetching node's allocations.
   */
  private relayTreesOf (root: string): RelayTrees {
    const notices = this.pullNotices
    const now = Date.now()
    const kept = this.keptTrees.get(root)
    if (kept !== undefined && kept.version === notices?.version && now < kept.validUntil) return kept.trees
    const heard = notices?.pullersOf(root, now) ?? []
    const trees = relayTrees(root, heard.map(([id, pull]) => ({ id, url: pull.url, done: pull.done })))
    const validUntil = Math.min(now + TREES_KEPT_MS, ...heard.map(([, pull]) => pull.at + PULL_EXPIRY_MS))
    if (this.keptTrees.size >= MAX_KEPT_TREES) this.keptTrees.clear()
    this.keptTrees.set(root, { version: notices?.version, validUntil, trees })
    return trees
  }

  /** Whether `peer` ranks above this node in the relay tree of `block` (and may wait on it). */
  ranksAbove (peer: string, root: CID, block: CID): boolean {
    return ranksAbove(this.mesh.peerId, peer, root.toString(), block.multihash.digest)
  }

  /** Tells the fleet shortly (coalescing bursts) that what this node holds changed, e.g. after a push. */
  heldChanged (): void {
    this.membershipInstance?.heldChanged()
  }

  /**
   * Stops re-announcing `cid` in the DHT: records an earlier version announced expire (nothing
   * announces now; fetchers pass over a node that lacks what they ask).
   */
  async stopProviding (cid: CID): Promise<void> {
    await this.mesh.stopProviding(cid)
  }

  peers (signal?: AbortSignal): Promise<PeerStatus[]> {
    return this.mesh.peers(signal)
  }

  /** Every node the fleet knows of, with its presence and standing (live, silent, gone). */
  async nodes (): Promise<FleetNode[]> {
    return await this.membership.nodes()
  }

  /** Every node as `nodes()` lists it, without this node's own presence (placement needs no more). */
  async members (): Promise<FleetNode[]> {
    return await this.membership.members()
  }

  /** Forgets a departed node fleet-wide at once (`shoal nodes forget`). */
  async forget (id: string): Promise<void> {
    await this.membership.forget(id)
  }

  /** This node's peer id in the mesh (once started). */
  get peerId (): string {
    return this.mesh.peerId
  }

  /** The libp2p addresses other nodes can dial, each ending in /p2p/<peer id>. */
  get addresses (): string[] {
    return this.mesh.addresses
  }

  /**
   * What helia pins (OrbitDB pins every catalogue block it puts in the shared blockstore), for
   * garbage collection; readable while the fleet runs.
   */
  pins (): PinSet {
    return this.mesh.helia.pins
  }

  /** The fleet's replication strategies. */
  async strategies (): Promise<Strategy[]> {
    return await this.catalogue.allStrategies()
  }

  /** The fleet's tags, with who pushed them and when. */
  async allTags (): Promise<TagRecord[]> {
    return await this.catalogue.allTags()
  }

  /** Where strategies are kept and read: the catalogue's strategies database. */
  strategyStore (): Pick<Catalogue, 'putStrategy' | 'deleteStrategy' | 'getStrategy' | 'allStrategies'> {
    const catalogue = this.catalogue
    return {
      putStrategy: async strategy => { await catalogue.putStrategy(strategy) },
      deleteStrategy: async id => { await catalogue.deleteStrategy(id) },
      getStrategy: async id => await catalogue.getStrategy(id),
      allStrategies: async () => await catalogue.allStrategies()
    }
  }

  /** This node's standing with the fleet's operator key, and the operator's statements. */
  trustStatus (): TrustStatus {
    return this.catalogue.trustStatus()
  }

  /** Hands an operator's certificate or revocation to the fleet (`shoal fleet admit`, `revoke`). */
  async addStatement (value: unknown): Promise<Signed<Statement>> {
    return await this.catalogue.addStatement(value)
  }

  /** The catalogue's databases as they are (for the API's data store view). */
  async databases (): Promise<CatalogueDatabase[]> {
    return await this.catalogue.databases()
  }

  /**
   * Calls `listener` on every change to the catalogue and whenever a node becomes gone or counts
   * again; returns the function that stops it.
   */
  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** The registry-token key of the member whose key has this id (RFC 7638 thumbprint), if any member has it. */
  async memberTokenKey (keyId: string, thumbprintOf: (key: TokenKey) => string): Promise<TokenKey | undefined> {
    if (this.catalogueInstance === undefined) return undefined
    return (await this.catalogueInstance.allNodes()).map(record => record.tokenKey).find(key => key !== undefined && thumbprintOf(key) === keyId)
  }

  /** Whether `peer` is a member of the fleet as this node knows it now (an identity or presence heard). */
  isMember (peer: string): boolean {
    return this.membershipInstance?.isMember(peer) ?? false
  }

  /** Calls `listener` on every change to a tag in the catalogue (written here or by a peer), once it is indexed. */
  onTagChange (listener: (change: TagChange) => void): () => void {
    this.tagListeners.add(listener)
    return () => this.tagListeners.delete(listener)
  }

  /**
   * How IPNS records travel between members (the DHT and a gossip topic). Built with the node,
   * before the fleet starts: each call reaches the mesh when it is made.
   */
  nameRouting (): NameRouting {
    return meshNameRouting(() => this.mesh.helia.libp2p, this.logger.child({ part: 'names' }))
  }

  /**
   * The catalogue's tags, as the registry wants them. Built with the node, before the fleet
   * starts: each call reaches the catalogue when it is made.
   */
  sharedTags (): SharedTags {
    return {
      get: async (repository, tag) => await this.catalogue.getTag(repository, tag),
      put: async (tag: SharedTag) => { await this.catalogue.putTag({ ...tag, node: this.peerId, pushedAt: new Date().toISOString() }) },
      delete: async (repository, tag) => { await this.catalogue.deleteTag(repository, tag) },
      all: async () => await this.catalogue.allTags()
    }
  }
}

/** A gossipsub message as Shoal reads it (`from` on signed messages: the mesh signs them all). */
interface GossipMessage { topic: string, data: Uint8Array, from?: { toString(): string } }

/** Gossipsub as the pull notices and the catalogue use it: one topic and its messages' bytes. */
function gossipTransport (pubsub: {
  publish(topic: string, bytes: Uint8Array): Promise<unknown>
  subscribe(topic: string): void
  unsubscribe(topic: string): void
  addEventListener(type: 'message', listener: (event: CustomEvent<GossipMessage>) => void): void
  removeEventListener(type: 'message', listener: (event: CustomEvent<GossipMessage>) => void): void
}): NoticeTransport & Pick<CatalogueTransport, 'subscribe'> {
  return {
    publish: async (topic, bytes) => await pubsub.publish(topic, bytes),
    subscribe: (topic, onMessage) => {
      const listener = (event: CustomEvent<GossipMessage>): void => {
        if (event.detail.topic === topic) onMessage(event.detail.data, event.detail.from?.toString())
      }
      pubsub.subscribe(topic)
      pubsub.addEventListener('message', listener)
      return () => {
        pubsub.removeEventListener('message', listener)
        try { pubsub.unsubscribe(topic) } catch { /* the mesh stopped first */ }
      }
    }
  }
}
