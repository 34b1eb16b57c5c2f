import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { matchesSelector, type Member } from '../../src/replication/placement.ts'
import {
  InvalidLabelsError, InvalidStrategyError, checkAgainstFleet, formatLabels, parseLabelsText,
  parseSelectorText, parseStrategyPayload, type StrategySpec
} from '../../src/replication/strategy.ts'

const DIGEST = `sha256:${'ab'.repeat(32)}`
const CID_V1 = 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'
const PEER_ID = '12D3KooWLRPJAA5o6Gq4bEv7p1bH6kQBTwVzMtQp3nqg1UgnBDEx'

function rejects (body: unknown, message: string | RegExp): void {
  assert.throws(() => parseStrategyPayload(body), (err: unknown) => {
    assert.ok(err instanceof InvalidStrategyError, `an InvalidStrategyError, not ${String(err)}`)
    assert.equal(err.name, 'InvalidStrategyError')
    if (typeof message === 'string') assert.equal(err.message, message)
    else assert.match(err.message, message)
    return true
  })
}

describe('strategy payloads', () => {
  it("reads Shoal's own form for every kind", () => {
    assert.deepEqual(parseStrategyPayload({ image: 'busybox:1.36', kind: 'percentage', percentage: 40 }),
      { spec: { kind: 'percentage', image: 'busybox:1.36', percentage: 40 }, execute: true })
    assert.deepEqual(parseStrategyPayload({ image: 'busybox:1.36', kind: 'target', target: 'edge-1' }).spec,
      { kind: 'target', image: 'busybox:1.36', target: 'edge-1' })
    assert.deepEqual(parseStrategyPayload({ image: 'busybox:1.36', kind: 'replicas', replicas: 3 }).spec,
      { kind: 'replicas', image: 'busybox:1.36', replicas: 3 })
    assert.deepEqual(parseStrategyPayload({ image: 'busybox:1.36', kind: 'all' }).spec, { kind: 'all', image: 'busybox:1.36' })
    assert.deepEqual(parseStrategyPayload({ image: 'busybox:1.36', kind: 'labels', selector: { zone: 'eu' } }).spec,
      { kind: 'labels', image: 'busybox:1.36', selector: { zone: 'eu' } })
    assert.deepEqual(parseStrategyPayload({ image: 'busybox:1.36', kind: 'labels', selector: { zone: 'eu', tier: 'edge' }, count: 2 }).spec,
      { kind: 'labels', image: 'busybox:1.36', selector: { zone: 'eu', tier: 'edge' }, count: 2 })
  })

  it("reads DistroMash's payloads unchanged", () => {
    const percentage = JSON.parse('{"execute": true, "nametag": "busybox:1.35.0", "percentage": 50, "target": "", "type": "percentage"}') as unknown
    assert.deepEqual(parseStrategyPayload(percentage), { spec: { kind: 'percentage', image: 'busybox:1.35.0', percentage: 50 }, execute: true })
    const target = JSON.parse(`{"execute": true, "nametag": "busybox:1.35.0", "percentage": 0, "target": "${PEER_ID}", "type": "target"}`) as unknown
    assert.deepEqual(parseStrategyPayload(target), { spec: { kind: 'target', image: 'busybox:1.35.0', target: PEER_ID }, execute: true })
    const placeholder = JSON.parse('{"execute": true, "nametag": "busybox:1.35.0", "percentage": 0, "target": "<peer id>", "type": "target"}') as unknown
    assert.deepEqual(parseStrategyPayload(placeholder).spec, { kind: 'target', image: 'busybox:1.35.0', target: '<peer id>' })
    const dryRun = JSON.parse('{"execute": false, "nametag": "busybox:1.35.0", "percentage": 50, "target": "", "type": "percentage"}') as unknown
    assert.equal(parseStrategyPayload(dryRun).execute, false)
  })

  it('takes DistroMash-style type and nametag for the other kinds too', () => {
    assert.deepEqual(parseStrategyPayload({ nametag: 'web:2', type: 'replicas', replicas: 2 }).spec, { kind: 'replicas', image: 'web:2', replicas: 2 })
    assert.deepEqual(parseStrategyPayload({ nametag: 'web:2', type: 'all', execute: true, percentage: 0, target: '' }).spec, { kind: 'all', image: 'web:2' })
    assert.deepEqual(parseStrategyPayload({ nametag: 'web:2', type: 'labels', selector: { zone: 'eu' }, count: 1 }).spec,
      { kind: 'labels', image: 'web:2', selector: { zone: 'eu' }, count: 1 })
    // Both names at once are fine when they agree.
    assert.deepEqual(parseStrategyPayload({ image: 'web:2', nametag: 'web:2', kind: 'all', type: 'all' }).spec, { kind: 'all', image: 'web:2' })
  })

  it('executes unless told not to; execute false is a dry run', () => {
    assert.equal(parseStrategyPayload({ image: 'web:2', kind: 'all' }).execute, true)
    assert.equal(parseStrategyPayload({ image: 'web:2', kind: 'all', execute: true }).execute, true)
    assert.equal(parseStrategyPayload({ image: 'web:2', kind: 'all', execute: false }).execute, false)
  })

  it('names an image by tag, digest or CID', () => {
    for (const image of ['busybox:1.36', 'library/busybox:latest', `busybox@${DIGEST}`, `busybox:1.36@${DIGEST}`, CID_V1,
      'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', `ipfs/${CID_V1}:latest`]) {
      assert.equal(parseStrategyPayload({ image, kind: 'all' }).spec.image, image)
    }
    assert.equal(parseStrategyPayload({ image: ' busybox:1.36 ', kind: 'all' }).spec.image, 'busybox:1.36')
  })

  it('ignores fields it does not know, and those of other kinds', () => {
    assert.deepEqual(parseStrategyPayload({ image: 'web:2', kind: 'replicas', replicas: 2, percentage: 'x', target: 7, selector: 1, note: 'hi' }).spec,
      { kind: 'replicas', image: 'web:2', replicas: 2 })
  })

  it('reads a stored strategy back as its spec', () => {
    const stored = { id: 's1', createdAt: '2025-01-01T00:00:00.000Z', updatedAt: '2025-01-01T00:00:00.000Z', kind: 'replicas', image: 'web:2', replicas: 2 }
    assert.deepEqual(parseStrategyPayload(stored).spec, { kind: 'replicas', image: 'web:2', replicas: 2 })
  })

  it('accepts a selector written as text', () => {
    assert.deepEqual(parseStrategyPayload({ image: 'web:2', kind: 'labels', selector: 'zone=eu,tier=edge' }).spec,
      { kind: 'labels', image: 'web:2', selector: { zone: 'eu', tier: 'edge' } })
  })

  it('refuses what is not a strategy, saying why', () => {
    const base = { image: 'busybox:1.36' }
    const image = 'missing image: give repo:tag, repo@sha256:… or an image CID'
    const kinds = 'percentage, target, replicas, all, labels'
    rejects(null, 'a strategy must be a JSON object')
    rejects([], 'a strategy must be a JSON object')
    rejects('busybox:1.36', 'a strategy must be a JSON object')
    rejects({ kind: 'all' }, image)
    rejects({ image: '', kind: 'all' }, image)
    rejects({ nametag: '  ', type: 'all' }, image)
    rejects({ image: 5, kind: 'all' }, 'image must be a string, not 5')
    rejects({ image: 'busybox', kind: 'all' }, 'invalid image "busybox": expected repo:tag, repo@sha256:… or an image CID')
    rejects({ image: 'busybox:', kind: 'all' }, 'invalid image "busybox:": "" is not a valid tag')
    rejects({ image: 'Busybox:1', kind: 'all' }, 'invalid image "Busybox:1": "Busybox" is not a valid repository name')
    rejects({ image: 'busybox@sha256:abc', kind: 'all' }, 'invalid image "busybox@sha256:abc": the part after @ is not a sha256 or sha512 digest')
    rejects({ image: 'bafynotacid', kind: 'all' }, 'invalid image "bafynotacid": expected repo:tag, repo@sha256:… or an image CID')
    rejects(base, `missing kind: one of ${kinds}`)
    rejects({ ...base, kind: 'copies' }, `unknown kind "copies": expected one of ${kinds}`)
    rejects({ ...base, type: 'spread' }, `unknown kind "spread": expected one of ${kinds}`)
    rejects({ ...base, kind: 'all', type: 'replicas' }, 'kind "all" and type "replicas" disagree; give one')
    rejects({ ...base, nametag: 'busybox:1.35', kind: 'all' }, 'image "busybox:1.36" and nametag "busybox:1.35" disagree; give one')
    rejects({ ...base, kind: 'all', execute: 'yes' }, 'execute must be true or false, not "yes"')
    rejects({ ...base, kind: 'percentage' }, 'percentage must be a number from 1 to 100, not nothing')
    rejects({ ...base, kind: 'percentage', percentage: 0 }, 'percentage must be a number from 1 to 100, not 0')
    rejects({ ...base, kind: 'percentage', percentage: 101 }, 'percentage must be a number from 1 to 100, not 101')
    rejects({ ...base, kind: 'percentage', percentage: -5 }, 'percentage must be a number from 1 to 100, not -5')
    rejects({ ...base, kind: 'percentage', percentage: '50' }, 'percentage must be a number from 1 to 100, not "50"')
    rejects({ execute: true, nametag: 'busybox:1.35.0', percentage: 0, target: '', type: 'percentage' }, 'percentage must be a number from 1 to 100, not 0')
    rejects({ ...base, kind: 'replicas' }, 'replicas must be a whole number of at least 1, not nothing')
    rejects({ ...base, kind: 'replicas', replicas: 0 }, 'replicas must be a whole number of at least 1, not 0')
    rejects({ ...base, kind: 'replicas', replicas: 1.5 }, 'replicas must be a whole number of at least 1, not 1.5')
    rejects({ ...base, kind: 'replicas', replicas: '3' }, 'replicas must be a whole number of at least 1, not "3"')
    rejects({ ...base, kind: 'target' }, 'target must be a node id or name, not nothing')
    rejects({ ...base, kind: 'target', target: '' }, 'target must be a node id or name, not ""')
    rejects({ ...base, kind: 'target', target: '   ' }, 'target must be a node id or name, not "   "')
    rejects({ execute: true, nametag: 'busybox:1.35.0', percentage: 50, target: '', type: 'target' }, 'target must be a node id or name, not ""')
    rejects({ ...base, kind: 'labels' }, 'missing selector: give labels such as { "zone": "eu" }')
    rejects({ ...base, kind: 'labels', selector: {} }, 'selector is empty: give at least one label, such as zone=eu')
    rejects({ ...base, kind: 'labels', selector: '' }, 'selector is empty: give at least one label, such as zone=eu')
    rejects({ ...base, kind: 'labels', selector: ['zone'] }, 'selector must be an object of labels such as { "zone": "eu" }, not ["zone"]')
    rejects({ ...base, kind: 'labels', selector: { zone: 1 } }, 'selector: label "zone" must have a string value, not 1')
    rejects({ ...base, kind: 'labels', selector: { '': 'eu' } }, 'selector: a label has an empty key')
    rejects({ ...base, kind: 'labels', selector: { zone: '' } }, 'selector: label "zone" has an empty value')
    rejects({ ...base, kind: 'labels', selector: { zone: 'eu' }, count: 0 }, 'count must be a whole number of at least 1, not 0')
    rejects({ ...base, kind: 'labels', selector: { zone: 'eu' }, count: 2.5 }, 'count must be a whole number of at least 1, not 2.5')
  })
})

