// The rules of membership, on a clock the test moves: busy is not gone, gone waits for the grace,
// and a node that keeps leaving waits longer each time before it counts again.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Liveness } from '../../src/mesh/liveness.ts'

const SECOND = 1000

function setUp (): { liveness: Liveness, advance: (ms: number) => { departed: string[], returned: string[] } } {
  let now = 1_000_000
  const liveness = new Liveness({ intervalMs: 10 * SECOND, goneAfterMs: 60 * SECOND, maxRejoinMs: 8 * 60 * SECOND, now: () => now })
  return {
    liveness,
    // Moves the clock a second at a time, as the membership's tick would look at it.
    advance: (ms: number) => {
      const changes = { departed: [] as string[], returned: [] as string[] }
      for (let step = 0; step < ms; step += SECOND) {
        now += Math.min(SECOND, ms - step)
        const { departed, returned } = liveness.update()
        changes.departed.push(...departed)
        changes.returned.push(...returned)
      }
      return changes
    }
  }
}

describe('liveness', () => {
  it('a newcomer counts at once; silent after three intervals, still a member; gone after the grace', () => {
    const { liveness, advance } = setUp()
    liveness.heard('a')
    assert.equal(liveness.standing('a'), 'live')
    assert.equal(liveness.isMember('a'), true)
    advance(31 * SECOND)
    assert.equal(liveness.standing('a'), 'silent')
    assert.equal(liveness.isMember('a'), true)
    assert.deepEqual(advance(28 * SECOND).departed, [])
    assert.deepEqual(advance(2 * SECOND).departed, ['a'])
    assert.equal(liveness.standing('a'), 'gone')
    assert.ok((liveness.goneFor('a') ?? 0) >= SECOND)
  })

  it('a busy node that answers now and then, 50 s apart, is never gone', () => {
    const { liveness, advance } = setUp()
    liveness.heard('busy')
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(advance(50 * SECOND).departed, [], `round ${i}`)
      liveness.heard('busy')
    }
    assert.equal(liveness.isMember('busy'), true)
  })

  it('a node known from the catalogue but not heard since this node started gets the grace from the start', () => {
    const { liveness, advance } = setUp()
    liveness.known('old')
    assert.equal(liveness.isMember('old'), true)
    assert.deepEqual(advance(59 * SECOND).departed, [])
    assert.deepEqual(advance(2 * SECOND).departed, ['old'])
  })

  it('a gone node counts again only after steady life for the grace, doubled for each departure', () => {
    const { liveness, advance } = setUp()
    liveness.heard('flappy')
    advance(61 * SECOND)
    assert.equal(liveness.standing('flappy'), 'gone')
    // Back, heard every interval: a member again after 60 s of steady life, not before.
    const back = (seconds: number): string[] => {
      const returned: string[] = []
      for (let t = 0; t < seconds; t += 10) {
        liveness.heard('flappy')
        returned.push(...advance(10 * SECOND).returned)
        if (returned.length > 0) return [String(t + 10)]
      }
      return returned
    }
    assert.deepEqual(back(120), ['60'])
    assert.equal(liveness.isMember('flappy'), true)
    // Leaves again: now it must be steady for twice the grace.
    advance(61 * SECOND)
    assert.equal(liveness.isMember('flappy'), false)
    assert.deepEqual(back(300), ['120'])
    // A silent gap while it is coming back starts its wait over.
    advance(61 * SECOND)
    liveness.heard('flappy')
    advance(100 * SECOND)
    liveness.heard('flappy')
    assert.equal(liveness.isMember('flappy'), false)
    assert.deepEqual(back(600), ['240'])
  })

  it('forgets a node', () => {
    const { liveness } = setUp()
    liveness.heard('x')
    liveness.forget('x')
    assert.equal(liveness.standing('x'), undefined)
    assert.equal(liveness.isMember('x'), false)
  })
})
