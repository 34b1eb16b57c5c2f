// The incremental key-value index gives OrbitDB KeyValue's answer however entries arrive.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { BASE_OP, KeyValueIndex, comesAfter, rankAfter, type BaseItem, type EntrySource, type IndexedEntry } from '../../src/catalogue/kv-index.ts'
import { seededRandom } from '../support/random.ts'


/** Several writers appending to their own view of a log and merging now and then, like OrbitDB. */
function randomLog (seed: number, count: number): IndexedEntry[] {
  const next = seededRandom(seed)
  const writers = ['writer-a', 'writer-b', 'writer-c']
  const heads = new Map(writers.map(w => [w, [] as IndexedEntry[]]))
  const all: IndexedEntry[] = []
  for (let i = 0; i < count; i++) {
    const writer = writers[Math.floor(next() * writers.length)]!
    let known = heads.get(writer)!
    if (next() < 0.3) {
      // merge another writer's heads
      const other = heads.get(writers[Math.floor(next() * writers.length)]!)!
      known = [...new Map([...known, ...other].map(e => [e.hash, e])).values()]
    }
    const time = Math.max(0, ...known.map(e => e.clock.time)) + 1
    const key = `k${Math.floor(next() * 5)}`
    const entry: IndexedEntry = {
      hash: `h${i}`,
      next: known.map(e => e.hash),
      refs: all.length > 3 && next() < 0.5 ? [all[Math.floor(next() * all.length)]!.hash] : [],
      clock: { id: writer, time },
      payload: next() < 0.2 ? { op: 'DEL', key, value: null } : { op: 'PUT', key, value: i }
    }
    all.push(entry)
    heads.set(writer, [entry])
  }
  return all
}

function expected (entries: IndexedEntry[]): Map<string, unknown> {
  const best = new Map<string, IndexedEntry>()
  for (const entry of entries) {
    const key = entry.payload.key as string
    const current = best.get(key)
    if (current === undefined || comesAfter(entry.clock, current.clock)) best.set(key, entry)
  }
  return new Map([...best].filter(([, e]) => e.payload.op === 'PUT').map(([key, e]) => [key, e.payload.value]))
}

function sourceOf (entries: IndexedEntry[], present: Set<string>): EntrySource {
  const byHash = new Map(entries.map(e => [e.hash, e]))
  return {
    get: async hash => (present.has(hash) ? byHash.get(hash) : undefined),
    async * traverse () { for (const e of entries) if (present.has(e.hash)) yield e }
  }
}

