import { randomUUID } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import type { KeyValueDatabase, LogEntry } from '@orbitdb/core'
import type { Logger } from 'pino'
import { BASE_OP, KeyValueIndex, rankAfter, type BaseItem, type BasePayload, type Winner, type WriteFilter } from './kv-index.ts'

/**
 * A compaction starts once the current generation's log holds more than this many entries per
 * live key (and more than `compactEntries`). A snapshot costs about the live state's bytes in a
 * few entries, so compacting as soon as the log outgrows the live keys is cheap, and it keeps the
 * log, which a joining node fetches one entry per round trip, as short as the state allows.
 */
export const COMPACT_FACTOR = 1
/**
 * Deletes are kept in snapshots this many generations after their own, so a write from an
 * older generation carried over late cannot bring a deleted key back; writes from generations
 * older than that are not carried (see docs/architecture.md, "The catalogue (D6)").
 */
export const TOMBSTONE_GENERATIONS = 3
/** A snapshot or carry entry holds at most about this much JSON (each is one gossip message). */
const PART_BYTES = 128 * 1024

export interface GenerationSettings {
  /** Least number of log entries before a compaction. */
  compactEntries: number
  /** How long a superseded generation stays open for writes that raced the switch. */
  graceMs: number
  /** A node waits this long per writer ranked before it before it compacts itself. */
  staggerMs: number
}

/** What a generational database needs from the catalogue that holds it. */
export interface GenerationHost {
  /** Opens (creating if need be) the OrbitDB key-value database of that name. */
  open(name: string): Promise<KeyValueDatabase<unknown>>
  /** Frees what a dropped database held: its entries' pins and its own files. */
  release(address: string, hashes: string[]): Promise<void>
  /** Tells the fleet this node's current generations (a new one, or one just learnt). */
  announceGeneration(): void
  /** Notes the current generation and those on disk (so a restart opens them). */
  generationsChanged(): void
  /** Calls the catalogue's listeners. */
  changed(key: string, deleted: boolean): void
  /** This node's OrbitDB identity (the clock id of its writes). */
  writerId: string
  /** Which writes count (a fleet with an operator key); absent: all. */
  counts?: WriteFilter
  logger: Logger
}

interface Generation {
  generation: number
  db: KeyValueDatabase<unknown>
  index: KeyValueIndex<unknown>
  /** Entries OrbitDB reported that are being read back before the index takes them. */
  reading: Set<Promise<unknown>>
  /** This node's writes to it not yet answered (OrbitDB reports an entry only at its end). */
  writing: Set<Promise<unknown>>
  /** Heads peers sent that the access controller refused (writer not known yet), by hash: tried again when who is certified changes. */
  refused: Map<string, LogEntry<unknown>>
}

/** Refused heads kept per generation, at most (the oldest go first). */
const MAX_REFUSED = 256

/**
 * One of the catalogue's key-value databases, kept as a sequence of OrbitDB logs (generations)
 * so that its storage follows its live state. Generation 0 is the database's plain name; each
 * later one starts with a snapshot of the state before it. Reads see every open generation at
 * once, each key's value taken from its latest write in the catalogue's order (`Rank`).
 */
export class GenerationalDatabase {
  readonly name: string
  private readonly host: GenerationHost
  private readonly settings: GenerationSettings
  private readonly generations = new Map<number, Generation>()
  private currentGeneration = 0
  /** When this node learnt of the current generation (a superseded one's grace starts then). */
  private switchedAt = Date.now()
  /** Structural work (opening, compacting, carrying, dropping) runs one step at a time. */
  private work: Promise<unknown> = Promise.resolve()
  private tickTimer: NodeJS.Timeout | undefined
  private tickAt = 0
  private compactTimer: NodeJS.Timeout | undefined
  private stopped = false

  constructor (name: string, host: GenerationHost, settings: GenerationSettings) {
    this.name = name
    this.host = host
    this.settings = settings
  }

