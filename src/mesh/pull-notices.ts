import type { Logger } from 'pino'

/** Where nodes say which DAGs they are pulling right now (gossipsub). */
export const PULLS_TOPIC = '/shoal/pulls/2'
/** A pull not re-announced for this long is taken as over. */
export const PULL_EXPIRY_MS = 15_000
/** How often a node repeats its notice while it has pulls to tell of. */
const REPEAT_MS = 5_000
/** Changes within this long go out as one notice. */
const COALESCE_MS = 50

/** One node's notice: every DAG it is pulling, or finished pulling a moment ago. */
interface PullNotice {
  peer: string
  url: string
  pulls: Array<{ root: string, done: boolean }>
}

export interface PullState {
  url: string
  done: boolean
  at: number
}

/** What the notices need of the mesh: gossipsub's publish and its message events. */
export interface NoticeTransport {
  publish(topic: string, bytes: Uint8Array): Promise<unknown>
  subscribe(topic: string, onMessage: (bytes: Uint8Array) => void): () => void
}

/**
 * Pull notices: which nodes are pulling which DAG now, so that simultaneous pullers find each
 * other. A node sends one notice listing all its pulls when that list changes and every few
 * seconds while it is not empty, rather than one message per DAG per change: every gossip
 * message costs each node a signature check and a few frames on every connection.
 */
export class PullNotices {
  private readonly transport: NoticeTransport
  private readonly self: { peer: string, url: () => string }
  private readonly logger: Logger
  /** This node's pulls: root -> done, and when it was last said to go on. */
  private readonly own = new Map<string, { done: boolean, at: number }>()
  /** root -> peer id -> that peer's pull of root. */
  private readonly heard = new Map<string, Map<string, PullState>>()
  /** Goes up whenever a puller is heard of anew, changes its URL or state, or is forgotten. */
  private changes = 0
  private unsubscribe: (() => void) | undefined
  private repeatTimer: NodeJS.Timeout | undefined
  private sendSoon: NodeJS.Timeout | undefined

  constructor (transport: NoticeTransport, self: { peer: string, url: () => string }, logger: Logger) {
    this.transport = transport
    this.self = self
    this.logger = logger
  }

  start (): void {
    this.unsubscribe = this.transport.subscribe(PULLS_TOPIC, bytes => { this.receive(bytes) })
    this.repeatTimer = setInterval(() => {
      this.forgetExpired()
      if (this.own.size > 0) this.send()
    }, REPEAT_MS).unref()
  }

  stop (): void {
    clearInterval(this.repeatTimer)
    clearTimeout(this.sendSoon)
    this.sendSoon = undefined
    this.unsubscribe?.()
  }

  /**
   * This node is pulling `root` (or has just finished it). Called again while the pull goes on;
   * only a new root or a finished one makes a notice go out at once, and a finished one only
   * when this node told of its pull or another node is pulling it.
   */
  announce (root: string, done: boolean): void {
    const current = this.own.get(root)
    // Held without a pull this node told of, and nobody is pulling it: a push (or a pull that
    // went unannounced), and no puller waits for it to be done. Each push sent two or three
    // notices, and each notice is a gossip message every node checks and forwards.
    if (done && current === undefined && this.pullersOf(root).length === 0) return
    this.own.set(root, { done, at: Date.now() })
    this.note(this.self.peer, this.self.url(), root, done)
    if (current === undefined || current.done !== done) this.sendShortly()
  }

  /**
   * A number that changes whenever what pullersOf answers may change other than by time (a
   * pull heard of, changed or forgotten): its callers may keep what they derive from it until then.
   */
  get version (): number {
    return this.changes
  }

  /** What other nodes said lately of their pulls of `root`, by peer id. */
  pullersOf (root: string, now = Date.now()): Array<[string, PullState]> {
    return [...(this.heard.get(root) ?? new Map<string, PullState>()).entries()]
      .filter(([peer, pull]) => peer !== this.self.peer && now - pull.at < PULL_EXPIRY_MS)
  }

  private sendShortly (): void {
    if (this.sendSoon !== undefined) return
    this.sendSoon = setTimeout(() => {
      this.sendSoon = undefined
      this.send()
    }, COALESCE_MS).unref()
  }

  private send (): void {
    const notice: PullNotice = {
      peer: this.self.peer,
      url: this.self.url(),
      pulls: [...this.own.entries()].map(([root, pull]) => ({ root, done: pull.done }))
    }
    this.transport.publish(PULLS_TOPIC, new TextEncoder().encode(JSON.stringify(notice))).catch((err: unknown) => {
      this.logger.debug({ err }, 'could not send a pull notice')
    })
  }

  private receive (bytes: Uint8Array): void {
    let notice: PullNotice
    try {
      notice = JSON.parse(new TextDecoder().decode(bytes)) as PullNotice
    } catch {
      return
    }
    if (typeof notice.peer !== 'string' || typeof notice.url !== 'string' || !Array.isArray(notice.pulls)) return
    for (const pull of notice.pulls) {
      if (typeof pull?.root === 'string') this.note(notice.peer, notice.url, pull.root, pull.done === true)
    }
  }

  private note (peer: string, url: string, root: string, done: boolean): void {
    const peers = this.heard.get(root) ?? new Map<string, PullState>()
    const before = peers.get(peer)
    if (before === undefined || before.url !== url || before.done !== done) this.changes++
    peers.set(peer, { url, done, at: Date.now() })
    this.heard.set(root, peers)
  }

  private forgetExpired (): void {
    const now = Date.now()
    for (const [root, pull] of this.own) if (now - pull.at >= PULL_EXPIRY_MS) this.own.delete(root)
    for (const [root, peers] of this.heard) {
      for (const [peer, pull] of peers) {
        if (now - pull.at < PULL_EXPIRY_MS) continue
        peers.delete(peer)
        this.changes++
      }
      if (peers.size === 0) this.heard.delete(root)
    }
  }
}
