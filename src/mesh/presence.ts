import { AjvCompiler } from '@fastify/ajv-compiler'
import type { FromSchema } from 'json-schema-to-ts'
import type { Logger } from 'pino'

/** Where nodes say they are alive and what they hold now (gossipsub; never stored: D12). */
export const PRESENCE_TOPIC = '/shoal/presence/1'
/** Changes within this long go out as one message. */
const COALESCE_MS = 200
/** A newcomer hears every node within this long (each waits a random part of it: no burst). */
const WELCOME_SPREAD_MS = 1_000

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
    /** The sender's wall clock when it sent the message (ISO 8601), for people. */
    at: { type: 'string' },
    /** The sender has just started: whoever hears it answers with its own presence soon. */
    hello: { type: 'boolean' }
  }
} as const

export type Presence = FromSchema<typeof presenceSchema>
/** How far one node got with one strategy's image, as its reconciler reports it. */
export type PlacementState = FromSchema<typeof placementStateSchema>

const isPresence = AjvCompiler()({}, { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } })({ schema: presenceSchema }) as (value: unknown) => value is Presence

/** What the channel needs of gossipsub: publish, and messages with their signed sender. */
export interface PresenceTransport {
  publish(topic: string, bytes: Uint8Array): Promise<unknown>
  subscribe(topic: string, onMessage: (bytes: Uint8Array, from: string | undefined) => void): () => void
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
 * The ephemeral half of the fleet's state (D12): every node sends its presence every interval,
 * shortly after what it holds changed, and soon after it hears a node it did not know (so a
 * newcomer learns the whole fleet within a second or two, not one interval). Each node keeps the
 * last presence of each peer in memory; nothing is written to disk, so nothing grows.
 */
export class PresenceChannel {
  private readonly options: PresenceOptions
  private readonly now: () => number
  private readonly heard = new Map<string, HeardPresence>()
  private unsubscribe: (() => void) | undefined
  private timer: NodeJS.Timeout | undefined
  private sendTimer: NodeJS.Timeout | undefined
  private sendAt = Infinity
  private stopped = false
  private startedAt = 0
  private sentAt: string | undefined
  /** When each peer's hello was last answered. */
  private readonly welcomed = new Map<string, number>()

  constructor (options: PresenceOptions) {
    this.options = options
    this.now = options.now ?? (() => performance.now())
  }

  async start (): Promise<void> {
    this.startedAt = this.now()
    this.unsubscribe = this.options.transport.subscribe(PRESENCE_TOPIC, (bytes, from) => { this.receive(bytes, from) })
    await this.send()
    this.timer = setInterval(() => { void this.send() }, this.options.intervalMs).unref()
  }

  stop (): void {
    this.stopped = true
    clearInterval(this.timer)
    clearTimeout(this.sendTimer)
    this.unsubscribe?.()
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
    this.welcomed.delete(peer)
  }

  private async send (): Promise<void> {
    if (this.stopped) return
    try {
      // A node that just started knows nobody's holdings yet: it asks for them by saying hello
      // (its connections and the topic's mesh form during its first intervals).
      const hello = this.now() - this.startedAt < 2 * this.options.intervalMs
      const presence = { ...await this.options.current(), ...(hello ? { hello } : {}) }
      await this.options.transport.publish(PRESENCE_TOPIC, new TextEncoder().encode(JSON.stringify(presence)))
      this.sentAt = presence.at
    } catch (err) {
      this.options.logger.debug({ err }, 'could not send presence')
    }
  }

  private receive (bytes: Uint8Array, from: string | undefined): void {
    let presence: unknown
    try {
      presence = JSON.parse(new TextDecoder().decode(bytes))
    } catch {
      return
    }
    // A member speaks for itself only: the message's signer must be the peer it names.
    if (!isPresence(presence) || presence.peer !== from || from === this.options.self) {
      this.options.logger.debug({ from }, 'ignored a presence message')
      return
    }
    const now = this.now()
    const known = this.heard.has(from)
    const heard = { presence, receivedAt: now }
    this.heard.set(from, heard)
    if (!known || (presence.hello === true && now - (this.welcomed.get(from) ?? -Infinity) > this.options.intervalMs)) {
      this.welcomed.set(from, now)
      this.sendSoon(Math.random() * WELCOME_SPREAD_MS)
    }
    this.options.onHeard(from, heard)
  }
}