describe('strategies against the fleet', () => {
  const members: Member[] = [
    { id: 'peer-a', name: 'alpha', labels: { zone: 'eu' } },
    { id: 'peer-b', name: 'beta', labels: { zone: 'eu', tier: 'edge' } },
    { id: 'peer-c', labels: { zone: 'us' } }
  ]
  const image = 'busybox:1.36'
  const fits = (spec: StrategySpec, fleet: readonly Member[] = members): void => { checkAgainstFleet(spec, fleet) }
  const refused = (spec: StrategySpec, message: string, fleet: readonly Member[] = members): void => {
    assert.throws(() => { checkAgainstFleet(spec, fleet) }, { name: 'InvalidStrategyError', message })
  }

  it('finds a target by id or name, and refuses a stranger', () => {
    fits({ kind: 'target', image, target: 'peer-c' })
    fits({ kind: 'target', image, target: 'beta' })
    refused({ kind: 'target', image, target: 'gamma' }, 'target "gamma" is not a member: no node has that id or name')
  })

  it('refuses more replicas than members', () => {
    fits({ kind: 'replicas', image, replicas: 3 })
    refused({ kind: 'replicas', image, replicas: 4 }, 'replicas 4 is more than the 3 member node(s)')
    refused({ kind: 'replicas', image, replicas: 1 }, 'replicas 1 is more than the 0 member node(s)', [])
  })

  it('refuses a label count larger than the matching nodes', () => {
    fits({ kind: 'labels', image, selector: { zone: 'eu' }, count: 2 })
    fits({ kind: 'labels', image, selector: { zone: 'ap' } })
    refused({ kind: 'labels', image, selector: { zone: 'eu' }, count: 3 }, 'count 3 is more than the 2 node(s) matching zone=eu')
  })

  it('checks nothing else', () => {
    fits({ kind: 'all', image }, [])
    fits({ kind: 'percentage', image, percentage: 100 }, [])
    fits({ kind: 'labels', image, selector: { zone: 'ap' } }, [])
  })
})

