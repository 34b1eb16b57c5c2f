/** The parts of an OrbitDB log entry the index reads. */
export interface IndexedEntry {
  hash: string
  next: string[]
  refs: string[]
  clock: { id: string, time: number }
  payload: { op: string, key?: string | null, value?: unknown }
}

/** What the index needs of an OrbitDB log: one entry by hash, and the whole log once. */
export interface EntrySource {
  get(hash: string): Promise<IndexedEntry | undefined>
  traverse(): AsyncIterable<IndexedEntry>
  /** The log's heads: when given, a load reads the log from them many entries at a time. */
  heads?(): Promise<IndexedEntry[]>
}

/**
 * Whether a write counts (a fleet with an operator key: fleet-trust.ts): by its writer's clock
 * id, for `key` (undefined: a snapshot or carry entry itself) and whether it deletes.
 */
export type WriteFilter = (writer: string, key: string | undefined, deleted: boolean) => boolean

/** Entries read at once by a load from the heads. */
const LOAD_CONCURRENCY = 32

/**
 * Where a write stands in the catalogue's order: its log's generation, then its Lamport time in
 * that log, then its writer's clock id. Within one generation this is OrbitDB's LastWriteWins; a
 * later generation's ordinary write comes after everything an earlier generation holds.
 */
export interface Rank {
  generation: number
  time: number
  id: string
}

/**
 * One key's state carried into a later generation (a snapshot's or a carry's item): the write it
 * comes from keeps its own rank and hash. `value` is null for a delete (dag-cbor has no undefined).
 */
export interface BaseItem {
  key: string
  deleted: boolean
  value: unknown
  hash: string
  generation: number
  time: number
  id: string
}

/** Payload value of a BASE entry: a snapshot part (`snapshot` set) or writes carried over. */
export interface BasePayload {
  snapshot?: { id: string, part: number, parts: number }
  items: BaseItem[]
}

/** The op of entries that carry earlier generations' state; OrbitDB's KeyValue ignores it. */
export const BASE_OP = 'BASE'

/** A key's current state, and the write it comes from. */
export interface Winner {
  rank: Rank
  deleted: boolean
  value: unknown
  /** The log entry that made the write (in the generation it was first written to). */
  hash: string
}

/**
 * A key-value view of one OrbitDB log kept up to date entry by entry. OrbitDB's plain KeyValue
 * answers every read by walking the whole log; this index walks each entry once. Its answer is
 * KeyValue's: for each key, the write that comes last in the catalogue's order (`Rank`), so every
 * node agrees. Besides PUT and DEL it reads BASE entries: the items of a snapshot or a carry,
 * each ranked as the write it comes from.
 */
export class KeyValueIndex<T> {
  private readonly source: EntrySource
  readonly generation: number
  private readonly known = new Set<string>()
  private readonly winners = new Map<string, Winner>()
  /** Snapshot id -> the parts seen. */
  private readonly snapshotParts = new Map<string, { parts: number, seen: Set<number> }>()
  private snapshotDone = false
  /** Clock ids of the ordinary writes of this log. */
  private readonly writerIds = new Set<string>()
  /** Index work runs one step at a time, in the order it was asked for. */
  private queue: Promise<unknown> = Promise.resolve()

  private readonly counts: WriteFilter

  constructor (source: EntrySource, generation = 0, counts: WriteFilter = () => true) {
    this.source = source
    this.generation = generation
    this.counts = counts
  }

  /**
   * Reads the whole log once (at start). The answer does not depend on the order entries are
   * taken in, so the log is read from its heads back, LOAD_CONCURRENCY entries at a time, rather
   * than one by one in the log's order as OrbitDB's traverse does.
   */
  async load (): Promise<void> {
    await this.serially(async () => {
      if (this.source.heads === undefined) {
        for await (const entry of this.source.traverse()) this.take(entry, [])
        return
      }
      const seen = new Set<string>()
      const frontier: string[] = []
      const visit = (entry: IndexedEntry): void => {
        this.take(entry, [])
        for (const hash of [...entry.next, ...entry.refs]) {
          if (!seen.has(hash)) {
            seen.add(hash)
            frontier.push(hash)
          }
        }
      }
      for (const head of await this.source.heads()) {
        seen.add(head.hash)
        visit(head)
      }
      while (frontier.length > 0) {
        const batch = frontier.splice(0, LOAD_CONCURRENCY)
        for (const entry of await Promise.all(batch.map(async hash => await this.source.get(hash)))) {
          if (entry !== undefined) visit(entry)
        }
      }
    })
  }