  /** Opens the generations on disk and the current one; drops those too old to be of use. */
  async start (onDisk: number[], current: number): Promise<void> {
    this.currentGeneration = current
    for (const generation of [...new Set([...onDisk, current])].sort((a, b) => a - b)) {
      // Above the current one: a compaction that stopped before its switch.
      const useless = generation > current || generation < current - TOMBSTONE_GENERATIONS
      await this.openGeneration(generation)
      if (useless) await this.drop(generation)
    }
    this.host.generationsChanged()
    this.scheduleTick(0)
  }

  stop (): Promise<unknown> {
    this.stopped = true
    clearTimeout(this.tickTimer)
    clearTimeout(this.compactTimer)
    return this.work
  }

  get current (): number {
    return this.currentGeneration
  }

  /** Generations open on this node, oldest first. */
  openGenerations (): number[] {
    return [...this.generations.keys()].sort((a, b) => a - b)
  }

  /** The current generation's database (where writes go). */
  get db (): KeyValueDatabase<unknown> {
    const top = this.generations.get(this.currentGeneration)
    if (top === undefined) throw new Error('the catalogue is not started')
    return top.db
  }

  /** Every open database, for the heads' announcements. */
  databases (): Array<KeyValueDatabase<unknown>> {
    return [...this.generations.values()].map(generation => generation.db)
  }

  /** Entries in the current generation's log. */
  get logSize (): number {
    return this.generations.get(this.currentGeneration)?.index.size ?? 0
  }

  async put (key: string, value: unknown): Promise<void> {
    await this.write(async db => await db.put(key, value))
  }

  async del (key: string): Promise<void> {
    await this.write(async db => await db.del(key))
  }

  /**
   * A write to the current generation, tracked until OrbitDB answers it: one that began just
   * before a switch lands in the superseded generation, and a carry that did not wait for it
   * lost it when that generation was dropped (seen with no grace: a tag read back an older
   * digest).
   */
  private async write (operation: (db: KeyValueDatabase<unknown>) => Promise<unknown>): Promise<void> {
    const top = this.generations.get(this.currentGeneration)
    if (top === undefined) throw new Error('the catalogue is not started')
    const written = operation(top.db)
    top.writing.add(written)
    try {
      await written
    } finally {
      top.writing.delete(written)
    }
  }

  /** Waits until every entry seen so far is indexed. */
  async settled (): Promise<void> {
    for (const { index, reading } of this.generations.values()) {
      await Promise.allSettled([...reading])
      await index.settled()
    }
  }

  get (key: string): unknown {
    const winner = this.winner(key)
    return winner === undefined || winner.deleted ? undefined : winner.value
  }

  /** Every live key with its value and the write it comes from. */
  entries (): Array<[string, Winner]> {
    return [...this.merged()].filter(([, winner]) => !winner.deleted)
  }

  /** A key's latest write over every open generation (at least `above`, when given). */
  private winner (key: string, above = -1): Winner | undefined {
    let best: Winner | undefined
    for (const { generation, index } of this.generations.values()) {
      if (generation <= above) continue
      const candidate = index.winner(key)
      if (candidate !== undefined && (best === undefined || rankAfter(candidate.rank, best.rank))) best = candidate
    }
    return best
  }

  private merged (): ReadonlyMap<string, Winner> {
    const open = [...this.generations.values()]
    if (open.length === 1) return open[0]!.index.allWinners()
    const merged = new Map<string, Winner>()
    for (const { index } of open) {
      for (const [key, candidate] of index.allWinners()) {
        const best = merged.get(key)
        if (best === undefined || rankAfter(candidate.rank, best.rank)) merged.set(key, candidate)
      }
    }
    return merged
  }

  /**
   * Indexes every open generation again, from its log: which writes count changed (a member
   * admitted or revoked). Listeners hear of each key whose state changed.
   */
  recount (): Promise<void> {
    return this.serially(async () => {
      if (this.stopped) return
      await this.settled()
      const before = new Map([...this.merged()].map(([key, winner]) => [key, winner]))
      for (const opened of this.generations.values()) {
        const index = new KeyValueIndex<unknown>(opened.db.log, opened.generation, this.host.counts)
        await index.load()
        opened.index = index
        // An entry that arrived during the load went to the index it replaced.
        for (const head of await opened.db.log.heads()) await index.add(head)
      }
      const after = this.merged()
      for (const key of new Set([...before.keys(), ...after.keys()])) {
        const was = before.get(key)
        const now = after.get(key)
        if (was?.hash === now?.hash && was?.deleted === now?.deleted) continue
        this.host.changed(key, now === undefined || now.deleted)
      }
    })
  }

