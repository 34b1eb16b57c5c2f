import { statfs } from 'node:fs/promises'
import { join } from 'node:path'
import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { Blockstore } from 'interface-blockstore'
import { Catalogue, type NodeRecord } from '../catalogue/catalogue.ts'
import type { Config } from '../config.ts'
import type { SharedTag, SharedTags } from '../registry/shared-tags.ts'
import type { Provider } from './block-fetcher.ts'
import { Mesh, type PeerStatus } from './mesh.ts'

export const HEARTBEAT_INTERVAL_MS = 10_000
const PROVIDER_LOOKUP_MS = 1_500
const MAX_PROVIDERS = 16
/** A node whose heartbeat is older than this is marked silent. */
export const SILENT_AFTER_MS = 3 * HEARTBEAT_INTERVAL_MS

/** What the fleet needs to know of this node that only the node itself can tell. */
export interface LocalNodeFacts {
  url(): string
  usedBytes(): Promise<number>
  heldImages(): Promise<string[]>
}

export interface FleetNode extends NodeRecord {
  silent: boolean
  self: boolean
}

/**
 * This node as a fleet member: the libp2p mesh, the replicated catalogue and the node's own
 * inventory record, kept fresh by a heartbeat.
 */
export class Fleet {
  readonly mesh: Mesh
  private readonly config: Config
  private readonly dataDir: string
  private readonly facts: LocalNodeFacts
  private readonly logger: Logger
  private catalogueInstance: Catalogue | undefined
  private heartbeatTimer: NodeJS.Timeout | undefined

  constructor (options: { config: Config, dataDir: string, blockstore: Blockstore, facts: LocalNodeFacts, logger: Logger }) {
    this.config = options.config
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

  async start (): Promise<void> {
    await this.mesh.start()
    const libp2p = this.mesh.helia.libp2p
    const transport = {
      publish: (topic: string, bytes: Uint8Array) => libp2p.services.pubsub.publish(topic, bytes),
      onPeerConnect: (listener: () => void) => {
        libp2p.addEventListener('peer:connect', listener)
        return () => libp2p.removeEventListener('peer:connect', listener)
      }
    }
    this.catalogueInstance = new Catalogue(this.mesh.helia, transport, join(this.dataDir, 'orbitdb'), this.logger.child({ part: 'catalogue' }))
    await this.catalogueInstance.start()
    await this.heartbeat()
    this.heartbeatTimer = setInterval(() => { void this.heartbeat() }, HEARTBEAT_INTERVAL_MS).unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.heartbeatTimer)
    await this.catalogueInstance?.stop()
    await this.mesh.stop()
  }

  /** Writes this node's inventory record. */
  async heartbeat (): Promise<void> {
    try {
      const disk = await statfs(this.dataDir)
      await this.catalogue.putNode({
        id: this.mesh.peerId,
        name: this.config.name ?? this.mesh.peerId,
        url: this.facts.url(),
        addresses: this.mesh.addresses,
        labels: this.config.labels,
        disk: { usedBytes: await this.facts.usedBytes(), freeBytes: disk.bavail * disk.bsize },
        images: await this.facts.heldImages(),
        heartbeatAt: new Date().toISOString()
      })
    } catch (err) {
      this.logger.warn({ err }, 'heartbeat failed')
    }
  }

  /**
   * Nodes that hold `cid`, with the HTTP URLs to fetch from: the DHT's provider records and the
   * inventory's image lists, this node left out. The DHT gets a short while: on a LAN it answers
   * in milliseconds, and the inventory already names the holders of whole images.
   */
  async providersOf (cid: CID, signal?: AbortSignal): Promise<Provider[]> {
    const self = this.mesh.peerId
    const nodes = await this.catalogue.allNodes()
    const urlOf = new Map(nodes.map(node => [node.id, node.url]))
    const ids = new Set(nodes.filter(node => node.images.includes(cid.toString())).map(node => node.id))
    const lookup = AbortSignal.any([AbortSignal.timeout(PROVIDER_LOOKUP_MS), ...(signal === undefined ? [] : [signal])])
    try {
      for await (const provider of this.mesh.findProviders(cid, lookup)) {
        ids.add(provider.id)
        if (ids.size >= MAX_PROVIDERS) break
      }
    } catch { /* the lookup ran out of time: use what it found */ }
    ids.delete(self)
    return [...ids].flatMap(id => {
      const url = urlOf.get(id)
      return url === undefined ? [] : [{ id, url }]
    })
  }

  /** Announces in the DHT that this node holds `cid`. */
  async provide (cid: CID): Promise<void> {
    await this.mesh.provide(cid)
  }

  peers (signal?: AbortSignal): Promise<PeerStatus[]> {
    return this.mesh.peers(signal)
  }

  async nodes (now = Date.now()): Promise<FleetNode[]> {
    return (await this.catalogue.allNodes()).map(node => ({
      ...node,
      silent: now - Date.parse(node.heartbeatAt) > SILENT_AFTER_MS,
      self: node.id === this.mesh.peerId
    })).sort((a, b) => a.name.localeCompare(b.name))
  }

  /** The catalogue's tags, as the registry wants them. */
  sharedTags (): SharedTags {
    const catalogue = this.catalogue
    const peerId = this.mesh.peerId
    return {
      get: async (repository, tag) => await catalogue.getTag(repository, tag),
      put: async (tag: SharedTag) => { await catalogue.putTag({ ...tag, node: peerId, pushedAt: new Date().toISOString() }) },
      delete: async (repository, tag) => { await catalogue.deleteTag(repository, tag) },
      all: async () => await catalogue.allTags()
    }
  }
}
