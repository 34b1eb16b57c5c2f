import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { percentageCount, place, rendezvousScore, type Member } from '../../src/replication/placement.ts'
import type { LabelSelector, StrategySpec } from '../../src/replication/strategy.ts'
import { seededRandom } from '../support/random.ts'

class Random {
  readonly next: () => number
  constructor (seed: number) { this.next = seededRandom(seed) }
  int (min: number, max: number): number { return min + Math.floor(this.next() * (max - min + 1)) }
  pick<T> (items: readonly T[]): T {
    const item = items[this.int(0, items.length - 1)]
    assert.ok(item !== undefined)
    return item
  }

  shuffle<T> (items: readonly T[]): T[] {
    const copy = [...items]
    for (let i = copy.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      const a = copy[i] as T
      copy[i] = copy[j] as T
      copy[j] = a
    }
    return copy
  }

  peerId (): string {
    let id = '12D3KooW'
    for (let i = 0; i < 44; i++) id += BASE58.charAt(this.int(0, BASE58.length - 1))
    return id
  }

  image (): string {
    return this.pick([() => `app-${this.int(0, 1e6)}:v${this.int(0, 9)}`, () => `lib/busybox@sha256:${'0'.repeat(56)}${this.int(1e7, 9e7)}`, () => `bafybei${this.int(0, 1e9)}`])()
  }

  members (count: number): Member[] {
    return Array.from({ length: count }, (_, i) => {
      const labels: Record<string, string> = {}
      if (this.next() < 0.8) labels.zone = this.pick(['eu', 'us', 'ap'])
      if (this.next() < 0.5) labels.tier = this.pick(['edge', 'core'])
      return { id: this.peerId(), name: `node-${i}`, labels }
    })
  }
}

const CASES = 300
const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'

function ids (members: readonly Member[]): string[] {
  return members.map(member => member.id)
}

function assertRankOrder (image: string, placed: readonly string[]): void {
  const scores = placed.map(id => rendezvousScore(image, id))
  for (let i = 1; i < scores.length; i++) assert.ok((scores[i - 1] as bigint) > (scores[i] as bigint), 'placed nodes are in rank order')
}

function without<T> (items: readonly T[], item: T): T[] {
  return items.filter(other => other !== item)
}

