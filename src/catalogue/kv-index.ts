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
}

interface Winner {
  clock: { id: string, time: number }
  deleted: boolean
  value: unknown
}

/**
 * A key-value view of an OrbitDB log kept up to date entry by entry. OrbitDB's plain KeyValue
 * answers every read by walking the whole log, and the catalogue's logs only grow (heartbeats);
 * this index walks each entry once. Its answer is KeyValue's: for each key, the entry that comes
 * last in the log's order (Lamport time, then the writer's clock id), so every node agrees.
 */
export class KeyValueIndex<T> {
  private readonly source: EntrySource
  private readonly known = new Set<string>()
  private readonly winners = new Map<string, Winner>()
  /** Index work runs one step at a time, in the order it was asked for. */
  private queue: Promise<unknown> = Promise.resolve()

  constructor (source: EntrySource) {
    this.source = source
  }

  /** Reads the whole log once (at start). */
  async load (): Promise<void> {
    await this.serially(async () => {
      for await (const entry of this.source.traverse()) this.take(entry)
    })
  }

  /**
   * Takes in `entry` and every entry behind it not seen yet: OrbitDB reports a joined branch by
   * its newest entry only.
   */
  async add (entry: IndexedEntry): Promise<void> {
    await this.serially(async () => {
      const pending = [entry]
      for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
        if (this.known.has(next.hash)) continue
        this.take(next)
        for (const hash of [...next.next, ...next.refs]) {
          if (this.known.has(hash)) continue
          const behind = await this.source.get(hash)
          if (behind !== undefined) pending.push(behind)
        }
      }
    })
  }

  get (key: string): T | undefined {
    const winner = this.winners.get(key)
    return winner === undefined || winner.deleted ? undefined : winner.value as T
  }

  entries (): Array<[string, T]> {
    return [...this.winners.entries()].filter(([, winner]) => !winner.deleted).map(([key, winner]) => [key, winner.value as T])
  }

  /** Waits for index work asked for so far. */
  async settled (): Promise<void> {
    await this.serially(async () => {})
  }

  private take (entry: IndexedEntry): void {
    this.known.add(entry.hash)
    const key = entry.payload.key
    if (key === undefined || key === null) return
    const current = this.winners.get(key)
    if (current !== undefined && !comesAfter(entry.clock, current.clock)) return
    this.winners.set(key, { clock: entry.clock, deleted: entry.payload.op === 'DEL', value: entry.payload.value })
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
