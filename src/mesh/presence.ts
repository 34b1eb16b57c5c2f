import { AjvCompiler } from '@fastify/ajv-compiler'
import type { FromSchema } from 'json-schema-to-ts'
import type { Logger } from 'pino'

/** Changes within this long go out as one message. */
const COALESCE_MS = 200

const placementStateSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['image', 'state', 'updatedAt'],
  properties: {
    /** The strategy's image as written (`repo:tag`, `repo@digest` or an image CID). */
    image: { type: 'string' },
    /** The image CID the reference resolved to when the node last worked on it. */
    imageCid: { type: 'string' },
    state: { type: 'string', enum: ['fetching', 'held', 'failed'] },
    bytesDone: { type: 'integer', minimum: 0 },
    bytesTotal: { type: 'integer', minimum: 0 },
    /** Why it failed, for a person to read. */
    reason: { type: 'string' },
    updatedAt: { type: 'string' }
  }
} as const

/**
 * One node's presence message: who it is (so a node is usable before its identity record
 * arrives), and what changes by the minute: disk, holdings, replication progress. Extra fields
 * are allowed so that a newer node's message is still read.
 */
export const presenceSchema = {
  type: 'object',
  additionalProperties: true,
  required: ['peer', 'name', 'url', 'labels', 'disk', 'images', 'replication', 'at'],
  properties: {
    peer: { type: 'string' },
    name: { type: 'string' },
    url: { type: 'string' },
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    disk: {
      type: 'object',
      additionalProperties: false,
      required: ['usedBytes', 'freeBytes'],
      properties: { usedBytes: { type: 'integer', minimum: 0 }, freeBytes: { type: 'integer', minimum: 0 } }
    },
    /** Image CIDs the node holds. */
    images: { type: 'array', items: { type: 'string' } },
    /** Strategy id -> the node's progress with that strategy's image (absent: nothing to say). */
    replication: { type: 'object', additionalProperties: placementStateSchema },
    /** The sender's catalogue writer key (its OrbitDB identity): what an operator's certificate names. */
    writer: { type: 'string' },
    /** The sender's wall clock when it sent the message (ISO 8601), for people. */
    at: { type: 'string' }
  }
} as const

export type Presence = FromSchema<typeof presenceSchema>
/** How far one node got with one strategy's image, as its reconciler reports it. */
export type PlacementState = FromSchema<typeof placementStateSchema>

const isPresence = AjvCompiler()({}, { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } })({ schema: presenceSchema }) as (value: unknown) => value is Presence

/**
 * What the channel needs of the mesh: messages to every connected member or to one, messages
 * with their sender as the connection authenticated it, and members as they connect
 * (presence-link.ts: a libp2p protocol of Shoal's own).
 */
export interface PresenceTransport {
  broadcast(bytes: Uint8Array): void
  send(peer: string, bytes: Uint8Array): void
  onMessage(listener: (bytes: Uint8Array, from: string) => void): () => void
  onMemberConnect(listener: (peer: string) => void): () => void
  /**
   * Counts a connected peer as a member though libp2p never said it speaks the protocol (its
   * identify was lost on a busy machine); a member already counted is left as it is.
   */
  adopt(peer: string): void
}

/** A presence heard from a peer, and when it arrived (this node's monotonic clock, ms). */
export interface HeardPresence {
  presence: Presence
  receivedAt: number
}

export interface PresenceOptions {
  transport: PresenceTransport
  self: string
  intervalMs: number
  /** This node's presence as it is now. */
  current: () => Promise<Presence>
  /** Called for every presence heard from another node. */
  onHeard: (peer: string, heard: HeardPresence) => void
  logger: Logger
  now?: () => number
}

/**
 * The ephemeral half of the fleet's state (D12): every node sends its presence to every connected
 * member every interval and shortly after what it holds changed, and to a member as soon as it
 * connects, so a newcomer learns the whole fleet as its connections form, and the fleet learns
 * it. Each node keeps the last presence of each peer in memory; nothing is written to disk, so
 * nothing grows.
 */
export class PresenceChannel {
  private readonly options: PresenceOptions
  private readonly now: () => number
  private readonly heard = new Map<string, HeardPresence>()
  private readonly unsubscribe: Array<() => void> = []
  private timer: NodeJS.Timeout | undefined
  private sendTimer: NodeJS.Timeout | undefined
  private sendAt = Infinity
  private stopped = false
  private sentAt: string | undefined

  constructor (options: PresenceOptions) {
    this.options = options
    this.now = options.now ?? (() => performance.now())
  }

  async start (): Promise<void> {
    const { transport } = this.options
    this.unsubscribe.push(transport.onMessage((bytes, from) => { this.receive(bytes, from) }))
    this.unsubscribe.push(transport.onMemberConnect(peer => { void this.send(peer) }))
    await this.send()
    this.timer = setInterval(() => { void this.send() }, this.options.intervalMs).unref()
  }

  stop (): void {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.sendTimer)
    for (const unsubscribe of this.unsubscribe.splice(0)) unsubscribe()
  }

  /** Sends this node's presence within `delayMs` (several asks share one message). */
  sendSoon (delayMs = COALESCE_MS): void {
    const at = this.now() + delayMs
    if (at >= this.sendAt) return
    clearTimeout(this.sendTimer)
    this.sendAt = at
    this.sendTimer = setTimeout(() => {
      this.sendAt = Infinity
      void this.send()
    }, delayMs).unref()
  }

  /** When this node last sent its presence (its clock, ISO 8601). */
  get lastSentAt (): string | undefined {
    return this.sentAt
  }

  /** The last presence of each peer heard since this node started. */
  all (): ReadonlyMap<string, HeardPresence> {
    return this.heard
  }

  get (peer: string): HeardPresence | undefined {
    return this.heard.get(peer)
  }

  /** Drops what was heard of `peer` (a node forgotten by the fleet). */
  forget (peer: string): void {
    this.heard.delete(peer)
  }

  /** Sends this node's presence to `peer`, or to every connected member. */
  private async send (peer?: string): Promise<void> {
    if (this.stopped) return
    try {
      const presence = await this.options.current()
      const bytes = new TextEncoder().encode(JSON.stringify(presence))
      if (peer === undefined) {
        this.options.transport.broadcast(bytes)
        this.sentAt = presence.at
      } else {
        this.options.transport.send(peer, bytes)
      }
    } catch (err) {
      this.options.logger.debug({ err }, 'could not send presence')
    }
  }

  private receive (bytes: Uint8Array, from: string): void {
    let presence: unknown
    try {
      presence = JSON.parse(new TextDecoder().decode(bytes))
    } catch {
      return
    }
    // A member speaks for itself only: the peer the connection authenticated must be the one named.
    if (!isPresence(presence) || presence.peer !== from || from === this.options.self) {
      this.options.logger.debug({ from }, 'ignored a presence message')
      return
    }
    const heard = { presence, receivedAt: this.now() }
    this.heard.set(from, heard)
    this.options.onHeard(from, heard)
  }
}