  /** Joins the heads refused so far again (who may write changed); those still refused are kept. */
  async retryRefused (): Promise<void> {
    for (const opened of this.generations.values()) {
      const parked = [...opened.refused.values()]
      opened.refused.clear()
      for (const entry of parked) {
        if (this.stopped || this.generations.get(opened.generation) !== opened) return
        try {
          if (await opened.db.log.joinEntry(entry)) this.take(opened, entry)
        } catch (err) {
          opened.refused.set(entry.hash, entry)
          this.host.logger.debug({ err, db: this.name }, 'a refused catalogue entry is still refused')
        }
      }
    }
  }

  /** Another node announced `generation` as current: write there from now on. */
  advance (generation: number): Promise<void> {
    return this.serially(async () => {
      if (this.stopped || generation <= this.currentGeneration) return
      await this.openGeneration(generation)
      this.switchTo(generation)
      this.host.logger.info({ db: this.name, generation }, 'catalogue generation advanced')
    })
  }

  /**
   * Writes the current state as the snapshot of a new generation and records that generation as
   * current. Harmless when another node does the same at once: both snapshots land in the same
   * log, and every item keeps the rank of the write it comes from.
   */
  compact (): Promise<void> {
    return this.serially(async () => {
      const from = this.currentGeneration
      if (this.stopped || this.generations.size !== 1) return
      const next = from + 1
      const started = Date.now()
      await this.settled()
      const entries = this.logSize
      const items = this.snapshotItems(next)
      const target = await this.openGeneration(next)
      // Listed on disk at once: if the node stops before the switch, its next start drops it.
      this.host.generationsChanged()
      const parts = await this.writeSnapshot(target, items)
      // Announced only once the snapshot is written: a node that hears of it finds it there.
      this.switchTo(next)
      this.host.logger.info({ db: this.name, generation: next, entries, keys: items.length, parts, ms: Date.now() - started }, 'catalogue compacted')
    })
  }

  /**
   * Makes `generation` the one written to and tells the fleet. A compaction turn waiting for the
   * generation before is void: it used to stay pending, so no other turn was taken, and when it
   * came it saw the switch and gave up; a log that grew meanwhile with no write after it was
   * never compacted again.
   */
  private switchTo (generation: number): void {
    this.currentGeneration = generation
    this.switchedAt = Date.now()
    clearTimeout(this.compactTimer)
    this.compactTimer = undefined
    this.host.generationsChanged()
    this.host.announceGeneration()
    this.scheduleTick(0)
  }

  /** The state as a snapshot for `generation`: every key, deletes only while they are recent. */
  private snapshotItems (generation: number): BaseItem[] {
    return [...this.merged()]
      .filter(([, winner]) => !winner.deleted || winner.rank.generation >= generation - TOMBSTONE_GENERATIONS)
      .map(([key, winner]) => itemOf(key, winner))
  }

  /** Appends `items` to `target` as one snapshot; answers its number of parts. */
  private async writeSnapshot (target: Generation, items: BaseItem[]): Promise<number> {
    const parts = partsOf(items)
    const id = randomUUID()
    for (const [part, partItems] of parts.entries()) {
      await this.append(target, { snapshot: { id, part, parts: parts.length }, items: partItems })
    }
    return parts.length
  }

  /**
   * Looks again at what to carry, drop or compact within `delayMs`. Updates coalesce into the
   * look already due (never postponing it: under a steady stream of writes a look pushed back at
   * every write would never come).
   */
  private scheduleTick (delayMs: number): void {
    if (this.stopped) return
    const at = Date.now() + delayMs
    if (this.tickTimer !== undefined && this.tickAt <= at) return
    clearTimeout(this.tickTimer)
    this.tickAt = at
    this.tickTimer = setTimeout(() => {
      this.tickTimer = undefined
      void this.serially(async () => { await this.settle() }).catch((err: unknown) => {
        this.host.logger.warn({ err, db: this.name }, 'catalogue generation upkeep failed')
      }).then(() => { this.considerCompaction() })
    }, delayMs).unref()
  }

