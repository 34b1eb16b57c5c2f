import { join } from 'node:path'
import { IPFSAccessController, createOrbitDB, type KeyValueDatabase, type LogEntry, type OrbitDB } from '@orbitdb/core'
import type { Logger } from 'pino'
import type { Strategy } from '../replication/strategy.ts'

/** Where a tag points, and who put it there. */
export interface TagRecord {
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
export interface PlacementState {
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
export interface NodeRecord {
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
const HEADS_ANNOUNCE_INTERVAL_MS = 10_000
const HEADS_ANNOUNCE_DELAY_MS = 300

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
  /** Each database's current key -> value map, read from its log once per change. */
  private readonly views = new Map<string, Promise<Map<string, unknown>>>()
  private readonly transport: CatalogueTransport
  private announceTimer: NodeJS.Timeout | undefined
  private announceSoon: NodeJS.Timeout | undefined
  private stopListening: (() => void) | undefined

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
    this.announceTimer = setInterval(() => { void this.announceHeads() }, HEADS_ANNOUNCE_INTERVAL_MS).unref()
    this.stopListening = this.transport.onPeerConnect(() => {
      clearTimeout(this.announceSoon)
      this.announceSoon = setTimeout(() => { void this.announceHeads() }, HEADS_ANNOUNCE_DELAY_MS).unref()
    })
  }

  async stop (): Promise<void> {
    clearInterval(this.announceTimer)
    clearTimeout(this.announceSoon)
    this.stopListening?.()
    await this.orbitdb?.stop()
    this.orbitdb = undefined
  }

  /** Publishes every head of every database, each as one pubsub message. */
  async announceHeads (): Promise<void> {
    for (const db of [this.tagsDb, this.nodesDb, this.strategiesDb]) {
      if (db === undefined) continue
      try {
        for (const head of await db.log.heads()) {
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
    // Sync errors (see HEADS_ANNOUNCE_INTERVAL_MS) are recovered by re-announcing heads.
    db.events.on('error', (err: Error) => { this.logger.debug({ err, name }, 'catalogue sync error') })
    db.events.on('update', (entry: LogEntry<T>) => {
      this.views.delete(db.address)
      const key = entry.payload.key ?? ''
      for (const listener of this.listeners) listener({ kind, key, deleted: entry.payload.op === 'DEL' })
    })
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

  private async view<T> (db: KeyValueDatabase<T>): Promise<Map<string, T>> {
    let view = this.views.get(db.address)
    if (view === undefined) {
      view = db.all().then(entries => new Map(entries.map(entry => [entry.key, entry.value as unknown])))
      this.views.set(db.address, view)
      view.catch(() => this.views.delete(db.address))
    }
    return await view as Map<string, T>
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
    return [...(await this.view(this.tags)).values()]
  }

  async putNode (record: NodeRecord): Promise<void> {
    await this.nodes.put(record.id, record)
  }

  async allNodes (): Promise<NodeRecord[]> {
    return [...(await this.view(this.nodes)).values()]
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
    return [...(await this.view(this.strategies)).values()]
  }

  /** Directory for OrbitDB's own files under the node's data directory. */
  static directoryIn (dataDir: string): string {
    return join(dataDir, 'orbitdb')
  }
}

function tagKey (repository: string, tag: string): string {
  return `${repository}:${tag}`
}
