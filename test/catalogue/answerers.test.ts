// Who answers a peer that connects or subscribes: a few members, the same set on every node.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { answerersOf } from '../../src/catalogue/catalogue.ts'

describe('answerersOf', () => {
  const members = ['p1', 'p3', 'p5', 'p7', 'p9']

  it('picks the members whose ids follow the peer\'s, wrapping around the ring', () => {
    assert.deepEqual(answerersOf('p4', members, 3), ['p5', 'p7', 'p9'])
    assert.deepEqual(answerersOf('p8', members, 3), ['p9', 'p1', 'p3'])
  })

  it('never picks the peer itself, and every member computes the same set', () => {
    assert.deepEqual(answerersOf('p5', members, 3), ['p7', 'p9', 'p1'])
    const shuffled = ['p9', 'p1', 'p7', 'p3', 'p5', 'p1']
    assert.deepEqual(answerersOf('p5', shuffled, 3), answerersOf('p5', members, 3))
  })

  it('gives everyone when the fleet is smaller than the count', () => {
    assert.deepEqual(answerersOf('p2', ['p1', 'p3'], 3), ['p3', 'p1'])
    assert.deepEqual(answerersOf('p2', ['p2'], 3), [])
  })

  it('spreads the answers: over many peers, each member answers about its share', () => {
    const fleet = Array.from({ length: 30 }, (_, i) => `node-${String(i).padStart(2, '0')}`)
    const answered = new Map<string, number>()
    for (const peer of fleet) for (const member of answerersOf(peer, fleet, 3)) answered.set(member, (answered.get(member) ?? 0) + 1)
    assert.deepEqual([...new Set(answered.values())], [3])
  })
})
