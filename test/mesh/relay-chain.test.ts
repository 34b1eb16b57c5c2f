// The relay ranking on its own: a pure function of what a node heard of the other pullers.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { RELAYS_PER_PULLER, rankProviders, ranksAbove, type PullerHeard } from '../../src/mesh/relay-chain.ts'

const puller = (id: string, done = false): PullerHeard => ({ id, url: `http://${id}`, done })
const seeder = (id: string): { id: string, url: string } => ({ id, url: `http://${id}` })

describe('rankProviders', () => {
  it('asks the pullers just below first, then the holders', () => {
    const ranked = rankProviders('m', [puller('a'), puller('k'), puller('l'), puller('z')], [seeder('s')])
    assert.deepEqual(ranked.map(p => [p.id, p.tier]), [['l', 0], ['k', 0], ['s', 1]])
    assert.equal(ranked.filter(p => p.tier === 0).length, RELAYS_PER_PULLER)
  })

  it('gives the bottom of the chain only the holders, finished pullers among them, each once', () => {
    const ranked = rankProviders('a', [puller('b'), puller('c', true), puller('s', true)], [seeder('s')])
    assert.deepEqual(ranked.map(p => [p.id, p.tier]), [['s', 1], ['c', 1]])
  })

  it('never asks a finished puller as a relay', () => {
    const ranked = rankProviders('m', [puller('l', true), puller('k')], [])
    assert.deepEqual(ranked.map(p => [p.id, p.tier]), [['k', 0], ['l', 1]])
  })
})

describe('ranksAbove', () => {
  it('orders peers one way only, so waits cannot form a cycle', () => {
    assert.equal(ranksAbove('m', 'z'), true)
    assert.equal(ranksAbove('z', 'm'), false)
    assert.equal(ranksAbove('m', 'm'), false)
  })
})
