import type { KeyObject } from 'node:crypto'
import { readFile, rename, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { IPFSAccessController, createOrbitDB, type KeyValueDatabase, type OrbitDB } from '@orbitdb/core'
import { base58btc } from 'multiformats/bases/base58'
import { CID } from 'multiformats/cid'
import type { Logger } from 'pino'
import type { Strategy } from './strategy-record.ts'
import type { Signed, Statement } from '../access/certificates.ts'
import { certifiedAccessController } from './certified-access.ts'
import { FleetRoleError, FleetTrust, NoOperatorKeyError, StatementInvalidError, statementKey } from './fleet-trust.ts'
import { GenerationalDatabase, type GenerationSettings } from './generations.ts'
import { tagKey } from './tag-key.ts'

// The records are types, not interfaces: the API sends them as they are, and its answer types
// (derived from its schemas) admit more fields, which only a type alias fits.

/** Where a tag points, and who put it there. */
export type TagRecord = {
  repository: string
  tag: string
  digest: string
  mediaType: string
  imageCid: string
  /** Peer id of the node the tag was pushed to. */
  node: string
  /** Wall-clock time of the push (ISO 8601), for people; ordering uses the log's clock. */
  pushedAt: string
  /** The signed-in user who pushed it, when the node that took the push had authentication on. */
  pushedBy?: string
}

/**
 * A node's durable identity in the fleet (D12): written when it changes, not on a heartbeat.
 * What changes by the minute (disk, holdings, progress) travels as presence (mesh/presence.ts).
 */
export type NodeRecord = {
  id: string
  name: string
  url: string
  addresses: string[]
  labels: Record<string, string>
  /** The public key (JWK, P-256) the node signs its registry tokens with: the fleet's members take each other's tokens. */
  tokenKey?: TokenKey
}

export type TokenKey = { crv: string, kty: string, x: string, y: string }

/** What the catalogue needs of the mesh beyond what OrbitDB takes from helia itself. */
export interface CatalogueTransport {
  /** This node's peer id (the ids the nodes database is keyed by). */
  readonly self: string
  publish(topic: string, bytes: Uint8Array): Promise<unknown>
  /** Calls back when a peer subscribes to a topic; returns an unsubscribe function. */
  onPeerSubscribe(listener: (topic: string, peer: string) => void): () => void
  /** Calls back with every message on `topic` and its sender's peer id; returns an unsubscribe function. */
  subscribe(topic: string, onMessage: (bytes: Uint8Array, from: string | undefined) => void): () => void
}

/** What the catalogue needs of helia beyond what OrbitDB uses: removing the pins of dropped logs. */
interface PinRemover {
  pins: { rm(cid: CID): AsyncIterable<unknown> }
}

// OrbitDB 4.0.0 sends a log's heads to a joining peer unframed on one stream: with several heads
// they can arrive as one chunk and fail to decode. Re-announcing every head as its own pubsub
// message (OrbitDB's path for new entries) makes late joiners converge anyway.
// Heads are re-announced when they changed since the last announcement (checked every
// HEADS_CHECK_INTERVAL_MS), shortly after a peer subscribes to one of the catalogue's databases (a
// newcomer, or a new generation), and otherwise in a round every HEADS_REANNOUNCE_MS:
// each gossip message costs every node a signature check.
const HEADS_CHECK_INTERVAL_MS = 10_000
const HEADS_REANNOUNCE_MS = 300_000
const HEADS_ANNOUNCE_DELAY_MS = 300
/**
 * Announcements on one topic for peers that subscribed go out at most this often. Not doubled
 * after each back-to-back one, as first built: when a few nodes joined in a row the spacing grew
 * to 20 s and more, and a node that joined next waited that long for the catalogue (a late
 * joiner in test/mesh/fleet.test.ts missed its 10 s under two busy loops). With ANSWERERS per
 * newcomer, this spacing alone bounds what a burst of joins costs each node.
 */
const ANNOUNCE_SPACING_MS = 5_000
/**
 * The nodes database gets a head for every identity written without the others in view (a
 * newcomer writes its own at once): with N heads, every announcement of all heads is N messages
 * to every node. Past this many, the lowest-id member writes its own identity again, which
 * merges them into one. (Only its own identity: rewriting any other key could undo a concurrent
 * write it has not seen.)
 */
const MAX_UNMERGED_NODE_HEADS = 4
/**
 * The timed re-announcements (heads changed, a round came) are a safety net: every node has the
 * same heads, and when each of N nodes sent all of them every minute, each node received
 * N x heads messages a minute (with N unmerged identity heads, N^2). Each node takes its turn in
 * a round with a chance of this many in the fleet. With rounds every minute and 3 turns, those
 * messages were still most of a 12-node fleet's idle gossip (8 nodes: 34 a minute per node).
 */
const ANNOUNCERS_PER_ROUND = 2
/**
 * A peer that subscribes to one of the catalogue's topics is answered by this many members only:
 * those whose ids follow its id (answerersOf below). When every member it met answered, a join
 * cost each of N nodes N broadcasts (N^2 for the fleet), and a 30-node fleet never settled. The
 * newcomer itself announces its heads to peers that subscribe during its first JOIN_WINDOW_MS.
 */
const ANSWERERS = 3
const JOIN_WINDOW_MS = 60_000

/**
 * Gossip topic on which nodes tell each other the generation each database writes to: on a new
 * generation, to a peer that subscribes to it (by its answerers), and in the timed rounds. Nothing
 * durable: a node keeps its own current generation in GENERATIONS_FILE and learns a newer one
 * from any peer.
 */
const GENERATIONS_TOPIC = 'shoal/catalogue/generations/1'
/** Per database: the generation this node writes to and those it holds on disk, beside OrbitDB's files. */
const GENERATIONS_FILE = 'generations.json'

type GenerationsOnDisk = Record<string, { current: number, onDisk: number[] }>

/** How compaction behaves; defaults are those of the settings in src/config.ts. */
export type CatalogueOptions = Partial<GenerationSettings> & {
  /** Collects blocks nothing pins any more: called after a generation's entries are unpinned. */
  collectGarbage?: () => Promise<unknown>
  /**
   * The fleet operator's public key: only writers its certificates name change the fleet's
   * view (fleet-trust.ts); absent, any member writes (the swarm key is the only gate).
   */
  operatorKey?: KeyObject
}

/** A node's standing with the fleet's operator key, for people and the CLI. */
export interface TrustStatus {
  /** The operator key's id (fleet-trust.ts), or null: no operator key, any member writes. */
  operatorKey: string | null
  /** This node's OrbitDB writer key and what its certificate says (role null: none). */
  self: { writer: string, role: 'member' | 'admin' | null }
  statements: Array<Signed<Statement>>
}

/** Generation announcements kept from peers not (yet) certified, at most. */
const MAX_UNCERTIFIED_GENERATIONS = 64
/** When a node just certified announces its heads (what it wrote while uncertified). */
const CERTIFIED_ANNOUNCE_DELAYS_MS = [0, 10_000, 30_000]
/** With no certificate after this long, a node that wrote says once that its writes stay local. */
const UNCERTIFIED_NOTICE_MS = 15_000

const DEFAULT_GENERATION_SETTINGS: GenerationSettings = {
  compactEntries: 500,
  graceMs: 60_000,
  staggerMs: 10_000
}

/** A key's current value in one of the catalogue's databases, and the log entry that wrote it. */
export interface CatalogueEntry {
  key: string
  value: unknown
  /** CID of the OrbitDB log entry that wrote the value; absent when it was not found. */
  hash?: string
  /** That entry's Lamport clock: `id` is the writer's OrbitDB identity (its public key). */
  clock?: { id: string, time: number }
}

/** One of the catalogue's databases as it is now. */
export interface CatalogueDatabase {
  name: string
  address: string
  entries: CatalogueEntry[]
}

export interface CatalogueChange {
  kind: 'tag' | 'node' | 'strategy' | 'certificate'
  key: string
  deleted: boolean
}

/** One generational database's state, for people and tests. */
export interface CatalogueGeneration {
  name: string
  /** The generation writes go to. */
  current: number
  /** Generations open on this node (at most the current one and those in their grace). */
  open: number[]
  /** Entries in the current generation's log. */
  logEntries: number
  liveKeys: number
  /** Heads of the current generation's log (entries no other entry points at yet). */
  heads: number
}

const KINDS = [
  { kind: 'tag', name: 'shoal.tags' },
  { kind: 'node', name: 'shoal.nodes' },
  { kind: 'strategy', name: 'shoal.strategies' }
] as const
/** Only in a fleet with an operator key: the operator's signed statements (certificates, revocations). */
const CERTIFICATES = { kind: 'certificate', name: 'shoal.certificates' } as const

/**
 * The replicated catalogue (D6): OrbitDB key-value databases every member opens under the same
 * address, over gossipsub. Conflicting writes of one key resolve by the oplog's order, which every
 * node computes alike: the Lamport clock, then the writer's identity (see docs/architecture.md).
 * Each database is a sequence of generations (generations.ts): a log that grew far past its live
 * keys is replaced by a new one that starts with a snapshot, so storage and start time follow the
 * live state, not the history.
 */
export class Catalogue {
  private readonly ipfs: unknown
  private readonly directory: string
  private readonly logger: Logger
  private readonly settings: GenerationSettings
  private readonly collectGarbage: (() => Promise<unknown>) | undefined
  private readonly operatorKey: KeyObject | undefined
  /** Who may write (a fleet with an operator key), once started. */
  private trust: FleetTrust | undefined
  /** The databases this node keeps: with an operator key, the certificates first. */
  private readonly kinds: ReadonlyArray<{ kind: CatalogueChange['kind'], name: string }>
  private uncertifiedNotice: NodeJS.Timeout | undefined
  private uncertifiedSaid = false
  private readonly certifiedAnnouncements = new Set<NodeJS.Timeout>()
  /** Generation announcements from peers without a certificate (yet), by peer. */
  private readonly uncertifiedGenerations = new Map<string, Uint8Array>()
  private certifiedRole: string | undefined
  private orbitdb: OrbitDB | undefined
  private readonly databasesByKind = new Map<CatalogueChange['kind'], GenerationalDatabase>()
  private readonly listeners = new Set<(change: CatalogueChange) => void>()
  /** Per database: the heads last announced (or skipped), sorted and joined. */
  private readonly announced = new Map<string, string>()
  private readonly transport: CatalogueTransport
  private announceTimer: NodeJS.Timeout | undefined
  /** Per topic: an announcement waiting to go out, and when the last went. */
  private readonly answering = new Map<string, { timer?: NodeJS.Timeout, at: number }>()
  private readonly stopListening: Array<() => void> = []
  private saving: Promise<unknown> = Promise.resolve()
  private opening: Promise<unknown> = Promise.resolve()
  /** When this node's last timed round came (its turn or not). */
  private roundAt = Date.now()
  /** Until every database has started, GENERATIONS_FILE is not rewritten (it would lose some). */
  private generationsKnown = false

  constructor (ipfs: unknown, transport: CatalogueTransport, directory: string, logger: Logger, options: CatalogueOptions = {}) {
    this.ipfs = ipfs
    this.transport = transport
    this.directory = directory
    this.logger = logger
    const { collectGarbage, operatorKey, ...settings } = options
    this.collectGarbage = collectGarbage
    this.operatorKey = operatorKey
    this.kinds = operatorKey === undefined ? KINDS : [CERTIFICATES, ...KINDS]
    this.settings = { ...DEFAULT_GENERATION_SETTINGS, ...Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== undefined)) }
  }

  async start (): Promise<void> {
    const orbitdb = this.orbitdb = await createOrbitDB({ ipfs: this.ipfs, directory: this.directory, id: 'shoal' })
    const trust = this.trust = this.operatorKey === undefined ? undefined : new FleetTrust(this.operatorKey, orbitdb.identity.publicKey)
    const onDisk = await this.generationsOnDisk()
    for (const { kind, name } of this.kinds) {
      const db = new GenerationalDatabase(name, {
        open: async dbName => await this.openDatabase<unknown>(dbName, kind),
        release: async (address, hashes) => { await this.release(address, hashes) },
        announceGeneration: () => { void this.announceGenerations() },
        generationsChanged: () => { this.saveGenerations() },
        changed: (key, deleted) => {
          if (kind === 'certificate') this.certificatesChanged()
          for (const listener of this.listeners) listener({ kind, key, deleted })
        },
        writerId: orbitdb.identity.publicKey,
        ...(trust === undefined ? {} : { counts: (writer: string, key: string | undefined, deleted: boolean) => trust.admits(kind, writer, key, deleted) }),
        logger: this.logger
      }, this.settings)
      this.databasesByKind.set(kind, db)
    }
    if (trust !== undefined) {
      // The certificates first: the other logs' entries are checked against them as they load.
      await this.database('certificate').start(onDisk[CERTIFICATES.name]?.onDisk ?? [], onDisk[CERTIFICATES.name]?.current ?? 0)
      this.certificatesChanged()
      this.stopListening.push(trust.onChange(() => { this.trustChanged() }))
    }
    // The others start at once (their opens take turns: openDatabase); the file is written only
    // once all know their generations.
    await Promise.all(KINDS.map(async ({ kind, name }) => { await this.database(kind).start(onDisk[name]?.onDisk ?? [], onDisk[name]?.current ?? 0) }))
    this.generationsKnown = true
    this.saveGenerations()
    this.stopListening.push(this.transport.subscribe(GENERATIONS_TOPIC, (bytes, from) => { this.heardGenerations(bytes, from) }))
    this.announceTimer = setInterval(() => { void this.announceChangedHeads() }, HEADS_CHECK_INTERVAL_MS).unref()
    const startedAt = Date.now()
    // A peer that subscribes to one of the catalogue's topics gets what it needs on that topic:
    // a database's heads, or the generations. (Announcing on a connection was useless to a peer
    // not yet subscribed: gossipsub sends a topic's messages only to its subscribers.)
    this.stopListening.push(this.transport.onPeerSubscribe((topic, peer) => {
      if (topic !== GENERATIONS_TOPIC && !this.openDatabases().some(db => db.address === topic)) return
      void this.answers(peer, startedAt).then(answer => { if (answer) this.answerSoon(topic) })
    }))
  }

  async stop (): Promise<void> {
    clearInterval(this.announceTimer)
    clearTimeout(this.uncertifiedNotice)
    for (const timer of this.certifiedAnnouncements) clearTimeout(timer)
    for (const { timer } of this.answering.values()) clearTimeout(timer)
    for (const stop of this.stopListening.splice(0)) stop()
    for (const db of this.databasesByKind.values()) await db.stop()
    await this.saving
    await this.orbitdb?.stop()
    this.orbitdb = undefined
  }

  /**
   * The timed check: publishes the heads of databases whose heads changed since their last
   * announcement, and in a round every head and the generations, each head as one pubsub message.
   */
  private async announceChangedHeads (): Promise<void> {
    const now = Date.now()
    const roundDue = now - this.roundAt >= HEADS_REANNOUNCE_MS
    if (roundDue) this.roundAt = now
    await this.mergeNodeHeads()
    // Heads refused earlier, tried again: their writer's certificate, or the writer's identity
    // block (a joining node's first fetch of it can fail, seen under load), may be here now.
    for (const db of this.databasesByKind.values()) {
      await db.retryRefused().catch((err: unknown) => { this.logger.debug({ err, db: db.name }, 'could not retry refused catalogue entries') })
    }
    // A round or a change is this node's to announce only with a chance of ANNOUNCERS_PER_ROUND
    // in the fleet; skipped, it counts as done, or the 10 s checks would let every node in.
    const myTurn = Math.random() * await this.fleetSize() < ANNOUNCERS_PER_ROUND
    if (roundDue && myTurn) await this.announceGenerations()
    for (const db of this.openDatabases()) {
      try {
        const key = (await db.log.heads()).map(head => head.hash).sort().join(',')
        if (!roundDue && this.announced.get(db.address) === key) continue
        this.announced.set(db.address, key)
        if (myTurn) await this.publishHeads(db)
      } catch (err) {
        this.logger.debug({ err, db: db.address }, 'could not announce heads')
      }
    }
  }

  /** Merges the nodes database's heads once there are too many (MAX_UNMERGED_NODE_HEADS). */
  private async mergeNodeHeads (): Promise<void> {
    try {
      const nodes = await this.view('node')
      const self = this.transport.self
      const own = nodes.get(self)
      const lowest = nodes.entries().map(([id]) => id).sort()[0]
      if (own === undefined || lowest !== self || (await nodes.db.log.heads()).length <= MAX_UNMERGED_NODE_HEADS) return
      await nodes.put(self, own)
    } catch (err) {
      this.logger.debug({ err }, 'could not merge the nodes database\'s heads')
    }
  }

  /** Announces on `topic` soon, spaced as ANNOUNCE_SPACING_MS says. */
  private answerSoon (topic: string): void {
    const state = this.answering.get(topic) ?? { at: 0 }
    this.answering.set(topic, state)
    if (state.timer !== undefined) return
    const delay = Math.max(HEADS_ANNOUNCE_DELAY_MS, state.at + ANNOUNCE_SPACING_MS - Date.now())
    state.timer = setTimeout(() => {
      state.timer = undefined
      state.at = Date.now()
      void this.announceTopic(topic)
    }, delay).unref()
  }

  /** Publishes the generations, or every head of the database whose topic `topic` is. */
  private async announceTopic (topic: string): Promise<void> {
    if (topic === GENERATIONS_TOPIC) {
      await this.announceGenerations()
      return
    }
    const db = this.openDatabases().find(candidate => candidate.address === topic)
    if (db !== undefined) await this.publishHeads(db)
  }

  private async publishHeads (db: KeyValueDatabase<unknown>): Promise<void> {
    try {
      for (const head of await db.log.heads()) {
        const bytes = await db.log.storage.get(head.hash)
        if (bytes !== undefined) await this.transport.publish(db.address, bytes)
      }
    } catch (err) {
      this.logger.debug({ err, db: db.address }, 'could not announce heads')
    }
  }

  /** Whether this node answers `peer`'s subscription (ANSWERERS, or its own join window). */
  private async answers (peer: string, startedAt: number): Promise<boolean> {
    if (Date.now() - startedAt < JOIN_WINDOW_MS) return true
    try {
      const members = (await this.view('node')).entries().map(([id]) => id)
      return answerersOf(peer, [...members, this.transport.self], ANSWERERS).includes(this.transport.self)
    } catch {
      return true
    }
  }

  /** How many nodes the catalogue knows (at least 1). */
  private async fleetSize (): Promise<number> {
    try {
      return Math.max(1, (await this.view('node')).entries().length)
    } catch {
      return 1
    }
  }

  private openDatabases (): Array<KeyValueDatabase<unknown>> {
    return [...this.databasesByKind.values()].flatMap(db => db.databases())
  }

  /** Tells the fleet which generation each database writes to. */
  private async announceGenerations (): Promise<void> {
    const current = Object.fromEntries([...this.databasesByKind.values()].map(db => [db.name, db.current]))
    try {
      await this.transport.publish(GENERATIONS_TOPIC, new TextEncoder().encode(JSON.stringify(current)))
    } catch (err) {
      this.logger.debug({ err }, 'could not announce the catalogue\'s generations')
    }
  }

  /**
   * A peer's generations: moves to any that is newer than this node's. Under an operator key,
   * only a certified member's count: anyone else could move the fleet to a generation that never
   * gets a snapshot.
   */
  private heardGenerations (bytes: Uint8Array, from: string | undefined): void {
    if (this.trust !== undefined && (from === undefined || !this.trust.certifiesPeer(from))) {
      // Kept (the latest per peer) until the certificates change: a newcomer hears generations
      // before the certificates that make them count.
      if (from === undefined) return
      this.uncertifiedGenerations.delete(from)
      this.uncertifiedGenerations.set(from, bytes)
      if (this.uncertifiedGenerations.size > MAX_UNCERTIFIED_GENERATIONS) this.uncertifiedGenerations.delete(this.uncertifiedGenerations.keys().next().value as string)
      return
    }
    let heard: unknown
    try {
      heard = JSON.parse(new TextDecoder().decode(bytes))
    } catch {
      return
    }
    if (typeof heard !== 'object' || heard === null) return
    for (const db of this.databasesByKind.values()) {
      const generation = (heard as Record<string, unknown>)[db.name]
      if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation <= db.current) continue
      db.advance(generation).catch((err: unknown) => { this.logger.warn({ err, db: db.name, generation }, 'could not move to a new catalogue generation') })
    }
  }

  /** The same name and access controller on every node give the same database address. */
  private async openDatabase<T> (name: string, kind: CatalogueChange['kind']): Promise<KeyValueDatabase<T>> {
    // One open at a time: every database shares one access-controller block, and OrbitDB pins
    // it on each open (check, then pin), so two opens at once could fail with "Already pinned"
    // and stop the node at start (seen in a 30-node fleet, and under load in test/mesh/pull).
    const opened = this.opening.then(async () => await this.openDatabaseNow<T>(name, kind))
    this.opening = opened.catch(() => {})
    return await opened
  }

  private async openDatabaseNow<T> (name: string, kind: CatalogueChange['kind']): Promise<KeyValueDatabase<T>> {
    const orbitdb = this.requireStarted()
    // Without an operator key any member may write: membership itself is guarded by the mesh's
    // pre-shared key. With one, the writers its certificates name (certified-access.ts).
    // Plain KeyValue, not KeyValueIndexed: the indexed kind applies entries in the order they
    // arrive, so two nodes that wrote one key at once could each keep the other's value. Reading
    // the log in its own order (Lamport clock, then writer) gives every node the same answer.
    return await orbitdb.open<T>(name, {
      type: 'keyvalue',
      AccessController: this.trust === undefined ? IPFSAccessController({ write: ['*'] }) : certifiedAccessController(this.trust, kind)
    })
  }

  private async generationsOnDisk (): Promise<GenerationsOnDisk> {
    try {
      return JSON.parse(await readFile(join(this.directory, GENERATIONS_FILE), 'utf8')) as GenerationsOnDisk
    } catch {
      return {}
    }
  }

  /** Writes which generations are on disk (temp file and rename: never half a file). */
  private saveGenerations (): void {
    if (!this.generationsKnown) return
    const onDisk: GenerationsOnDisk = Object.fromEntries([...this.databasesByKind.values()].map(db => [db.name, { current: db.current, onDisk: db.openGenerations() }]))
    this.saving = this.saving.then(async () => {
      const path = join(this.directory, GENERATIONS_FILE)
      await writeFile(`${path}.tmp`, JSON.stringify(onDisk))
      await rename(`${path}.tmp`, path)
    }).catch((err: unknown) => { this.logger.warn({ err }, 'could not record the catalogue\'s generations') })
  }

  /**
   * Frees a dropped database: unpins its entries (OrbitDB pins every entry it stores and never
   * unpins, even on drop; the node's garbage collector then removes the blocks) and its manifest,
   * and removes its heads and index directories.
   */
  private async release (address: string, hashes: string[]): Promise<void> {
    const { pins } = this.ipfs as PinRemover
    const manifest = address.split('/').at(-1)
    for (const hash of [...hashes, ...(manifest === undefined ? [] : [manifest])]) {
      try {
        for await (const _ of pins.rm(CID.parse(hash, base58btc))) { /* drain */ }
      } catch (err) {
        this.logger.debug({ err, hash }, 'could not unpin a dropped catalogue entry')
      }
    }
    await rm(join(this.directory, address), { recursive: true, force: true })
    // Not awaited: a collection walks every image, and the next catalogue work need not wait.
    this.collectGarbage?.().catch((err: unknown) => { this.logger.warn({ err }, 'garbage collection after a catalogue generation was dropped failed') })
  }

  private requireStarted (): OrbitDB {
    if (this.orbitdb === undefined) throw new Error('the catalogue is not started')
    return this.orbitdb
  }

  private database (kind: CatalogueChange['kind']): GenerationalDatabase {
    const db = this.databasesByKind.get(kind)
    if (db === undefined) throw new Error('the catalogue is not started')
    return db
  }

  onChange (listener: (change: CatalogueChange) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** A database once every entry seen so far is indexed. */
  private async view (kind: CatalogueChange['kind']): Promise<GenerationalDatabase> {
    const db = this.database(kind)
    await db.settled()
    return db
  }

  /** The certificates database changed: who may write is read from it again. */
  private certificatesChanged (): void {
    const db = this.databasesByKind.get('certificate')
    if (this.trust === undefined || db === undefined) return
    this.trust.update(db.entries().map(([, winner]) => winner.value))
  }

  /**
   * Who is certified changed: every database is indexed again (a revoked writer's entries stop
   * counting), and a node just certified announces its heads, so that what it wrote while
   * uncertified (kept in its own logs) reaches the fleet now.
   */
  private trustChanged (): void {
    const trust = this.trust
    if (trust === undefined) return
    for (const { kind } of KINDS) {
      const db = this.database(kind)
      db.recount().then(async () => { await db.retryRefused() }).catch((err: unknown) => { this.logger.warn({ err, kind }, 'could not index the catalogue again after a certificate change') })
    }
    // Generations heard from peers not certified then.
    const heard = [...this.uncertifiedGenerations]
    this.uncertifiedGenerations.clear()
    for (const [from, bytes] of heard) this.heardGenerations(bytes, from)
    const role = trust.certified(trust.self)?.role
    if (role === this.certifiedRole) return
    this.certifiedRole = role
    if (role === undefined) {
      this.logger.warn('this node\'s certificate was revoked: its catalogue writes stay on this node')
      return
    }
    this.logger.info({ role }, 'this node is certified by the fleet\'s operator key: its catalogue writes reach the fleet')
    // Now, and twice more: a peer that got these heads before the certificate, and waited for
    // it in vain (fleet-trust.ts), takes them the next time.
    for (const delay of CERTIFIED_ANNOUNCE_DELAYS_MS) {
      const timer = setTimeout(() => {
        this.certifiedAnnouncements.delete(timer)
        for (const db of this.openDatabases()) void this.publishHeads(db)
      }, delay).unref()
      this.certifiedAnnouncements.add(timer)
    }
  }

  /** After a write: a node without a certificate says once, in one line, that its writes stay local. */
  private wrote (): void {
    const trust = this.trust
    if (trust === undefined || this.uncertifiedSaid || this.uncertifiedNotice !== undefined || trust.certified(trust.self) !== undefined) return
    // Not at once: at start the certificates may still be on their way from peers.
    this.uncertifiedNotice = setTimeout(() => {
      this.uncertifiedNotice = undefined
      if (this.uncertifiedSaid || trust.certified(trust.self) !== undefined) return
      this.uncertifiedSaid = true
      this.logger.warn({ peer: this.transport.self, operatorKey: trust.operatorId }, `this node holds no certificate from the fleet's operator key: its catalogue writes stay on this node until \`shoal fleet admit ${this.transport.self}\``)
    }, UNCERTIFIED_NOTICE_MS).unref()
  }

  /** Fleet-wide placement is the admins' (fleet-trust.ts): a member node refuses it rather than write what no other node counts. */
  private requireStrategyRights (): void {
    const trust = this.trust
    if (trust === undefined) return
    const role = trust.certified(trust.self)?.role
    if (role === 'member') throw new FleetRoleError('this node\'s certificate makes it a member of the fleet, not an admin: set strategies through an admin node')
  }

  /** Adds an operator's statement (a certificate or a revocation) for the whole fleet; refuses one the operator key did not sign. */
  async addStatement (value: unknown): Promise<Signed<Statement>> {
    const trust = this.trust
    if (trust === undefined) throw new NoOperatorKeyError('this node was started without an operator key (--operator-key): it takes no certificates')
    const statement = trust.verify(value)
    if (statement === undefined) throw new StatementInvalidError(`the statement is not a certificate or revocation signed by this fleet's operator key (${trust.operatorId})`)
    await this.database('certificate').put(statementKey(statement), statement)
    await this.database('certificate').settled()
    this.certificatesChanged()
    return statement
  }

  /** This node's standing with the operator key, and every statement it holds. */
  trustStatus (): TrustStatus {
    const trust = this.trust
    const writer = this.writer
    if (trust === undefined) return { operatorKey: null, self: { writer, role: null }, statements: [] }
    return { operatorKey: trust.operatorId, self: { writer, role: trust.certified(writer)?.role ?? null }, statements: trust.allStatements() }
  }

  /** This node's OrbitDB writer key (its presence carries it, so the operator can certify it). */
  get writer (): string {
    return this.requireStarted().identity.publicKey
  }

  async putTag (record: TagRecord): Promise<void> {
    await this.database('tag').put(tagKey(record.repository, record.tag), record)
    this.wrote()
  }

  async deleteTag (repository: string, tag: string): Promise<void> {
    await this.database('tag').del(tagKey(repository, tag))
    this.wrote()
  }

  async getTag (repository: string, tag: string): Promise<TagRecord | undefined> {
    return (await this.view('tag')).get(tagKey(repository, tag)) as TagRecord | undefined
  }

  async allTags (): Promise<TagRecord[]> {
    return (await this.view('tag')).entries().map(([, winner]) => winner.value as TagRecord)
  }

  async putNode (record: NodeRecord): Promise<void> {
    await this.database('node').put(record.id, record)
    this.wrote()
  }

  async getNode (id: string): Promise<NodeRecord | undefined> {
    return (await this.view('node')).get(id) as NodeRecord | undefined
  }

  async deleteNode (id: string): Promise<void> {
    await this.database('node').del(id)
  }

  async allNodes (): Promise<NodeRecord[]> {
    return (await this.view('node')).entries().map(([, winner]) => winner.value as NodeRecord)
  }

  async putStrategy (strategy: Strategy): Promise<void> {
    this.requireStrategyRights()
    await this.database('strategy').put(strategy.id, strategy)
    this.wrote()
  }

  async deleteStrategy (id: string): Promise<void> {
    this.requireStrategyRights()
    await this.database('strategy').del(id)
    this.wrote()
  }

  async getStrategy (id: string): Promise<Strategy | undefined> {
    return (await this.view('strategy')).get(id) as Strategy | undefined
  }

  async allStrategies (): Promise<Strategy[]> {
    return (await this.view('strategy')).entries().map(([, winner]) => winner.value as Strategy)
  }

  /**
   * Every database's current entries as stored, each with the log entry that wrote it: its clock
   * says when in its log's order and whose identity. For people to read (the web UI's data
   * store); nothing else needs the log entries.
   */
  async databases (): Promise<CatalogueDatabase[]> {
    const databases: CatalogueDatabase[] = []
    for (const { kind, name } of this.kinds) {
      const db = await this.view(kind)
      databases.push({
        name,
        address: db.db.address,
        entries: db.entries().map(([key, winner]) => ({ key, value: winner.value, hash: winner.hash, clock: { id: winner.rank.id, time: winner.rank.time } }))
      })
    }
    return databases
  }

  /** Each database's generations, for people and tests. */
  async generations (): Promise<CatalogueGeneration[]> {
    const generations: CatalogueGeneration[] = []
    for (const { kind, name } of this.kinds) {
      const db = await this.view(kind)
      generations.push({ name, current: db.current, open: db.openGenerations(), logEntries: db.logSize, liveKeys: db.entries().length, heads: (await db.db.log.heads()).length })
    }
    return generations
  }

  /** Compacts one database now, whatever its size (operators, tests). */
  async compact (kind: CatalogueChange['kind']): Promise<void> {
    await this.database(kind).compact()
  }

  /** Directory for OrbitDB's own files under the node's data directory. */
  static directoryIn (dataDir: string): string {
    return join(dataDir, 'orbitdb')
  }
}

/**
 * The `count` members that answer `peer`: those whose ids follow its id, in sorted order around
 * the ring of ids. Every member computes the same set from the same list.
 */
export function answerersOf (peer: string, members: string[], count: number): string[] {
  const ring = [...new Set(members)].filter(id => id !== peer).sort()
  const first = ring.findIndex(id => id > peer)
  const start = first === -1 ? 0 : first
  return Array.from({ length: Math.min(count, ring.length) }, (_, i) => ring[(start + i) % ring.length] as string)
}
