// IPNS names across a mesh (issue 14): published with the CLI on one node, resolved on the others
// through /ipns, the delegated routing API (the record checked with the ipns package's own
// validator) and /v2 with skopeo; published again, by named keys, and kept alive across a restart.
import assert from 'node:assert/strict'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { peerIdFromString } from '@libp2p/peer-id'
import { multihashToIPNSRoutingKey, unmarshalIPNSRecord } from 'ipns'
import { ipnsValidator } from 'ipns/validator'
import { base36 } from 'multiformats/bases/base36'
import { shoal } from '../support/cli.ts'
import { eventually, startFleet, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, readLayoutIndex } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const IPNS_RECORD = 'application/vnd.ipfs.ipns-record'

interface Published { name: string, key: string, value: string, sequence: number, validUntil: string, peers: number }

/** The record a node's routing API answers for `name`, checked with the ipns package's validator against the name. */
async function routingRecord (node: TestNode, name: string): Promise<{ value: string, sequence: bigint, validity: number }> {
  const response = await fetch(`${node.url}/routing/v1/ipns/${name}`, { headers: { accept: IPNS_RECORD } })
  assert.equal(response.status, 200, await response.clone().text())
  assert.equal(response.headers.get('content-type'), IPNS_RECORD)
  const bytes = new Uint8Array(await response.arrayBuffer())
  await ipnsValidator(multihashToIPNSRoutingKey(peerIdFromString(name).toMultihash()), bytes)
  const record = unmarshalIPNSRecord(bytes)
  return { value: record.value, sequence: record.sequence, validity: Date.parse(record.validity) }
}

/** Where a node's /ipns/<name> redirects now. */
async function redirectOf (node: TestNode, name: string): Promise<string | undefined> {
  const response = await fetch(`${node.url}/ipns/${name}`, { redirect: 'manual' })
  await response.arrayBuffer()
  return response.status === 302 ? response.headers.get('location') ?? undefined : undefined
}

async function publish (node: TestNode, ...args: string[]): Promise<Published> {
  const { stdout, stderr, code } = await shoal('name', 'publish', ...args, '--node', node.url, '--json')
  assert.equal(code, 0, stderr)
  return JSON.parse(stdout) as Published
}

