// The relay trees on their own: pure functions of what a node heard of the other pullers.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { describe, it } from 'node:test'
import { FINISHED_HOLDERS, RELAYS_PER_PULLER, rankProviders, ranksAbove, relayTrees, stripeOf, type PullerHeard } from '../../src/mesh/relay-tree.ts'

const ROOT = 'bafyroot'
const puller = (id: string, done = false): PullerHeard => ({ id, url: `http://${id}`, done })
const seeder = { id: 'seeder', url: 'http://seeder' }
const ids = (count: number): string[] => Array.from({ length: count }, (_, i) => `12D3KooWpeer${i}`)
/** A block digest of each stripe. */
const digests = Array.from({ length: 64 }, (_, i) => createHash('sha256').update(String(i)).digest())
const ofStripe = (stripe: number): Uint8Array => digests.find(d => stripeOf(d) === stripe) as Uint8Array

/** Each puller's parent in the tree of `digest`, as that puller computes it from the same view. */
function parents (pullers: string[], digest: Uint8Array, done = new Set<string>()): Map<string, string | undefined> {
  const trees = relayTrees(ROOT, pullers.map(id => puller(id, done.has(id))))
  return new Map(pullers.map(id => [id, rankProviders(id, trees, [seeder], digest).find(p => p.tier === 0)?.id]))
}

describe('relay trees', () => {
  it('give each puller one parent per block, ranked below it, with the holders after it', () => {
    const pullers = ids(50)
    const trees = relayTrees(ROOT, pullers.map(id => puller(id)))
    for (const digest of [ofStripe(0), ofStripe(1)]) {
      let tops = 0
      for (const id of pullers) {
        const ranked = rankProviders(id, trees, [seeder], digest)
        const relays = ranked.filter(p => p.tier === 0)
        assert.ok(relays.length <= 1)
        assert.deepEqual(ranked.filter(p => p.tier === 1).map(p => p.id), ['seeder'])
        if (relays.length === 0) tops++
        else assert.equal(ranksAbove(relays[0]?.id as string, id, ROOT, digest), true, 'a parent ranks below its child')
      }
      assert.equal(tops, 1, 'one puller per tree asks the seeders first')
    }
  })

  it('let no puller relay to more than RELAYS_PER_PULLER others in a tree, and most relay in one tree only', () => {
    const pullers = ids(200)
    const relaysIn = new Map<string, number>()
    for (const stripe of [0, 1]) {
      const children = new Map<string, number>()
      for (const parent of parents(pullers, ofStripe(stripe)).values()) {
        if (parent !== undefined) children.set(parent, (children.get(parent) ?? 0) + 1)
      }
      assert.ok(Math.max(...children.values()) <= RELAYS_PER_PULLER)
      for (const parent of children.keys()) relaysIn.set(parent, (relaysIn.get(parent) ?? 0) + 1)
    }
    const inBoth = [...relaysIn.values()].filter(count => count === 2).length
    assert.ok(inBoth <= 20, `${inBoth} of 200 pullers relay in both trees`)
  })

  it('are shallow: a block crosses about log2(N) relays', () => {
    const pullers = ids(1000)
    const parent = parents(pullers, ofStripe(0))
    let deepest = 0
    for (const id of pullers) {
      let depth = 0
      for (let at: string | undefined = id; at !== undefined; at = parent.get(at)) depth++
      deepest = Math.max(deepest, depth)
    }
    assert.ok(deepest <= 12, `depth ${deepest}`)
  })

  it('offer a few finished pullers as holders, never as relays above their place', () => {
    const pullers = ids(30)
    const done = new Set(pullers.slice(0, 10))
    const trees = relayTrees(ROOT, pullers.map(id => puller(id, done.has(id))))
    const ranked = rankProviders('12D3KooWlate', trees, [seeder], ofStripe(1))
    const holders = ranked.filter(p => p.tier === 1).map(p => p.id)
    assert.equal(holders[0], 'seeder')
    assert.equal(holders.length, 1 + FINISHED_HOLDERS)
    assert.ok(holders.slice(1).every(id => done.has(id)))
    assert.equal(new Set(ranked.map(p => p.id)).size, ranked.length, 'each provider once')
  })

  it('rank the same whether or not the view holds the asker itself', () => {
    const pullers = ids(40)
    const self = pullers[17] as string
    const withSelf = relayTrees(ROOT, pullers.map(id => puller(id)))
    const without = relayTrees(ROOT, pullers.filter(id => id !== self).map(id => puller(id)))
    for (const digest of digests.slice(0, 8)) assert.deepEqual(rankProviders(self, withSelf, [seeder], digest), rankProviders(self, without, [seeder], digest))
  })
})

describe('ranksAbove', () => {
  it('orders any two peers one way per block, so waits cannot form a cycle', () => {
    const [a, b] = ids(2) as [string, string]
    for (const digest of digests.slice(0, 8)) {
      assert.notEqual(ranksAbove(a, b, ROOT, digest), ranksAbove(b, a, ROOT, digest))
      assert.equal(ranksAbove(a, a, ROOT, digest), false)
    }
  })

  it('holds for pullers whose views differ: a parent computed from any view ranks below', () => {
    const pullers = ids(100)
    const digest = ofStripe(0)
    for (const view of [pullers.slice(0, 30), pullers.slice(20, 100), pullers.filter((_, i) => i % 3 === 0)]) {
      const trees = relayTrees(ROOT, view.map(id => puller(id)))
      for (const id of pullers) {
        const parent = rankProviders(id, trees, [], digest).find(p => p.tier === 0)
        if (parent !== undefined) assert.equal(ranksAbove(parent.id, id, ROOT, digest), true)
      }
    }
  })
})