describe('KeyValueIndex', () => {
  it('built from the whole log, answers as the last writer by Lamport time, then clock id', async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const entries = randomLog(seed, 60)
      const index = new KeyValueIndex<number>(sourceOf(entries, new Set(entries.map(e => e.hash))))
      await index.load()
      assert.deepEqual(new Map(index.entries()), expected(entries), `seed ${seed}`)
    }
  })

  it('loaded from the heads back, many entries at a time, gives the same answer', async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const entries = randomLog(seed, 60)
      const behind = new Set(entries.flatMap(e => [...e.next, ...e.refs]))
      const source = { ...sourceOf(entries, new Set(entries.map(e => e.hash))), heads: async () => entries.filter(e => !behind.has(e.hash)) }
      const index = new KeyValueIndex<number>(source)
      await index.load()
      assert.deepEqual(new Map(index.entries()), expected(entries), `seed ${seed}`)
      assert.equal(index.size, entries.length, 'every entry read')
    }
  })

  it('fed only the newest entry of each joined branch, reaches the same answer in any order', async () => {
    for (let seed = 1; seed <= 50; seed++) {
      const entries = randomLog(seed, 60)
      const next = seededRandom(seed * 7)
      const present = new Set<string>()
      const index = new KeyValueIndex<number>(sourceOf(entries, present))
      await index.load()
      // Entries join in random batches; the index hears of each batch through one of its entries
      // that every other entry of the batch is behind (as OrbitDB's joinEntry reports).
      const order = entries.map(e => e.hash)
      let cursor = 0
      while (cursor < order.length) {
        const size = 1 + Math.floor(next() * 6)
        const batch = order.slice(cursor, cursor + size)
        cursor += size
        for (const hash of batch) present.add(hash)
        const newest = entries.find(e => e.hash === batch[batch.length - 1])!
        await index.add(newest)
        // entries of the batch the newest one does not reach are reported on their own
        for (const hash of batch) await index.add(entries.find(e => e.hash === hash)!)
      }
      assert.deepEqual(new Map(index.entries()), expected(entries), `seed ${seed}`)
      assert.equal(index.get('nope'), undefined)
    }
  })

  it('a delete hides the key until a later put', async () => {
    const entry = (hash: string, time: number, op: string, value: unknown, next: string[] = []): IndexedEntry =>
      ({ hash, next, refs: [], clock: { id: 'w', time }, payload: { op, key: 'k', value } })
    const entries = [entry('a', 1, 'PUT', 1), entry('b', 2, 'DEL', null, ['a']), entry('c', 3, 'PUT', 3, ['b'])]
    const present = new Set<string>(['a', 'b'])
    const index = new KeyValueIndex<number>(sourceOf(entries, present))
    await index.load()
    assert.equal(index.get('k'), undefined)
    present.add('c')
    await index.add(entries[2]!)
    assert.equal(index.get('k'), 3)
  })

  it('ranks a later generation\'s write above any earlier one, and a snapshot item as the write it comes from', async () => {
    const put = (hash: string, time: number, id: string, value: unknown): IndexedEntry =>
      ({ hash, next: [], refs: [], clock: { id, time }, payload: { op: 'PUT', key: 'k', value } })
    const item = (hash: string, generation: number, time: number, id: string, value: unknown): BaseItem =>
      ({ key: 'k', deleted: false, value, hash, generation, time, id })
    // Generation 2 holds a snapshot item from generation 1 (time 50) and a carried write from
    // generation 1 (time 60): the carried one is later in generation 1's order.
    const base: IndexedEntry = { hash: 's', next: [], refs: [], clock: { id: 'z', time: 1 }, payload: { op: BASE_OP, key: null, value: { snapshot: { id: 'x', part: 0, parts: 1 }, items: [item('h50', 1, 50, 'a', 'old')] } } }
    const carry: IndexedEntry = { hash: 'c', next: ['s'], refs: [], clock: { id: 'z', time: 2 }, payload: { op: BASE_OP, key: null, value: { items: [item('h60', 1, 60, 'a', 'carried')] } } }
    const index = new KeyValueIndex<string>(sourceOf([base, carry], new Set(['s', 'c'])), 2)
    await index.load()
    assert.equal(index.get('k'), 'carried')
    assert.ok(index.hasSnapshot)
    // An ordinary write in generation 2, even at Lamport time 1, comes after both.
    await index.add(put('p', 1, 'a', 'new'))
    assert.equal(index.get('k'), 'new')
    assert.ok(rankAfter({ generation: 2, time: 1, id: 'a' }, { generation: 1, time: 99, id: 'z' }))
  })
})

describe('KeyValueIndex with a write filter', () => {
  it('answers as if the writes that do not count were not in the log, snapshot items included', async () => {
    for (let seed = 1; seed <= 20; seed++) {
      const entries = randomLog(seed, 60)
      const counts = (writer: string): boolean => writer !== 'writer-b'
      const index = new KeyValueIndex<number>(sourceOf(entries, new Set(entries.map(e => e.hash))), 0, counts)
      await index.load()
      assert.deepEqual(new Map(index.entries()), expected(entries.filter(e => e.clock.id !== 'writer-b')), `seed ${seed}`)
    }
    const item = (key: string, id: string): BaseItem => ({ key, deleted: false, value: id, hash: `from-${id}`, generation: 0, time: 1, id })
    const base = (hash: string, writer: string, items: BaseItem[]): IndexedEntry => ({ hash, next: [], refs: [], clock: { id: writer, time: 1 }, payload: { op: BASE_OP, key: null, value: { items } } })
    const log = [base('s1', 'writer-a', [item('x', 'writer-a'), item('y', 'writer-b')]), base('s2', 'writer-b', [item('z', 'writer-a')])]
    const index = new KeyValueIndex<string>(sourceOf(log, new Set(log.map(e => e.hash))), 1, writer => writer !== 'writer-b')
    await index.load()
    assert.deepEqual(Object.fromEntries(index.entries()), { x: 'writer-a' }, 'an item of a writer that does not count, and every item of a snapshot it wrote, are left out')
  })
})
