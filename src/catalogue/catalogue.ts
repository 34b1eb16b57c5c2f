import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import { IPFSAccessController, createOrbitDB, type KeyValueDatabase, type LogEntry, type OrbitDB } from '@orbitdb/core'
import type { Logger } from 'pino'
import type { Strategy } from './strategy-record.ts'
import { KeyValueIndex } from './kv-index.ts'

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
}

/**
 * How far one node got with one strategy's image. The node's reconciler writes it into its own
 * record; it removes the entry once the node no longer holds the image for that strategy.
 */
export type PlacementState = {
  /** The strategy's image as written (`repo:tag`, `repo@digest` or an image CID). */
  image: string
  /** The image CID the reference resolved to when the node last worked on it. */
  imageCid?: string
  state: 'fetching' | 'held' | 'failed'
  bytesDone?: number
  bytesTotal?: number
  /** Why it failed, for a person to read. */
  reason?: string
  updatedAt: string
}

/** A node as the fleet sees it. */
export type NodeRecord = {
  id: string
  name: string
  url: string
  addresses: string[]
  labels: Record<string, string>
  disk: { usedBytes: number, freeBytes: number }
  /** Image CIDs the node holds. */
  images: string[]
  heartbeatAt: string
  /** Strategy id -> this node's progress with that strategy's image (absent: nothing to say). */
  replication?: Record<string, PlacementState>
}

/** What the catalogue needs of the mesh beyond what OrbitDB takes from helia itself. */
export interface CatalogueTransport {
  publish(topic: string, bytes: Uint8Array): Promise<unknown>
  /** Calls back when a peer connects; returns an unsubscribe function. */
  onPeerConnect(listener: () => void): () => void
}

// OrbitDB 4.0.0 sends a log's heads to a joining peer unframed on one stream: with several heads
// they can arrive as one chunk and fail to decode. Re-announcing every head as its own pubsub
// message (OrbitDB's path for new entries) makes late joiners converge anyway.
// Heads are re-announced when they changed since the last announcement (checked every
// HEADS_CHECK_INTERVAL_MS), shortly after a peer connects, and otherwise every
// HEADS_REANNOUNCE_MS: each gossip message costs every node a signature check.
const HEADS_CHECK_INTERVAL_MS = 10_000
const HEADS_REANNOUNCE_MS = 60_000
const HEADS_ANNOUNCE_DELAY_MS = 300

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
  kind: 'tag' | 'node' | 'strategy'
  key: string
  deleted: boolean
}

/**
 * The replicated catalogue (D6): OrbitDB key-value databases every member opens under the same
 * address, over gossipsub. Conflicting writes of one key resolve by the oplog's order, which every
 * node computes alike: the Lamport clock, then the writer's identity (see docs/architecture.md).
 */
export class Catalogue {
  private readonly ipfs: unknown
  private readonly directory: string
  private readonly logger: Logger
  private orbitdb: OrbitDB | undefined
  private tagsDb: KeyValueDatabase<TagRecord> | undefined
  private nodesDb: KeyValueDatabase<NodeRecord> | undefined
  private strategiesDb: KeyValueDatabase<Strategy> | undefined
  private readonly listeners = new Set<(change: CatalogueChange) => void>()
  /** Each database's current key -> value map, kept up to date entry by entry. */
  private readonly indexes = new Map<string, KeyValueIndex<unknown>>()
  /** Per database: the heads last announced, and when. */
  private readonly announced = new Map<string, { heads: string, at: number }>()
  private readonly transport: CatalogueTransport
  private announceTimer: NodeJS.Timeout | undefined
  private announceSoon: NodeJS.Timeout | undefined
  private stopListening: (() => void) | undefined
  /**
   * Current value -> the log entry that wrote it (values are replaced, never changed in place);
   * null when a walk of the whole log did not find it, so it is not walked for again.
   */
  private readonly writtenBy = new WeakMap<object, { hash: string, clock: { id: string, time: number } } | null>()

  constructor (ipfs: unknown, transport: CatalogueTransport, directory: string, logger: Logger) {
    this.ipfs = ipfs
    this.transport = transport
    this.directory = directory
    this.logger = logger
  }