  /**
   * Takes in `entry` and every entry behind it not seen yet (OrbitDB reports a joined branch by
   * its newest entry only); answers the keys whose winner changed.
   */
  async add (entry: IndexedEntry): Promise<Array<{ key: string, winner: Winner }>> {
    const changed: Array<{ key: string, winner: Winner }> = []
    await this.serially(async () => {
      const pending = [entry]
      for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
        if (this.known.has(next.hash)) continue
        this.take(next, changed)
        for (const hash of [...next.next, ...next.refs]) {
          if (this.known.has(hash)) continue
          const behind = await this.source.get(hash)
          if (behind !== undefined) pending.push(behind)
        }
      }
    })
    return changed
  }

  get (key: string): T | undefined {
    const winner = this.winners.get(key)
    return winner === undefined || winner.deleted ? undefined : winner.value as T
  }

  entries (): Array<[string, T]> {
    return [...this.winners.entries()].filter(([, winner]) => !winner.deleted).map(([key, winner]) => [key, winner.value as T])
  }

  /** Every key's winner, deletes included. */
  allWinners (): ReadonlyMap<string, Winner> {
    return this.winners
  }

  winner (key: string): Winner | undefined {
    return this.winners.get(key)
  }

  /** Entries of the log seen so far. */
  get size (): number {
    return this.known.size
  }

  /** Whether every part of some snapshot written into this log has been seen. */
  get hasSnapshot (): boolean {
    return this.snapshotDone
  }

  /** Clock ids of the writers of ordinary entries (PUT, DEL) of this log. */
  writers (): string[] {
    return [...this.writerIds]
  }

  /** Waits for index work asked for so far. */
  async settled (): Promise<void> {
    await this.serially(async () => {})
  }

  private take (entry: IndexedEntry, changed: Array<{ key: string, winner: Winner }>): void {
    this.known.add(entry.hash)
    const { op, key, value } = entry.payload
    if (op === BASE_OP) {
      if (!this.counts(entry.clock.id, undefined, false)) return
      const base = value as BasePayload
      for (const item of base.items) {
        if (!this.counts(item.id, item.key, item.deleted)) continue
        this.offer(item.key, { rank: { generation: item.generation, time: item.time, id: item.id }, deleted: item.deleted, value: item.value, hash: item.hash }, changed)
      }
      if (base.snapshot !== undefined) this.sawPart(`${entry.clock.id}/${base.snapshot.id}`, base.snapshot.part, base.snapshot.parts)
      return
    }
    if (key === undefined || key === null || !this.counts(entry.clock.id, key, op === 'DEL')) return
    this.writerIds.add(entry.clock.id)
    this.offer(key, { rank: { generation: this.generation, time: entry.clock.time, id: entry.clock.id }, deleted: op === 'DEL', value, hash: entry.hash }, changed)
  }

  private offer (key: string, candidate: Winner, changed: Array<{ key: string, winner: Winner }>): void {
    const current = this.winners.get(key)
    if (current !== undefined && !rankAfter(candidate.rank, current.rank)) return
    this.winners.set(key, candidate)
    changed.push({ key, winner: candidate })
  }

  private sawPart (snapshot: string, part: number, parts: number): void {
    const seen = this.snapshotParts.get(snapshot) ?? { parts, seen: new Set<number>() }
    seen.seen.add(part)
    this.snapshotParts.set(snapshot, seen)
    if (seen.seen.size >= seen.parts) this.snapshotDone = true
  }

  private async serially (work: () => Promise<void>): Promise<void> {
    const run = this.queue.then(work)
    this.queue = run.catch(() => {})
    await run
  }
}

/** OrbitDB's LastWriteWins order: the later Lamport time, then the greater clock id. */
export function comesAfter (a: { id: string, time: number }, b: { id: string, time: number }): boolean {
  if (a.time !== b.time) return a.time > b.time
  return a.id > b.id
}

/** The catalogue's order: the later generation, then OrbitDB's order within it. */
export function rankAfter (a: Rank, b: Rank): boolean {
  if (a.generation !== b.generation) return a.generation > b.generation
  return comesAfter(a, b)
}
