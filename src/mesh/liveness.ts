/**
 * How a peer stands, seen from this node: `live` (a sign of life within three presence
 * intervals), `silent` (none for longer: busy, or on its way out; still a member), `gone` (none
 * for the whole grace: its share is placed elsewhere).
 */
export type Standing = 'live' | 'silent' | 'gone'

export interface LivenessOptions {
  /** The presence interval (`heartbeatSeconds`). */
  intervalMs: number
  /** No sign of life this long makes a peer gone (`goneAfterSeconds`). */
  goneAfterMs: number
  /** The longest a peer that keeps leaving waits to count again. */
  maxRejoinMs?: number
  now?: () => number
}

/** After this long as a member, a peer's past departures no longer lengthen its next wait. */
const DEPARTURES_FORGIVEN_MS = 60 * 60_000
const DEFAULT_MAX_REJOIN_MS = 60 * 60_000

interface PeerLife {
  /** The last sign of life (this node's monotonic clock, ms). */
  lastSign: number
  member: boolean
  /** Since when the peer has shown life without a silent gap (a gone peer coming back). */
  liveSince?: number
  /** When it last became a member, and when it last became gone. */
  memberSince: number
  goneSince?: number
  /** How often it went gone lately: each time, it waits longer before it counts again. */
  departures: number
}

/**
 * Membership that does not take busy for gone (issue 11). Every sign of life counts the same: a
 * presence message, a new libp2p connection, an answered ping; a peer is gone only after
 * `goneAfterMs` without any. Hysteresis: a gone peer counts again only after it has shown life
 * steadily for the grace, doubled for each recent departure (capped), so a flapping node does not
 * move images back and forth. A peer known (from the catalogue) but not heard since this node
 * started is given the grace from this node's start: a restart must not re-place the fleet.
 */
export class Liveness {
  private readonly options: Required<Omit<LivenessOptions, 'now'>>
  private readonly now: () => number
  private readonly startedAt: number
  private readonly peers = new Map<string, PeerLife>()

  constructor (options: LivenessOptions) {
    this.options = { maxRejoinMs: DEFAULT_MAX_REJOIN_MS, ...options }
    this.now = options.now ?? (() => performance.now())
    this.startedAt = this.now()
  }

  /** A peer the fleet knows of; unheard, it counts as a member until the grace from this node's start runs out. */
  known (peer: string): void {
    if (!this.peers.has(peer)) this.peers.set(peer, { lastSign: this.startedAt, member: true, memberSince: this.startedAt, departures: 0 })
  }

  /** A sign of life from `peer`. */
  heard (peer: string): void {
    const now = this.now()
    const life = this.peers.get(peer)
    if (life === undefined) {
      // A newcomer counts at once: a fleet that grows places on new nodes without waiting.
      this.peers.set(peer, { lastSign: now, member: true, memberSince: now, departures: 0 })
      return
    }
    if (!life.member && (life.liveSince === undefined || now - life.lastSign > this.silentAfterMs)) life.liveSince = now
    life.lastSign = now
  }

  /**
   * Moves peers between member and gone as the clock says; returns those that changed, so the
   * caller can re-place only when membership really changed.
   */
  update (): { departed: string[], returned: string[] } {
    const now = this.now()
    const departed: string[] = []
    const returned: string[] = []
    for (const [peer, life] of this.peers) {
      if (life.member) {
        if (now - life.memberSince >= DEPARTURES_FORGIVEN_MS) life.departures = 0
        if (now - life.lastSign >= this.options.goneAfterMs) {
          life.member = false
          life.goneSince = now
          life.liveSince = undefined
          life.departures++
          departed.push(peer)
        }
      } else if (life.liveSince !== undefined) {
        if (now - life.lastSign > this.silentAfterMs) life.liveSince = undefined
        else if (now - life.liveSince >= this.rejoinWaitMs(life.departures)) {
          life.member = true
          life.memberSince = now
          life.goneSince = undefined
          life.liveSince = undefined
          returned.push(peer)
        }
      }
    }
    return { departed, returned }
  }

  standing (peer: string): Standing | undefined {
    const life = this.peers.get(peer)
    if (life === undefined) return undefined
    if (!life.member) return 'gone'
    return this.now() - life.lastSign > this.silentAfterMs ? 'silent' : 'live'
  }

  /** Whether placement counts `peer` (a gone peer that shows life again counts only after its wait). */
  isMember (peer: string): boolean {
    return this.peers.get(peer)?.member ?? false
  }

  /** How long `peer` has been gone, in ms; undefined when it is not gone. */
  goneFor (peer: string): number | undefined {
    const goneSince = this.peers.get(peer)?.goneSince
    return goneSince === undefined ? undefined : this.now() - goneSince
  }

  /** How long since the last sign of life of `peer`, in ms (from this node's start if none). */
  sinceLastSign (peer: string): number | undefined {
    const life = this.peers.get(peer)
    return life === undefined ? undefined : this.now() - life.lastSign
  }

  forget (peer: string): void {
    this.peers.delete(peer)
  }

  private get silentAfterMs (): number {
    return 3 * this.options.intervalMs
  }

  private rejoinWaitMs (departures: number): number {
    return Math.min(this.options.goneAfterMs * 2 ** Math.max(0, departures - 1), this.options.maxRejoinMs)
  }
}