  async start (): Promise<void> {
    this.orbitdb = await createOrbitDB({ ipfs: this.ipfs, directory: this.directory, id: 'shoal' })
    this.tagsDb = await this.open<TagRecord>('shoal.tags', 'tag')
    this.nodesDb = await this.open<NodeRecord>('shoal.nodes', 'node')
    this.strategiesDb = await this.open<Strategy>('shoal.strategies', 'strategy')
    this.announceTimer = setInterval(() => { void this.announceHeads(false) }, HEADS_CHECK_INTERVAL_MS).unref()
    this.stopListening = this.transport.onPeerConnect(() => {
      clearTimeout(this.announceSoon)
      this.announceSoon = setTimeout(() => { void this.announceHeads(true) }, HEADS_ANNOUNCE_DELAY_MS).unref()
    })
  }

  async stop (): Promise<void> {
    clearInterval(this.announceTimer)
    clearTimeout(this.announceSoon)
    this.stopListening?.()
    await this.orbitdb?.stop()
    this.orbitdb = undefined
  }

  /**
   * Publishes every head of every database, each as one pubsub message: all of them when `all`,
   * else those of databases whose heads changed since their last announcement or long ago.
   */
  async announceHeads (all = true): Promise<void> {
    for (const db of [this.tagsDb, this.nodesDb, this.strategiesDb]) {
      if (db === undefined) continue
      try {
        const heads = await db.log.heads()
        const key = heads.map(head => head.hash).sort().join(',')
        const last = this.announced.get(db.address)
        if (!all && last !== undefined && last.heads === key && Date.now() - last.at < HEADS_REANNOUNCE_MS) continue
        this.announced.set(db.address, { heads: key, at: Date.now() })
        for (const head of heads) {
          const bytes = await db.log.storage.get(head.hash)
          if (bytes !== undefined) await this.transport.publish(db.address, bytes)
        }
      } catch (err) {
        this.logger.debug({ err, db: db.address }, 'could not announce heads')
      }
    }
  }

  /** The same name and access controller on every node give the same database address. */
  private async open<T> (name: string, kind: CatalogueChange['kind']): Promise<KeyValueDatabase<T>> {
    const orbitdb = this.requireStarted()
    // Any member may write: membership itself is guarded by the mesh's pre-shared key.
    // Plain KeyValue, not KeyValueIndexed: the indexed kind applies entries in the order they
    // arrive, so two nodes that wrote one key at once could each keep the other's value. Reading
    // the log in its own order (Lamport clock, then writer) gives every node the same answer.
    const db = await orbitdb.open<T>(name, {
      type: 'keyvalue',
      AccessController: IPFSAccessController({ write: ['*'] })
    })
    // Sync errors (see HEADS_CHECK_INTERVAL_MS) are recovered by re-announcing heads.
    db.events.on('error', (err: Error) => { this.logger.debug({ err, name }, 'catalogue sync error') })
    const index = new KeyValueIndex<T>(db.log)
    this.indexes.set(db.address, index as KeyValueIndex<unknown>)
    db.events.on('update', (entry: LogEntry<T>) => {
      // Listeners hear of a change once the index has it, so what they read is current. The
      // entry is read back as stored (dag-cbor: map keys sorted), so a value reads the same on
      // the node that wrote it as on every other.
      db.log.get(entry.hash).then(async stored => { await index.add(stored ?? entry) }).then(() => {
        const key = entry.payload.key ?? ''
        for (const listener of this.listeners) listener({ kind, key, deleted: entry.payload.op === 'DEL' })
      }, (err: unknown) => { this.logger.warn({ err, name }, 'could not index a catalogue entry') })
    })
    await index.load()
    this.logger.debug({ name, address: db.address }, 'catalogue database open')
    return db
  }

  private requireStarted (): OrbitDB {
    if (this.orbitdb === undefined) throw new Error('the catalogue is not started')
    return this.orbitdb
  }

  private get tags (): KeyValueDatabase<TagRecord> {
    if (this.tagsDb === undefined) throw new Error('the catalogue is not started')
    return this.tagsDb
  }