  /**
   * For each superseded generation: once the current one's snapshot is here, carries over the
   * writes it lacks (this node's own at once, everyone's at the end of the grace), then drops
   * the old generation.
   */
  private async settle (): Promise<void> {
    const current = this.currentGeneration
    const top = this.generations.get(current)
    if (top === undefined || this.stopped) return
    const older = this.openGenerations().filter(generation => generation < current)
    if (older.length === 0) return
    if (current > 0 && !top.index.hasSnapshot) {
      // The snapshot's parts are still on their way; if none came within the grace (its writer
      // stopped before anyone fetched them), this node writes its own from what it holds: items
      // keep their ranks, so a second snapshot merges with any other.
      const waited = Date.now() - this.switchedAt
      if (waited < this.settings.graceMs) {
        this.scheduleTick(this.settings.graceMs - waited)
        return
      }
      const parts = await this.writeSnapshot(top, this.snapshotItems(current))
      this.host.logger.warn({ db: this.name, generation: current, parts }, 'no snapshot of the current catalogue generation arrived: wrote one')
    }
    for (const generation of older) await Promise.allSettled([...this.generations.get(generation)?.writing ?? []])
    await this.settled()
    const graceOver = Date.now() - this.switchedAt >= this.settings.graceMs
    for (const generation of older) {
      const old = this.generations.get(generation)
      if (old === undefined) continue
      const carried: BaseItem[] = []
      for (const [key, winner] of old.index.allWinners()) {
        if (!graceOver && winner.rank.id !== this.host.writerId) continue
        if (winner.rank.generation < current - TOMBSTONE_GENERATIONS) continue
        const above = this.winner(key, generation)
        if (above === undefined || rankAfter(winner.rank, above.rank)) carried.push(itemOf(key, winner))
      }
      for (const items of partsOf(carried)) if (items.length > 0) await this.append(top, { items })
      if (carried.length > 0) this.host.logger.info({ db: this.name, from: generation, to: current, keys: carried.length }, 'catalogue writes carried over')
      if (graceOver) await this.drop(generation)
    }
    if (!graceOver) this.scheduleTick(Math.max(0, this.switchedAt + this.settings.graceMs - Date.now()))
  }

  /** Starts a compaction when the log is mostly history; nodes ranked after the first wait their turn. */
  private considerCompaction (): void {
    if (this.stopped || this.compactTimer !== undefined || !this.due()) return
    const top = this.generations.get(this.currentGeneration)
    const writers = (top?.index.writers() ?? []).sort()
    const rank = writers.includes(this.host.writerId) ? writers.indexOf(this.host.writerId) : writers.length
    const from = this.currentGeneration
    this.compactTimer = setTimeout(() => {
      this.compactTimer = undefined
      if (from !== this.currentGeneration || !this.due()) return
      this.compact().catch((err: unknown) => { this.host.logger.warn({ err, db: this.name }, 'catalogue compaction failed') })
    }, rank * this.settings.staggerMs).unref()
  }

  private due (): boolean {
    const top = this.generations.get(this.currentGeneration)
    if (top === undefined || this.generations.size !== 1) return false
    if (this.currentGeneration > 0 && !top.index.hasSnapshot) return false
    const live = this.entries().length
    return top.index.size > Math.max(this.settings.compactEntries, COMPACT_FACTOR * live)
  }