describe('labels and selectors as text', () => {
  it('parses key=value lists', () => {
    assert.deepEqual(parseSelectorText('zone=eu,tier=edge'), { zone: 'eu', tier: 'edge' })
    assert.deepEqual(parseSelectorText(' zone = eu , tier=edge ,'), { zone: 'eu', tier: 'edge' })
    assert.deepEqual(parseSelectorText('zone=eu,zone=eu'), { zone: 'eu' })
    assert.deepEqual(parseSelectorText('url=a=b'), { url: 'a=b' })
    assert.deepEqual(parseLabelsText('zone=eu,tier=edge'), { zone: 'eu', tier: 'edge' })
    assert.deepEqual(parseLabelsText(''), {})
    assert.equal(formatLabels({ zone: 'eu', tier: 'edge' }), 'zone=eu,tier=edge')
  })

  it('refuses malformed lists, saying why', () => {
    const cases: Array<[string, string]> = [
      ['zone', '"zone" is not key=value'],
      ['=eu', 'a label has an empty key'],
      ['zone=', 'label "zone" has an empty value'],
      ['zone=eu,zone=us', '"zone" is given twice with different values'],
      ['my zone=eu', 'label key "my zone" must not contain spaces, "=" or ","']
    ]
    for (const [text, problem] of cases) {
      assert.throws(() => parseSelectorText(text), { name: 'InvalidStrategyError', message: `selector: ${problem}` })
      assert.throws(() => parseLabelsText(text), (err: unknown) => err instanceof InvalidLabelsError && err.message === `labels: ${problem}`)
    }
    assert.throws(() => parseSelectorText(' , '), { name: 'InvalidStrategyError', message: 'selector is empty: give at least one label, such as zone=eu' })
  })

  it('matches a selector against a node’s own labels only', () => {
    assert.equal(matchesSelector({ zone: 'eu', tier: 'edge' }, { zone: 'eu' }), true)
    assert.equal(matchesSelector({ zone: 'eu' }, { zone: 'eu', tier: 'edge' }), false)
    assert.equal(matchesSelector(undefined, { zone: 'eu' }), false)
    assert.equal(matchesSelector({}, { constructor: 'Object' }), false)
  })
})
