import { join } from 'node:path'
import type { LevelDatastore } from 'datastore-level'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { Blockstore } from 'interface-blockstore'
import type { MeshNode } from './libp2p-node.ts'
import { readSwarmKey } from './swarm-key.ts'
import { signRequest } from './peer-signature.ts'
import type { PrivateKey } from '@libp2p/interface'

export interface MeshOptions {
  dataDir: string
  listen: string[]
  peers: string[]
  mdns: boolean
  swarmKeyFile?: string
  blockstore: Blockstore
  logger: Logger
}

export interface PeerStatus {
  id: string
  addresses: string[]
  /** Round trip of a libp2p ping, when it answered. */
  latencyMs?: number
}

// Peers from the configuration are dialled again when their connection drops.
const REDIAL_INTERVAL_MS = 5_000

/** This node's place in the libp2p mesh: identity, connections, the private DHT. */
export class Mesh {
  private readonly options: MeshOptions
  private node: MeshNode | undefined
  private ownAddresses: string[] | undefined
  private privateKey: PrivateKey | undefined
  private datastore: LevelDatastore | undefined
  private redialTimer: NodeJS.Timeout | undefined
  /** Peers already reported as unreachable, so the log says so once, not every redial. */
  private readonly reportedUnreachable = new Set<string>()

  constructor (options: MeshOptions) {
    this.options = options
  }

  get helia (): MeshNode {
    if (this.node === undefined) throw new Error('the mesh is not started')
    return this.node
  }

  get peerId (): string {
    return this.helia.libp2p.peerId.toString()
  }

  /** Headers proving a request of this node's to a peer's HTTP face is its own (mesh/peer-signature.ts); `target` is `host:port/path?query`. */
  async signRequest (method: string, target: string): Promise<Record<string, string>> {
    if (this.privateKey === undefined) throw new Error('the mesh is not started')
    return await signRequest(this.privateKey, method, target)
  }

  /**
   * Addresses other nodes can dial, each ending in /p2p/<peer id>. Kept until libp2p says they
   * changed: every membership tick and reconciliation names this node's own, and building them
   * was 3 % of an idle node's CPU at 30 nodes.
   */
  get addresses (): string[] {
    this.ownAddresses ??= this.helia.libp2p.getMultiaddrs().map(address => address.toString())
    return this.ownAddresses
  }

  async start (): Promise<void> {
    const { dataDir, logger } = this.options
    // libp2p, helia and their datastore load only when a mesh starts: node.ts builds a Mesh for
    // every node configured for one, and a single node carries none of it.
    const [{ loadOrCreateIdentity }, { LevelDatastore }, { createMeshNode }] = await Promise.all([
      import('./identity.ts'), import('datastore-level'), import('./libp2p-node.ts')
    ])
    const privateKey = this.privateKey = await loadOrCreateIdentity(join(dataDir, 'identity.key'))
    const swarmKey = this.options.swarmKeyFile === undefined ? undefined : await readSwarmKey(this.options.swarmKeyFile)
    this.datastore = new LevelDatastore(join(dataDir, 'datastore'))
    await this.datastore.open()
    this.node = createMeshNode({
      privateKey, listen: this.options.listen, mdns: this.options.mdns, swarmKey,
      blockstore: this.options.blockstore, datastore: this.datastore
    })
    await this.node.start()
    this.node.libp2p.addEventListener('self:peer:update', () => { this.ownAddresses = undefined })
    logger.info({ peerId: this.peerId, addresses: this.addresses, private: swarmKey !== undefined }, 'mesh started')
    await this.dialConfiguredPeers()
    this.redialTimer = setInterval(() => { void this.dialConfiguredPeers() }, REDIAL_INTERVAL_MS).unref()
  }

  async stop (): Promise<void> {
    clearInterval(this.redialTimer)
    await this.node?.stop()
    await this.datastore?.close()
    this.node = undefined
    this.ownAddresses = undefined
  }

  /** Connects to every configured peer not connected yet; says once, in one line, when one fails. */
  private async dialConfiguredPeers (): Promise<void> {
    const libp2p = this.helia.libp2p
    await Promise.all(this.options.peers.map(async text => {
      let address: Multiaddr
      try {
        address = multiaddr(text)
      } catch {
        if (!this.reportedUnreachable.has(text)) this.options.logger.error({ peer: text }, 'peer address is not a multiaddr')
        this.reportedUnreachable.add(text)
        return
      }
      const peerId = address.getComponents().find(c => c.name === 'p2p')?.value
      if (peerId !== undefined && libp2p.getConnections().some(c => c.remotePeer.toString() === peerId)) return
      try {
        await libp2p.dial(address, { signal: AbortSignal.timeout(10_000) })
        if (this.reportedUnreachable.delete(text)) this.options.logger.warn({ peer: text }, 'peer reachable again')
      } catch (err) {
        if (this.reportedUnreachable.has(text)) return
        this.reportedUnreachable.add(text)
        const hint = this.options.swarmKeyFile === undefined
          ? 'it may be down, or it may require a swarm key this node lacks'
          : 'it may be down, or its swarm key differs from ours'
        this.options.logger.warn({ peer: text, err: (err as Error).message }, `cannot connect to peer: ${hint}`)
      }
    }))
  }

  async peers (signal?: AbortSignal): Promise<PeerStatus[]> {
    const libp2p = this.helia.libp2p
    const byPeer = new Map<string, PeerStatus>()
    for (const connection of libp2p.getConnections()) {
      const id = connection.remotePeer.toString()
      const status = byPeer.get(id) ?? { id, addresses: [] }
      status.addresses.push(connection.remoteAddr.toString())
      byPeer.set(id, status)
    }
    await Promise.all([...byPeer.values()].map(async status => {
      const connection = libp2p.getConnections().find(c => c.remotePeer.toString() === status.id)
      // A ping can fail on a connection still settling; one more try before giving up.
      for (let attempt = 0; attempt < 2 && connection !== undefined && status.latencyMs === undefined; attempt++) {
        try {
          status.latencyMs = await libp2p.services.ping.ping(connection.remotePeer, { signal: signal ?? AbortSignal.timeout(2_000) })
        } catch { /* no answer: latency unknown */ }
      }
    }))
    return [...byPeer.values()].sort((a, b) => a.id.localeCompare(b.id))
  }

  /** Stops re-providing `cid`: what this node dropped it no longer announces. */
  async stopProviding (cid: CID): Promise<void> {
    await this.helia.libp2p.contentRouting.cancelReprovide(cid)
  }
}