describe('IPNS names across a mesh', () => {
  let work: string
  let fleet: TestNode[]
  let a: TestNode
  let b: TestNode
  let c: TestNode
  const images: Record<string, { manifestDigest: string, imageCid: string }> = {}
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-ipns-'))
    fleet = await startFleet(3)
    ;[a, b, c] = fleet as [TestNode, TestNode, TestNode]
    for (const tag of ['v1', 'v2']) {
      const layout = await createImageLayout(join(work, tag), { layers: [300_000], seed: `ipns-${tag}` })
      await copyToRegistry(join(work, tag), `${b.host}/names/app:${tag}`)
      const manifest = await fetch(`${b.url}/v2/names/app/manifests/${tag}`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
      images[tag] = { manifestDigest: layout.manifestDigest, imageCid: manifest.headers.get('shoal-image-cid') ?? '' }
    }
  })
  after(async () => {
    await Promise.all(fleet.map(async node => await node.stop()))
    await rm(work, { recursive: true, force: true })
  })

  it('a name published on one node resolves on the others: by redirect, by its record, and pulled through /v2', async () => {
    const published = await publish(b, 'names/app:v1')
    const self = peerIdFromString(b.node.fleet?.peerId ?? '')
    assert.equal(published.name, self.toCID().toString(base36), 'the node\'s own name is its peer id')
    assert.equal(published.key, 'self')
    assert.equal(published.sequence, 1)
    assert.equal(published.value, `/ipfs/${images.v1?.imageCid ?? ''}`)
    assert.ok(published.peers >= 1, 'the DHT\'s closest peers took the record')

    for (const node of [a, c]) {
      assert.equal(await eventually(async () => await redirectOf(node, published.name), 5_000, 'the name to resolve'), `/ipfs/${images.v1?.imageCid ?? ''}`)
    }
    const response = await fetch(`${c.url}/ipns/${published.name}`, { redirect: 'manual' })
    assert.equal(response.headers.get('x-ipfs-path'), `/ipns/${published.name}`)
    const record = await routingRecord(c, published.name)
    assert.equal(record.value, published.value)
    assert.equal(record.sequence, 1n)
    assert.equal(record.validity, Date.parse(published.validUntil))

    // Through /v2 on a node that does not hold the image: skopeo pulls what the name points at.
    const out = join(work, 'pulled-by-name')
    await copyFromRegistry(`${c.host}/ipns/${published.name}:latest`, out)
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [images.v1?.manifestDigest])

    const resolved = await shoal('name', 'resolve', published.name, '--node', c.url)
    assert.equal(resolved.code, 0, resolved.stderr)
    assert.equal(resolved.stdout.trim(), `/ipfs/${images.v1?.imageCid ?? ''}`)
    const inspected = await shoal('name', 'inspect', self.toString(), '--node', a.url)
    assert.equal(inspected.code, 0, inspected.stderr)
    assert.match(inspected.stdout, new RegExp(`value: +/ipfs/${images.v1?.imageCid ?? ''}`))
    assert.match(inspected.stdout, /sequence: +1\n/)
    assert.match(inspected.stdout, /ttl: +300 s/)
    assert.match(inspected.stdout, new RegExp(`signed by: +${self.toString()}`))
  })

  it('publishing again raises the sequence, and the other nodes see the new value', async () => {
    const published = await publish(b, 'names/app:v2')
    assert.equal(published.sequence, 2, 'one above the first publish')
    for (const node of [a, c]) {
      assert.equal(await eventually(async () => {
        const location = await redirectOf(node, published.name)
        return location === `/ipfs/${images.v2?.imageCid ?? ''}` ? location : undefined
      }, 2_000, 'the new value on another node'), `/ipfs/${images.v2?.imageCid ?? ''}`)
      const record = await routingRecord(node, published.name)
      assert.equal(record.sequence, BigInt(published.sequence))
    }
    const manifest = await fetch(`${a.url}/v2/ipns/${published.name}/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    assert.equal(manifest.status, 200)
    assert.equal(manifest.headers.get('docker-content-digest'), images.v2?.manifestDigest)
    // The publisher lists what it publishes, on the API and in the UI; the others publish nothing.
    const listed = await (await fetch(`${b.url}/api/v1/names/published`)).json() as { names: Array<{ name: string, image: string, sequence: number }> }
    assert.deepEqual(listed.names.map(entry => [entry.name, entry.image, entry.sequence]), [[published.name, 'names/app:v2', 2]])
    assert.deepEqual(await (await fetch(`${a.url}/api/v1/names/published`)).json(), { names: [] })
    const page = await (await fetch(`${b.url}/`)).text()
    assert.match(page, new RegExp(`<tr data-ipns-name="${published.name}"><td>[^]*?names/app:v2[^]*?${b.host}/ipns/${published.name}:latest`))
  })

  it('named keys publish names of their own; an unknown key is refused in one line', async () => {
    const created = await shoal('name', 'key', 'create', 'release', '--node', b.url)
    assert.equal(created.code, 0, created.stderr)
    assert.match(created.stdout, /^created key release: \/ipns\/k51/)
    const file = await stat(join(b.dataDir, 'ipns-keys', 'release.key'))
    assert.equal(file.mode & 0o777, 0o600, 'a key file is readable by the node alone')
    const again = await shoal('name', 'key', 'create', 'release', '--node', b.url)
    assert.notEqual(again.code, 0)
    assert.equal(again.stderr.trim().split('\n').length, 1)
    assert.match(again.stderr, /release.*exists/)

    const listed = await shoal('name', 'key', 'ls', '--node', b.url)
    assert.equal(listed.code, 0, listed.stderr)
    const keyNames = Object.fromEntries(listed.stdout.trim().split('\n').slice(1).map(line => line.split(/\s+/) as [string, string]))
    assert.deepEqual(Object.keys(keyNames).sort(), ['release', 'self'])
    assert.notEqual(keyNames.release, keyNames.self)

    const published = await publish(b, 'names/app:v1', '--key', 'release', '--lifetime', '1h', '--ttl', '30s')
    assert.equal(published.name, keyNames.release)
    assert.equal(published.sequence, 1)
    assert.equal(await eventually(async () => await redirectOf(c, published.name), 5_000, 'the named key\'s name on C'), `/ipfs/${images.v1?.imageCid ?? ''}`)
    const record = await shoal('name', 'inspect', published.name, '--node', c.url, '--json')
    assert.equal((JSON.parse(record.stdout) as { ttlSeconds: number }).ttlSeconds, 30)

    const unknown = await shoal('name', 'publish', 'names/app:v1', '--key', 'nope', '--node', b.url)
    assert.notEqual(unknown.code, 0)
    assert.equal(unknown.stderr.trim().split('\n').length, 1, 'one line')
    assert.match(unknown.stderr, /no IPNS key named "nope"/)
  })

  it('an unknown name gives up within a few seconds, on every face', async () => {
    const stranger = 'k51qzi5uqu5dkvsmrrafgver4bkshy3t9r1mdkmotk1lbldwx5pnkxbzuiy2cc'
    const started = Date.now()
    const response = await fetch(`${c.url}/ipns/${stranger}`, { redirect: 'manual' })
    assert.equal(response.status, 404)
    assert.match(await response.text(), /has no record in the mesh/)
    assert.ok(Date.now() - started < 6_000, `took ${Date.now() - started} ms`)
    const manifest = await fetch(`${c.url}/v2/ipns/${stranger}/manifests/latest`)
    assert.equal(manifest.status, 404)
    const body = await manifest.json() as { errors: Array<{ code: string, message: string }> }
    assert.equal(body.errors[0]?.code, 'NAME_UNKNOWN')
    assert.match(body.errors[0]?.message ?? '', /has no record/)
    assert.equal((await fetch(`${a.url}/routing/v1/ipns/${stranger}`)).status, 404)
  })

  it('names are republished before they expire, and after a restart', async () => {
    // A short lifetime: signed again every half lifetime, same value and sequence, a later end.
    const short = await publish(b, 'names/app:v2', '--key', 'release', '--lifetime', '4s')
    const first = await routingRecord(c, short.name)
    const renewed = await eventually(async () => {
      const record = await routingRecord(c, short.name)
      return record.validity > first.validity ? record : undefined
    }, 8_000, 'the republished record on C')
    assert.equal(renewed.sequence, first.sequence)
    assert.equal(renewed.value, `/ipfs/${images.v2?.imageCid ?? ''}`)

    // The publisher stops; its name's record on C is the one signed before.
    const selfName = peerIdFromString(b.node.fleet?.peerId ?? '').toCID().toString(base36)
    const beforeRestart = await routingRecord(c, selfName)
    const dataDir = b.dataDir
    await b.node.stop()
    await new Promise(resolve => setTimeout(resolve, 1_000))
    const restarted = await startTestNode({ dataDir, config: { peers: [a.node.fleet?.mesh.addresses[0] ?? ''] } })
    fleet[1] = { ...restarted, stop: async () => { await restarted.stop(); await rm(dataDir, { recursive: true, force: true }) } }
    b = restarted
    // Signed again at start and sent to the members as they connect: the validity moves on.
    const afterRestart = await eventually(async () => {
      const record = await routingRecord(c, selfName)
      return record.validity > beforeRestart.validity ? record : undefined
    }, 15_000, 'the record signed again after the restart')
    assert.equal(afterRestart.sequence, beforeRestart.sequence)
    assert.equal(afterRestart.value, beforeRestart.value)
    // The sequence goes on from where it was.
    const next = await publish(b, 'names/app:v1')
    assert.equal(BigInt(next.sequence), beforeRestart.sequence + 1n)
  })
})
