import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { lpStream, type LengthPrefixedStream } from '@libp2p/utils'
import type { Logger } from 'pino'
import type { PresenceTransport } from './presence.ts'

/** Shoal's presence protocol: length-prefixed presence messages, one long-lived stream per peer. */
export const PRESENCE_PROTOCOL = '/shoal/presence/1.0.0'
/** A presence lists held image CIDs; a megabyte is tens of thousands of them. */
const MAX_MESSAGE_BYTES = 1024 * 1024
/** Opening a stream or writing one message: a peer this slow gets the next message instead. */
const SEND_TIMEOUT_MS = 10_000

/** One peer's outgoing side: its stream once open, and the newest message not yet written. */
interface Outgoing {
  peer: PeerId
  stream?: LengthPrefixedStream<Stream>
  /** The message to send next, and the deadline it shares with its broadcast's other copies. */
  pending?: { bytes: Uint8Array, signal: AbortSignal }
  writing: boolean
}

type Link = Pick<Libp2p, 'handle' | 'unhandle' | 'register' | 'unregister' | 'getConnections' | 'dialProtocol' | 'peerStore'>

/**
 * Presence over a libp2p protocol of Shoal's own (D12): every message goes straight to each
 * connected member on a stream kept open, once. On gossipsub each message reached every node
 * from several mesh peers, was forwarded again, gossiped about every second and signature-checked:
 * at 12 nodes that was nearly all of an idle node's 1.4 % of a core, and it grew with the fleet.
 * The sender is the peer the connection authenticated (noise), so a message needs no signature.
 * Members that speak the protocol are found through a libp2p topology (after identify).
 */
export class PresenceLink implements PresenceTransport {
  private readonly libp2p: Link
  private readonly logger: Logger
  private readonly members = new Map<string, Outgoing>()
  private readonly messageListeners = new Set<(bytes: Uint8Array, from: string) => void>()
  /**
   * The last message of each peer heard before anyone listened: the link starts with the mesh,
   * the presence channel only after the catalogue, and members send their presence once, as
   * soon as they see this node. Dropped, a newcomer knew nobody's images until their next
   * interval (10 s), and found no holder for what it was asked.
   */
  private readonly unheard = new Map<string, Uint8Array>()
  private readonly connectListeners = new Set<(peer: string) => void>()
  private topologyId: string | undefined
  private readonly stopped = new AbortController()

  constructor (libp2p: Link, logger: Logger) {
    this.libp2p = libp2p
    this.logger = logger
  }

  async start (): Promise<void> {
    await this.libp2p.handle(PRESENCE_PROTOCOL, (stream, connection) => { void this.read(stream, connection) }, { maxInboundStreams: 2, maxOutboundStreams: 2 })
    this.topologyId = await this.libp2p.register(PRESENCE_PROTOCOL, {
      onConnect: peer => { this.memberConnected(peer) },
      onDisconnect: peer => { this.memberDisconnected(peer) }
    })
    // The topology tells of connections identified from now on; those made before are looked up.
    for (const connection of this.libp2p.getConnections()) {
      const peer = connection.remotePeer
      void this.libp2p.peerStore.get(peer).then(known => {
        if (known.protocols.includes(PRESENCE_PROTOCOL)) this.memberConnected(peer)
      }, () => {})
    }
  }

  async stop (): Promise<void> {
    this.stopped.abort()
    if (this.topologyId !== undefined) this.libp2p.unregister(this.topologyId)
    await this.libp2p.unhandle(PRESENCE_PROTOCOL)
    for (const outgoing of this.members.values()) outgoing.stream?.unwrap().abort(new Error('presence stopped'))
    this.members.clear()
  }

  broadcast (bytes: Uint8Array): void {
    // One deadline for every copy: a timer and a signal per member and message were a visible
    // share of an idle node's CPU at 30 nodes.
    const signal = AbortSignal.any([this.stopped.signal, AbortSignal.timeout(SEND_TIMEOUT_MS)])
    for (const id of this.members.keys()) this.send(id, bytes, signal)
  }

  send (peer: string, bytes: Uint8Array, signal = AbortSignal.any([this.stopped.signal, AbortSignal.timeout(SEND_TIMEOUT_MS)])): void {
    const outgoing = this.members.get(peer)
    if (outgoing === undefined || this.stopped.signal.aborted) return
    // The newest presence replaces one still waiting: a slow peer never makes a queue.
    outgoing.pending = { bytes, signal }
    if (!outgoing.writing) void this.flush(peer, outgoing)
  }

  onMessage (listener: (bytes: Uint8Array, from: string) => void): () => void {
    this.messageListeners.add(listener)
    for (const [from, message] of this.unheard) listener(message, from)
    this.unheard.clear()
    return () => { this.messageListeners.delete(listener) }
  }

  onMemberConnect (listener: (peer: string) => void): () => void {
    this.connectListeners.add(listener)
    return () => { this.connectListeners.delete(listener) }
  }

  adopt (peer: string): void {
    if (this.members.has(peer) || this.stopped.signal.aborted) return
    const connection = this.libp2p.getConnections().find(candidate => candidate.remotePeer.toString() === peer)
    if (connection === undefined) return
    this.logger.debug({ peer }, 'presence: a connected member libp2p did not report, adopted')
    this.memberConnected(connection.remotePeer)
  }

  /** Peers connected now that speak the presence protocol. */
  connectedMembers (): string[] {
    return [...this.members.keys()]
  }

  private memberConnected (peer: PeerId): void {
    if (this.stopped.signal.aborted) return
    const id = peer.toString()
    if (!this.members.has(id)) this.members.set(id, { peer, writing: false })
    for (const listener of this.connectListeners) listener(id)
  }

  private memberDisconnected (peer: PeerId): void {
    const id = peer.toString()
    this.members.get(id)?.stream?.unwrap().abort(new Error('disconnected'))
    this.members.delete(id)
  }

  private async flush (id: string, outgoing: Outgoing): Promise<void> {
    outgoing.writing = true
    try {
      while (outgoing.pending !== undefined && !this.stopped.signal.aborted) {
        const { bytes, signal } = outgoing.pending
        outgoing.pending = undefined
        try {
          outgoing.stream ??= lpStream(await this.libp2p.dialProtocol(outgoing.peer, PRESENCE_PROTOCOL, { signal }), { maxDataLength: MAX_MESSAGE_BYTES })
          await outgoing.stream.write(bytes, { signal })
        } catch (err) {
          // The next message opens a new stream; this one is given up.
          this.logger.debug({ err, peer: id }, 'could not send presence to a peer')
          outgoing.stream?.unwrap().abort(err instanceof Error ? err : new Error(String(err)))
          outgoing.stream = undefined
        }
      }
    } finally {
      outgoing.writing = false
    }
  }

  /** Reads a peer's presence messages until its stream ends. */
  private async read (stream: Stream, connection: Connection): Promise<void> {
    const from = connection.remotePeer.toString()
    const messages = lpStream(stream, { maxDataLength: MAX_MESSAGE_BYTES })
    try {
      while (!this.stopped.signal.aborted) {
        const message = (await messages.read({ signal: this.stopped.signal })).subarray()
        if (this.messageListeners.size === 0) this.unheard.set(from, message)
        for (const listener of this.messageListeners) listener(message, from)
      }
    } catch (err) {
      this.logger.debug({ err, peer: from }, 'a presence stream ended')
      stream.abort(err instanceof Error ? err : new Error(String(err)))
    }
  }
}
