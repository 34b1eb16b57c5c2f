// The records a node keeps of other nodes' names: only those their name's key signed, the best
// per name (higher sequence, then later end of life), answered for their TTL, gone when expired.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { parseDuration } from '../../src/cli/name-commands.ts'
import { ipnsNameOf } from '../../src/names/ipns-name.ts'
import { factsOf, signRecord } from '../../src/names/ipns-record.ts'
import { RecordCache } from '../../src/names/record-cache.ts'
import { IpnsResolver } from '../../src/names/ipns-resolver.ts'
import { Publications } from '../../src/names/publications.ts'
import type { NameRouting } from '../../src/names/name-routing.ts'
import { pino } from 'pino'

const CID_A = '/ipfs/bafybeicrkp5dcxaqglxh27hun5zooyagid7smoquokie5bvg2o2r4pnrvi'
const CID_B = '/ipfs/bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'

describe('the record cache', () => {
  it('keeps what the name\'s key signed, the best record, for its TTL, until it expires', async () => {
    let now = Date.now()
    const cache = new RecordCache({ now: () => now })
    const key = await generateKeyPair('Ed25519')
    const stranger = await generateKeyPair('Ed25519')
    const name = ipnsNameOf(key.publicKey)
    const until = (ms: number): Date => new Date(now + ms)

    const first = await signRecord(key, CID_A, 1n, until(60_000), 10_000)
    assert.equal(await cache.offer(name, first, 'broadcast'), true)
    assert.equal(cache.get(name, { fresh: true })?.facts.value, CID_A)
    assert.equal(await cache.offer(name, await signRecord(stranger, CID_B, 9n, until(60_000), 10_000), 'broadcast'), false, 'another key\'s record is not this name\'s')
    assert.equal(await cache.offer(name, await signRecord(key, CID_B, 0n, until(90_000), 10_000), 'dht'), false, 'a lower sequence loses')
    const later = await signRecord(key, CID_A, 1n, until(120_000), 10_000)
    assert.equal(await cache.offer(name, later, 'dht'), true, 'the same sequence valid for longer wins')
    const second = await signRecord(key, CID_B, 2n, until(30_000), 10_000)
    assert.equal(await cache.offer(name, second, 'broadcast'), true, 'a higher sequence wins')
    assert.equal(cache.get(name, { fresh: true })?.facts.sequence, 2n)

    now += 10_000
    assert.equal(cache.get(name, { fresh: true }), undefined, 'past its TTL it is asked again')
    assert.equal(cache.get(name, { fresh: false })?.facts.value, CID_B, 'still valid, still usable')
    now += 20_001
    assert.equal(cache.get(name, { fresh: false }), undefined, 'expired')
    assert.equal(await cache.offer(name, second, 'broadcast'), false, 'an expired record is not taken')
  })

  it('holds a bounded number of names, the least recently changed dropped first', async () => {
    const cache = new RecordCache({ maxNames: 2 })
    const names = []
    for (let i = 0; i < 3; i++) {
      const key = await generateKeyPair('Ed25519')
      const name = ipnsNameOf(key.publicKey)
      names.push(name)
      await cache.offer(name, await signRecord(key, CID_A, 1n, new Date(Date.now() + 60_000), 60_000), 'broadcast')
    }
    assert.deepEqual(names.map(name => cache.get(name, { fresh: true }) !== undefined), [false, true, true])
  })

  it('signs V2 records with the value, sequence, end of life and TTL asked', async () => {
    const key = await generateKeyPair('Ed25519')
    const validUntil = new Date(Date.now() + 3_600_000)
    const facts = factsOf(await signRecord(key, CID_A, 7n, validUntil, 300_000))
    assert.deepEqual(facts, { value: CID_A, sequence: 7n, validUntil, ttlMs: 300_000 })
  })
})

describe('the resolver', () => {
  it('answers a record broadcast while its DHT lookup is still out, and asks the DHT once for callers at once', async () => {
    const key = await generateKeyPair('Ed25519')
    const name = ipnsNameOf(key.publicKey)
    const cache = new RecordCache()
    let lookups = 0
    const routing: NameRouting = {
      put: async () => 0,
      // A DHT that takes its time and finds nothing.
      get: async (_key, signal) => {
        lookups++
        await new Promise(resolve => setTimeout(resolve, 1_500))
        signal.throwIfAborted()
        return undefined
      },
      broadcast: async () => {},
      listen: () => () => {}
    }
    const resolver = new IpnsResolver({ publications: new Publications('/nonexistent/published.json'), cache, routing, logger: pino({ level: 'silent' }) })
    const started = Date.now()
    const asking = Promise.all([resolver.record(name, AbortSignal.timeout(5_000)), resolver.record(name, AbortSignal.timeout(5_000))])
    await new Promise(resolve => setTimeout(resolve, 100))
    await cache.offer(name, await signRecord(key, CID_A, 1n, new Date(Date.now() + 60_000), 60_000), 'broadcast')
    const answers = await asking
    assert.deepEqual(answers.map(answer => answer.facts.value), [CID_A, CID_A])
    assert.ok(Date.now() - started < 1_000, `answered after ${Date.now() - started} ms, not after the lookup`)
    assert.equal(lookups, 1)
  })
})

describe('durations on the command line', () => {
  it('reads Go-style durations and plain seconds', () => {
    assert.equal(parseDuration('24h', '--lifetime'), 86_400)
    assert.equal(parseDuration('1h30m', '--lifetime'), 5_400)
    assert.equal(parseDuration('5m', '--ttl'), 300)
    assert.equal(parseDuration('2d', '--lifetime'), 172_800)
    assert.equal(parseDuration('90', '--ttl'), 90)
    for (const bad of ['', 'soon', '5 m', '-5s', '1x']) assert.throws(() => parseDuration(bad, '--ttl'), /--ttl must be a duration/)
  })
})
