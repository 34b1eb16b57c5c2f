// Records of other nodes' names that this node has heard (a member's broadcast) or looked up (the
// DHT): each checked against its name before it is kept, the best one per name, in memory and
// bounded. Its own names are not here: they are in publications.ts.
import type { IpnsName } from './ipns-name.ts'
import { supersedes, verifyRecord, type RecordFacts } from './ipns-record.ts'

export type RecordSource = 'broadcast' | 'dht'

export interface CachedRecord {
  bytes: Uint8Array
  facts: RecordFacts
  source: RecordSource
  /** When this node got it: it is answered from here for the record's TTL after that. */
  receivedAt: number
}

// A few hundred bytes each: 4096 names cost about 2 MB at most.
const MAX_NAMES = 4096

export class RecordCache {
  private readonly records = new Map<string, CachedRecord>()
  /** Callers waiting for a record of a name to be kept (a resolver whose DHT lookup is still out). */
  private readonly waiting = new Map<string, Set<() => void>>()
  private readonly maxNames: number
  private readonly now: () => number

  constructor (options: { maxNames?: number, now?: () => number } = {}) {
    this.maxNames = options.maxNames ?? MAX_NAMES
    this.now = options.now ?? Date.now
  }

  /**
   * Keeps `bytes` for `name` if it is a valid record of that name and supersedes what is kept;
   * answers whether it was kept. Throws nothing: a bad record is simply not kept.
   */
  async offer (name: IpnsName, bytes: Uint8Array, source: RecordSource): Promise<boolean> {
    let facts: RecordFacts
    try {
      facts = await verifyRecord(name, bytes)
    } catch {
      return false
    }
    if (facts.validUntil.getTime() <= this.now()) return false
    const current = this.records.get(name.text)
    if (current !== undefined && !supersedes(name, bytes, current.bytes)) {
      // The same record heard again is still news: it restarts the TTL.
      if (Buffer.from(current.bytes).equals(Buffer.from(bytes))) current.receivedAt = this.now()
      return false
    }
    // Re-inserted at the end: the map's order is the order of use, the oldest dropped first.
    this.records.delete(name.text)
    this.records.set(name.text, { bytes, facts, source, receivedAt: this.now() })
    while (this.records.size > this.maxNames) {
      const oldest = this.records.keys().next().value
      if (oldest === undefined) break
      this.records.delete(oldest)
    }
    for (const wake of this.waiting.get(name.text) ?? []) wake()
    return true
  }

  /** Resolves when a record of `name` is next kept, or once `signal` aborts (the caller stopped waiting). */
  async kept (name: IpnsName, signal: AbortSignal): Promise<void> {
    await new Promise<void>(resolve => {
      if (signal.aborted) return
      const waiters = this.waiting.get(name.text) ?? new Set()
      this.waiting.set(name.text, waiters)
      const done = (): void => {
        waiters.delete(done)
        if (waiters.size === 0 && this.waiting.get(name.text) === waiters) this.waiting.delete(name.text)
        signal.removeEventListener('abort', done)
        resolve()
      }
      waiters.add(done)
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /**
   * The mesh was asked and has nothing newer: the record kept for `name`, if still valid, is good
   * for another TTL. Answers whether there is one.
   */
  confirm (name: IpnsName): boolean {
    const cached = this.get(name, { fresh: false })
    if (cached !== undefined) cached.receivedAt = this.now()
    return cached !== undefined
  }

  /** The record kept for `name` while it is valid; `fresh`: only within its TTL of its arrival. */
  get (name: IpnsName, { fresh }: { fresh: boolean }): CachedRecord | undefined {
    const cached = this.records.get(name.text)
    if (cached === undefined) return undefined
    const now = this.now()
    if (cached.facts.validUntil.getTime() <= now) {
      this.records.delete(name.text)
      return undefined
    }
    if (fresh && now - cached.receivedAt >= cached.facts.ttlMs) return undefined
    return cached
  }
}