  private get nodes (): KeyValueDatabase<NodeRecord> {
    if (this.nodesDb === undefined) throw new Error('the catalogue is not started')
    return this.nodesDb
  }

  private get strategies (): KeyValueDatabase<Strategy> {
    if (this.strategiesDb === undefined) throw new Error('the catalogue is not started')
    return this.strategiesDb
  }

  onChange (listener: (change: CatalogueChange) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** A database's index once every entry seen so far is in it. */
  private async view<T> (db: KeyValueDatabase<T>): Promise<KeyValueIndex<T>> {
    const index = this.indexes.get(db.address)
    if (index === undefined) throw new Error('the catalogue is not started')
    await index.settled()
    return index as KeyValueIndex<T>
  }

  async putTag (record: TagRecord): Promise<void> {
    await this.tags.put(tagKey(record.repository, record.tag), record)
  }

  async deleteTag (repository: string, tag: string): Promise<void> {
    await this.tags.del(tagKey(repository, tag))
  }

  async getTag (repository: string, tag: string): Promise<TagRecord | undefined> {
    return (await this.view(this.tags)).get(tagKey(repository, tag))
  }

  async allTags (): Promise<TagRecord[]> {
    return (await this.view(this.tags)).entries().map(([, value]) => value)
  }

  async putNode (record: NodeRecord): Promise<void> {
    await this.nodes.put(record.id, record)
  }

  async allNodes (): Promise<NodeRecord[]> {
    return (await this.view(this.nodes)).entries().map(([, value]) => value)
  }

  async putStrategy (strategy: Strategy): Promise<void> {
    await this.strategies.put(strategy.id, strategy)
  }

  async deleteStrategy (id: string): Promise<void> {
    await this.strategies.del(id)
  }

  async getStrategy (id: string): Promise<Strategy | undefined> {
    return (await this.view(this.strategies)).get(id)
  }

  async allStrategies (): Promise<Strategy[]> {
    return (await this.view(this.strategies)).entries().map(([, value]) => value)
  }

  /**
   * Every database's current entries as stored, each with the log entry that wrote it: its clock
   * says when in the log's order and whose identity. For people to read (the web UI's data
   * store); nothing else needs the log entries.
   */
  async databases (): Promise<CatalogueDatabase[]> {
    const databases: CatalogueDatabase[] = []
    for (const [name, db] of [['shoal.tags', this.tags], ['shoal.nodes', this.nodes], ['shoal.strategies', this.strategies]] as const) {
      const current = (await this.view<unknown>(db)).entries()
      databases.push({ name, address: db.address, entries: await this.withWriters(db as KeyValueDatabase<unknown>, current) })
    }
    return databases
  }

  /**
   * Finds each value's log entry: remembered per value, else the newest entry of its key, read
   * from the heads back (the log's order, newest first) only as far as the values not yet known.
   */
  private async withWriters (db: KeyValueDatabase<unknown>, current: Array<[string, unknown]>): Promise<CatalogueEntry[]> {
    const unknown = new Map(current.filter(([, value]) => isObject(value) && !this.writtenBy.has(value)))
    if (unknown.size > 0) {
      for await (const entry of db.log.traverse()) {
        const key = entry.payload.key
        if (key === undefined || !unknown.has(key)) continue
        const value = unknown.get(key)
        unknown.delete(key)
        // Unequal when the log has a newer entry than the index took in yet: the index's next value is looked up then.
        if (isObject(value)) this.writtenBy.set(value, isDeepStrictEqual(entry.payload.value, value) ? { hash: entry.hash, clock: entry.clock } : null)
        if (unknown.size === 0) break
      }
      for (const value of unknown.values()) if (isObject(value)) this.writtenBy.set(value, null)
    }
    return current.map(([key, value]) => ({ key, value, ...(isObject(value) ? this.writtenBy.get(value) ?? undefined : undefined) }))
  }

  /** Directory for OrbitDB's own files under the node's data directory. */
  static directoryIn (dataDir: string): string {
    return join(dataDir, 'orbitdb')
  }
}

function isObject (value: unknown): value is object {
  return typeof value === 'object' && value !== null
}

function tagKey (repository: string, tag: string): string {
  return `${repository}:${tag}`
}