describe('placement by rendezvous hashing', () => {
  it('places as many nodes as each kind asks, for 0 to 50 members', () => {
    const random = new Random(1)
    for (let n = 0; n <= 50; n++) {
      for (let round = 0; round < 10; round++) {
        const members = random.members(n)
        const image = random.image()
        const percentage = random.pick([1, 100, random.int(1, 100), random.int(100, 10000) / 100])
        const replicas = random.int(1, 60)
        const selector = random.pick<LabelSelector>([{ zone: 'eu' }, { tier: 'edge' }, { zone: 'us', tier: 'core' }])
        const matching = members.filter(member => Object.entries(selector).every(([key, value]) => member.labels?.[key] === value)).length
        const count = random.int(1, 60)
        const expected: Array<[StrategySpec, number]> = [
          [{ kind: 'all', image }, n],
          [{ kind: 'replicas', image, replicas }, Math.min(replicas, n)],
          [{ kind: 'percentage', image, percentage }, n === 0 ? 0 : Math.max(1, Math.ceil(percentage * n / 100))],
          [{ kind: 'target', image, target: n === 0 ? 'nobody' : random.pick(members).id }, n === 0 ? 0 : 1],
          [{ kind: 'target', image, target: 'no-such-node' }, 0],
          [{ kind: 'labels', image, selector }, matching],
          [{ kind: 'labels', image, selector, count }, Math.min(count, matching)]
        ]
        for (const [strategy, size] of expected) {
          const placed = place(strategy, members)
          const context = `${JSON.stringify(strategy)} over ${n} members`
          assert.equal(placed.length, size, context)
          assert.equal(new Set(placed).size, placed.length, `no node twice: ${context}`)
          assert.ok(placed.every(id => members.some(member => member.id === id)), `members only: ${context}`)
          assertRankOrder(image, placed)
        }
      }
    }
  })

  it('gives the same answer whatever order the members come in', () => {
    const random = new Random(2)
    for (let round = 0; round < CASES; round++) {
      const members = random.members(random.int(0, 50))
      const image = random.image()
      const strategies: StrategySpec[] = [
        { kind: 'all', image },
        { kind: 'replicas', image, replicas: random.int(1, 10) },
        { kind: 'percentage', image, percentage: random.int(1, 100) },
        { kind: 'labels', image, selector: { zone: 'eu' }, count: random.int(1, 5) }
      ]
      for (const strategy of strategies) {
        const expected = place(strategy, members)
        assert.deepEqual(place(strategy, random.shuffle(members)), expected)
        assert.deepEqual(place(strategy, [...members].reverse()), expected)
      }
    }
  })

  it('removing a member that holds nothing changes nothing', () => {
    const random = new Random(3)
    for (let round = 0; round < CASES; round++) {
      const members = random.members(random.int(2, 50))
      const image = random.image()
      const strategy: StrategySpec = { kind: 'replicas', image, replicas: random.int(1, members.length - 1) }
      const placed = place(strategy, members)
      const idle = members.filter(member => !placed.includes(member.id))
      const leaver = random.pick(idle)
      assert.deepEqual(place(strategy, without(members, leaver)), placed)
      const byLabel: StrategySpec = { kind: 'labels', image, selector: { zone: 'eu' }, count: 2 }
      const placedByLabel = place(byLabel, members)
      const idleForLabel = members.filter(member => !placedByLabel.includes(member.id))
      if (idleForLabel.length > 0) assert.deepEqual(place(byLabel, without(members, random.pick(idleForLabel))), placedByLabel)
    }
  })

  it('removing a member that holds the image moves only its copy', () => {
    const random = new Random(4)
    for (let round = 0; round < CASES; round++) {
      const members = random.members(random.int(2, 50))
      const image = random.image()
      const strategy: StrategySpec = { kind: 'replicas', image, replicas: random.int(1, members.length - 1) }
      const placed = place(strategy, members)
      const leaver = random.pick(placed)
      const after = place(strategy, members.filter(member => member.id !== leaver))
      assert.equal(after.length, placed.length)
      // The others keep their copies, in their order; one node takes the leaver's slot.
      assert.deepEqual(after.slice(0, -1), without(placed, leaver))
      const newcomer = after.at(-1) as string
      assert.ok(!placed.includes(newcomer))
    }
  })

  it('a joining member enters only by displacing one holder', () => {
    const random = new Random(5)
    let entered = 0
    for (let round = 0; round < CASES; round++) {
      const members = random.members(random.int(1, 50))
      const image = random.image()
      const strategy: StrategySpec = { kind: 'replicas', image, replicas: random.int(1, members.length) }
      const placed = place(strategy, members)
      const joiner: Member = { id: random.peerId(), name: 'joiner' }
      const after = place(strategy, random.shuffle([...members, joiner]))
      assert.equal(after.length, placed.length)
      const gone = placed.filter(id => !after.includes(id))
      const added = after.filter(id => !placed.includes(id))
      assert.ok(gone.length <= 1 && added.length === gone.length, `at most one change: ${JSON.stringify({ gone, added })}`)
      if (added.length === 1) {
        entered++
        assert.deepEqual(added, [joiner.id])
        assert.equal(gone[0], placed.at(-1), 'the lowest-ranked holder makes way')
      }
    }
    assert.ok(entered > 0, 'some joiners did enter')
  })

  it('spreads copies evenly: 1000 images, 2 replicas, 10 nodes', () => {
    const random = new Random(6)
    const members = random.members(10)
    const held = new Map(ids(members).map(id => [id, 0]))
    for (let i = 0; i < 1000; i++) {
      for (const id of place({ kind: 'replicas', image: `team/app-${i}:1.0`, replicas: 2 }, members)) held.set(id, (held.get(id) ?? 0) + 1)
    }
    const mean = 2000 / 10
    for (const [id, count] of held) assert.ok(Math.abs(count - mean) <= 0.3 * mean, `${id} holds ${count}, mean ${mean}`)
  })

  it('two strategies on one image overlap rather than double the copies', () => {
    const random = new Random(7)
    for (let round = 0; round < 50; round++) {
      const members = random.members(20)
      const image = random.image()
      const three = place({ kind: 'replicas', image, replicas: 3 }, members)
      const percentage = place({ kind: 'percentage', image, percentage: 10 }, members)
      assert.deepEqual(percentage, three.slice(0, 2))
    }
  })

  it('rounds percentages up, to at least one node', () => {
    assert.equal(percentageCount(40, 5), 2)
    assert.equal(percentageCount(50, 3), 2)
    assert.equal(percentageCount(1, 3), 1)
    assert.equal(percentageCount(100, 7), 7)
    assert.equal(percentageCount(20, 5), 1)
    assert.equal(percentageCount(21, 5), 2)
    assert.equal(percentageCount(50, 0), 0)
    const members = new Random(8).members(5)
    assert.equal(place({ kind: 'percentage', image: 'busybox:1.36', percentage: 40 }, members).length, 2)
    assert.equal(place({ kind: 'percentage', image: 'busybox:1.36', percentage: 50 }, members.slice(0, 3)).length, 2)
    assert.equal(place({ kind: 'percentage', image: 'busybox:1.36', percentage: 1 }, members.slice(0, 3)).length, 1)
    assert.deepEqual(place({ kind: 'percentage', image: 'busybox:1.36', percentage: 50 }, []), [])
  })

  it('finds a target by id or by name', () => {
    const members: Member[] = [{ id: 'peer-a', name: 'alpha' }, { id: 'peer-b', name: 'beta' }, { id: 'peer-c' }]
    const image = 'busybox:1.36'
    assert.deepEqual(place({ kind: 'target', image, target: 'peer-b' }, members), ['peer-b'])
    assert.deepEqual(place({ kind: 'target', image, target: 'alpha' }, members), ['peer-a'])
    assert.deepEqual(place({ kind: 'target', image, target: 'peer-c' }, members), ['peer-c'])
    assert.deepEqual(place({ kind: 'target', image, target: 'gamma' }, members), [])
    // An id wins over another node's name.
    assert.deepEqual(place({ kind: 'target', image, target: 'peer-a' }, [{ id: 'peer-x', name: 'peer-a' }, ...members]), ['peer-a'])
  })

  it('selects by labels, every node or the first count', () => {
    const members: Member[] = [
      { id: 'n1', labels: { zone: 'eu', tier: 'edge' } },
      { id: 'n2', labels: { zone: 'eu', tier: 'core' } },
      { id: 'n3', labels: { zone: 'us', tier: 'edge' } },
      { id: 'n4', labels: { zone: 'eu' } },
      { id: 'n5' }
    ]
    const image = 'web:2'
    const eu = place({ kind: 'labels', image, selector: { zone: 'eu' } }, members)
    assert.deepEqual([...eu].sort(), ['n1', 'n2', 'n4'])
    assertRankOrder(image, eu)
    assert.deepEqual(place({ kind: 'labels', image, selector: { zone: 'eu', tier: 'edge' } }, members), ['n1'])
    assert.deepEqual(place({ kind: 'labels', image, selector: { zone: 'eu' }, count: 2 }, members), eu.slice(0, 2))
    assert.deepEqual(place({ kind: 'labels', image, selector: { zone: 'eu' }, count: 9 }, members), eu)
    assert.deepEqual(place({ kind: 'labels', image, selector: { zone: 'ap' } }, members), [])
    // A label named like an Object.prototype member is not matched by inheritance.
    assert.deepEqual(place({ kind: 'labels', image, selector: { constructor: 'x' } }, members), [])
  })

  it('counts a duplicated member once', () => {
    const members: Member[] = [{ id: 'a' }, { id: 'b' }, { id: 'a', name: 'again' }]
    assert.deepEqual([...place({ kind: 'all', image: 'x:1' }, members)].sort(), ['a', 'b'])
    assert.equal(place({ kind: 'percentage', image: 'x:1', percentage: 100 }, members).length, 2)
    assert.deepEqual(place({ kind: 'target', image: 'x:1', target: 'again' }, members), place({ kind: 'target', image: 'x:1', target: 'again' }, [...members].reverse()))
  })
})