  private async openGeneration (generation: number): Promise<Generation> {
    const existing = this.generations.get(generation)
    if (existing !== undefined) return existing
    const db = await this.host.open(generation === 0 ? this.name : `${this.name}.g${generation}`)
    const index = new KeyValueIndex<unknown>(db.log, generation, this.host.counts)
    const opened: Generation = { generation, db, index, reading: new Set(), writing: new Set(), refused: new Map() }
    // Sync errors are recovered by the catalogue's re-announced heads; a head refused for its
    // writer (a certificate still on its way) is kept to try again (`retryRefused`).
    db.events.on('error', (err: Error, entry?: LogEntry<unknown>) => {
      this.host.logger.debug({ err, db: this.name, generation }, 'catalogue sync error')
      if (entry === undefined || !/is not allowed to write/.test(err.message)) return
      opened.refused.set(entry.hash, entry)
      if (opened.refused.size > MAX_REFUSED) opened.refused.delete(opened.refused.keys().next().value as string)
    })
    db.events.on('update', (entry: LogEntry<unknown>) => { this.take(opened, entry) })
    const started = performance.now()
    await index.load()
    this.generations.set(generation, opened)
    this.host.logger.debug({ db: this.name, generation, address: db.address, entries: index.size, loadMs: Math.round(performance.now() - started) }, 'catalogue generation open')
    return opened
  }

  /**
   * Indexes an entry (read back as stored: dag-cbor sorts map keys, so a value reads the same on
   * the node that wrote it as on every other); listeners hear of it once the index has it.
   */
  private take (opened: Generation, entry: LogEntry<unknown>): void {
    // Tracked until indexed, so that `settled` waits for it: a read right after a write sees it,
    // and a compaction or a carry never works from an index that lacks an entry of its log.
    const indexed = opened.db.log.get(entry.hash).then(async stored => await opened.index.add(stored ?? entry))
    opened.reading.add(indexed)
    indexed.finally(() => opened.reading.delete(indexed)).catch(() => {})
    indexed.then(changes => {
      if (this.generations.get(opened.generation) !== opened) return
      if (entry.payload.op !== BASE_OP) {
        this.host.changed(entry.payload.key ?? '', entry.payload.op === 'DEL')
      } else {
        // A snapshot or carry tells of a change only where it shows a write not shown before.
        for (const { key, winner } of changes) {
          if (this.winner(key)?.hash !== winner.hash) continue
          const elsewhere = [...this.generations.values()].some(other => other !== opened && other.index.winner(key)?.hash === winner.hash)
          if (!elsewhere) this.host.changed(key, winner.deleted)
        }
      }
      if (this.generations.size > 1 || this.due()) this.scheduleTick(200)
    }, (err: unknown) => { this.host.logger.warn({ err, db: this.name }, 'could not index a catalogue entry') })
  }

  /** Appends a BASE entry to `target` and indexes it before going on. */
  private async append (target: Generation, payload: BasePayload): Promise<void> {
    const hash = await target.db.addOperation({ op: BASE_OP, key: null, value: payload })
    const stored = await target.db.log.get(hash)
    if (stored !== undefined) await target.index.add(stored)
  }

  /** Closes a generation and frees its storage: OrbitDB's own files and its entries' pins. */
  private async drop (generation: number): Promise<void> {
    const old = this.generations.get(generation)
    if (old === undefined) return
    // No more entries from peers while the log is cleared (OrbitDB would print their failures).
    await old.db.sync.stop()
    const hashes: string[] = []
    for await (const entry of old.db.log.traverse()) hashes.push(entry.hash)
    const address = old.db.address
    await old.db.drop()
    await old.db.close()
    await this.host.release(address, hashes)
    this.generations.delete(generation)
    this.host.generationsChanged()
    this.host.logger.info({ db: this.name, generation, entries: hashes.length }, 'catalogue generation dropped')
  }

  private async serially (step: () => Promise<void>): Promise<void> {
    const run = this.work.then(step)
    this.work = run.catch(() => {})
    await run
  }
}

function itemOf (key: string, winner: Winner): BaseItem {
  return { key, deleted: winner.deleted, value: winner.deleted ? null : winner.value, hash: winner.hash, generation: winner.rank.generation, time: winner.rank.time, id: winner.rank.id }
}

/** Items split into parts of about PART_BYTES each; at least one part. */
function partsOf (items: BaseItem[]): BaseItem[][] {
  const parts: BaseItem[][] = [[]]
  let bytes = 0
  for (const item of items) {
    const size = JSON.stringify(item).length
    if (bytes + size > PART_BYTES && parts.at(-1)!.length > 0) {
      parts.push([])
      bytes = 0
    }
    parts.at(-1)!.push(item)
    bytes += size
  }
  return parts
}
