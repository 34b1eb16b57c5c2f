// The pool of 1 MiB leaves gives back what the last interval's work did not take: a burst's
// buffers are freed, not held for the life of the process.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { ChunkPool } from '../../src/content/chunk-pool.ts'

describe('ChunkPool.trim', () => {
  it('frees the chunks no take reached since the last trim, and keeps those the work used', () => {
    const pool = new ChunkPool()
    const burst = [pool.take(), pool.take(), pool.take(), pool.take()]
    for (const chunk of burst) pool.give(chunk)
    assert.equal(pool.size, 4)
    assert.equal(pool.trim(), 0, 'all four were taken in the interval')

    const before = process.memoryUsage().arrayBuffers
    // The next interval needs one chunk at a time: three stay untouched.
    for (let i = 0; i < 5; i++) pool.give(pool.take())
    assert.equal(pool.trim(), 3)
    assert.equal(pool.size, 1)
    const freed = before - process.memoryUsage().arrayBuffers
    assert.ok(freed >= 3 * 1024 * 1024, `three chunks' memory is freed at once (freed ${freed} bytes)`)
    assert.equal(burst.filter(chunk => chunk.byteLength === 0).length, 3, 'the freed chunks are detached')

    // A quiet interval: the last one goes too, and the pool still lends.
    assert.equal(pool.trim(), 1)
    assert.equal(pool.size, 0)
    assert.equal(pool.take().byteLength, 1024 * 1024)
  })
})
