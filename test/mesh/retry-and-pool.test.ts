// The fetcher's parts on their own: the one retry policy and the provider pool's slots.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { mayRetry, retryDelay, waitToRetry } from '../../src/retry-policy.ts'
import { ProviderPool } from '../../src/mesh/provider-pool.ts'

describe('RetryPolicy', () => {
  it('waits the same each time by default, or grows by its factor up to its cap', () => {
    const fixed = { tries: 4, delayMs: 500 }
    assert.deepEqual([1, 2, 3].map(retry => retryDelay(fixed, retry)), [500, 500, 500])
    const growing = { tries: Number.POSITIVE_INFINITY, delayMs: 5_000, factor: 2, maxDelayMs: 120_000 }
    assert.deepEqual([1, 2, 3, 5, 6, 10].map(retry => retryDelay(growing, retry)), [5_000, 10_000, 20_000, 80_000, 120_000, 120_000])
  })

  it('counts tries, the first included', () => {
    const policy = { tries: 2, delayMs: 1 }
    assert.equal(mayRetry(policy, 1), true)
    assert.equal(mayRetry(policy, 2), false)
    assert.equal(mayRetry({ tries: Number.POSITIVE_INFINITY, delayMs: 1 }, 1e6), true)
  })

  it('stops waiting when its signal aborts', async () => {
    const started = performance.now()
    await assert.rejects(waitToRetry({ tries: 2, delayMs: 60_000 }, 1, AbortSignal.timeout(50)), { name: 'AbortError' })
    assert.ok(performance.now() - started < 2_000)
  })
})

describe('ProviderPool', () => {
  const a = { id: 'a', url: 'http://a' }
  const b = { id: 'b', url: 'http://b' }

  it('takes the least busy provider, never more than its slots, and wakes waiters when one frees', async () => {
    const pool = new ProviderPool(2)
    const taken = [pool.tryAcquire([a, b]), pool.tryAcquire([a, b]), pool.tryAcquire([a, b]), pool.tryAcquire([a, b])].map(p => p?.id)
    assert.deepEqual(taken.filter(id => id === 'a').length, 2)
    assert.deepEqual(taken.filter(id => id === 'b').length, 2)
    assert.equal(pool.tryAcquire([a, b]), undefined, 'every slot is taken')
    const waiting = pool.acquire([a, b], AbortSignal.timeout(5_000))
    pool.release('b')
    assert.equal((await waiting)?.id, 'b', 'the freed slot is handed to the fetch that waited')
    assert.equal(pool.tryAcquire([a, b]), undefined, 'and is not free to anyone else')
  })

  it('hands a freed slot to the longest waiter that may ask that provider, and checks again within a second anyway', async () => {
    const c = { id: 'c', url: 'http://c' }
    const pool = new ProviderPool(1)
    assert.equal(pool.tryAcquire([a])?.id, 'a')
    assert.equal(pool.tryAcquire([c])?.id, 'c')
    const started = performance.now()
    const onlyA = pool.acquire([a], AbortSignal.timeout(5_000))
    const first = pool.acquire([a, c], AbortSignal.timeout(5_000))
    const second = pool.acquire([a, c], AbortSignal.timeout(5_000))
    pool.release('c')
    assert.equal((await first)?.id, 'c', 'the first waiter that may ask c')
    pool.release('a')
    assert.equal((await onlyA)?.id, 'a', 'a slot of a goes to the one that waited longest for it')
    assert.equal(await second, undefined, 'nothing freed for it: it gives up after the recheck time')
    const waited = performance.now() - started
    assert.ok(waited >= 900 && waited < 2_000, `gave up after ${waited.toFixed(0)} ms`)
    const aborted = new AbortController()
    const leaving = pool.acquire([a], aborted.signal)
    aborted.abort()
    assert.equal(await leaving, undefined)
    pool.release('a')
    assert.equal(pool.tryAcquire([a])?.id, 'a', 'a slot freed with nobody waiting is free again')
  })
})
