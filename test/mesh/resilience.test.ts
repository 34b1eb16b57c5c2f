// The mesh when peers misbehave: corrupted blocks, a seeder that dies mid-pull, racing tag writes.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { eventually, startFleet, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { metricValue } from '../support/metrics.ts'
import { startNodeProcess, type RegistryProcess } from '../support/node-process.ts'
import { createImageLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const MiB = 1024 * 1024

/** The leaf CIDs of a blob held by a node. */
async function leavesOf (node: TestNode, digest: string): Promise<CID[]> {
  const record = await node.node.metadata.getBlob(digest)
  assert.ok(record, `${digest} is recorded`)
  const root = CID.parse(record.cid)
  return dagPb.decode(await node.node.blockstore.getBytes(root)).Links.map(link => link.Hash)
}

async function assertPulled (out: string, digests: string[]): Promise<void> {
  for (const digest of digests) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
}

describe('a mesh with misbehaving peers', () => {
  let work: string
  const stops: Array<() => Promise<unknown>> = []
  before(async () => { work = await mkdtemp(join(tmpdir(), 'shoal-mesh-bad-')) })
  after(async () => {
    for (const stop of stops.reverse()) await stop()
    await rm(work, { recursive: true, force: true })
  })

  it('a node whose blocks rot on disk never sends them; a puller gets the image whole and stores no bad bytes', async () => {
    const [a, b, c] = await startFleet(3) as [TestNode, TestNode, TestNode]
    stops.push(() => Promise.all([a, b, c].map(async node => await node.stop())))

    const image = await createImageLayout(join(work, 'bad'), { layers: [4 * MiB + 3], seed: 'mesh-bad' })
    await copyToRegistry(join(work, 'bad'), `${a.host}/bad/app:1.0`)
    await eventually(async () => await b.node.fleet?.catalogue.getTag('bad/app', '1.0'), 10_000, 'the tag on B')
    await copyFromRegistry(`${b.host}/bad/app:1.0`, join(work, 'via-b'))
    const layer = image.layerDigests[0] ?? ''
    assert.equal((await b.node.metadata.getBlob(layer))?.remote, undefined, 'B holds the layer whole')

    // A's copy of every leaf goes bad on disk (same length, other bytes).
    for (const leaf of await leavesOf(a, layer)) {
      const path = a.node.blockstore.pathOf(leaf)
      const bytes = await readFile(path)
      await writeFile(path, Buffer.from(bytes.map(byte => byte ^ 0xff)))
    }

    await eventually(async () => await c.node.fleet?.catalogue.getTag('bad/app', '1.0'), 10_000, 'the tag on C')
    await copyFromRegistry(`${c.host}/bad/app:1.0`, join(work, 'via-c'))
    await assertPulled(join(work, 'via-c'), [image.configDigest, layer])

    // A checks every block it reads against its CID (issue 10, defect 3): the rotten leaves it was
    // asked for went to its quarantine instead of to C, so C never received a bad block from A.
    const metrics = await (await fetch(`${c.url}/metrics`)).text()
    const bad = new RegExp(`shoal_mesh_bad_blocks_total\\{provider="${a.node.fleet?.peerId ?? ''}"\\} (\\d+)`).exec(metrics)
    assert.equal(bad === null ? 0 : Number(bad[1]), 0, 'A sent C no bad block')
    // Read from A itself, the layer comes back whole: the rotten leaves are found, quarantined
    // and fetched again from B (whether C's pull asked A for any of them or not).
    const fromA = await fetch(`${a.url}/v2/bad/app/blobs/${layer}`)
    assert.equal(fromA.status, 200)
    assert.equal(sha256(Buffer.from(await fromA.arrayBuffer())), layer, 'A serves the layer whole')
    assert.ok(await metricValue(a.url, 'shoal_blocks_corrupt_total') >= 1, 'A found (and quarantined) its rotten blocks')
    for (const leaf of await leavesOf(c, layer)) {
      const bytes = await c.node.blockstore.getBytes(leaf)
      assert.deepEqual(createHash('sha256').update(bytes).digest(), Buffer.from(leaf.multihash.digest), `C's ${leaf.toString()} verifies`)
    }
  })

  it('a pull goes on when its seeder is killed, from the other provider', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'shoal-seeder-'))
    stops.push(() => rm(dataDir, { recursive: true, force: true }))
    // The seeder is a real process, so that it can die by kill -9; its uploads are capped so
    // the pull is still running when it does.
    const seeder: RegistryProcess = await startNodeProcess({ dataDir, args: ['--mesh', '--upload-limit-mbps', '40'] })
    stops.push(() => seeder.stop())
    const self = await eventually(async () => {
      const answer = await (await fetch(`${seeder.url}/api/v1/peers`)).json() as { self: { addresses: string[] } | null }
      return answer.self ?? undefined
    }, 10_000, 'the seeder to join its mesh')
    const peers = [self.addresses[0] ?? '']
    const b = await startTestNode({ config: { peers, uploadLimitMbps: 40 } })
    stops.push(() => b.stop())
    const c = await startTestNode({ config: { peers } })
    stops.push(() => c.stop())

    const image = await createImageLayout(join(work, 'big'), { layers: [8 * MiB, 4 * MiB], seed: 'mesh-seeder' })
    await copyToRegistry(join(work, 'big'), `${seeder.host}/seed/app:1.0`)
    await eventually(async () => await b.node.fleet?.catalogue.getTag('seed/app', '1.0'), 10_000, 'the tag on B')
    await copyFromRegistry(`${b.host}/seed/app:1.0`, join(work, 'seed-b'))
    await eventually(async () => ((await c.node.fleet?.nodes())?.length ?? 0) >= 3 ? true : undefined, 10_000, 'C to know the inventory')

    const pull = copyFromRegistry(`${c.host}/seed/app:1.0`, join(work, 'seed-c'))
    await eventually(async () => {
      // From every provider (the seeder, and B: having pulled every blob, it holds the image too).
      const metrics = await (await fetch(`${c.url}/metrics`)).text()
      const fetched = [...metrics.matchAll(/shoal_mesh_bytes_fetched_total\{[^}]*\} (\d+)/g)].reduce((sum, match) => sum + Number(match[1]), 0)
      return fetched > MiB ? true : undefined
    }, 20_000, 'the pull to be under way')
    await seeder.kill9()
    await pull
    assert.deepEqual((await readLayoutIndex(join(work, 'seed-c'))).manifests.map(m => m.digest), [image.manifestDigest])
    await assertPulled(join(work, 'seed-c'), [image.configDigest, ...image.layerDigests])
  })

  it('a blob whose only holder is gone answers 503 UNAVAILABLE, not a fault of the node', async () => {
    const [a, b] = await startFleet(2) as [TestNode, TestNode]
    stops.push(() => b.stop())
    const layer = 'held by a alone'
    await new RegistryClient(a.url).pushImage('gone/app', '1.0', layer)
    await eventually(async () => await b.node.fleet?.catalogue.getTag('gone/app', '1.0'), 10_000, 'the tag on B')
    // B adopts the manifest (and learns its blobs) while A is there; then A leaves for good.
    assert.equal((await fetch(`${b.url}/v2/gone/app/manifests/1.0`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).status, 200)
    await a.stop()
    const response = await fetch(`${b.url}/v2/gone/app/blobs/${sha256(layer)}`)
    const body = await response.json() as { errors: Array<{ code: string, message: string }> }
    assert.equal(response.status, 503, JSON.stringify(body))
    assert.equal(body.errors[0]?.code, 'UNAVAILABLE')
    assert.ok(!b.logs.some(line => line.msg === 'internal error'), 'not logged as a fault of the node')
  })

  it('two nodes pushing one tag at once end with every node agreeing', async () => {
    const [a, b, c] = await startFleet(3) as [TestNode, TestNode, TestNode]
    stops.push(() => Promise.all([a, b, c].map(async node => await node.stop())))
    const [fromA, fromB] = await Promise.all([
      new RegistryClient(a.url).pushImage('race/app', 'latest', 'pushed on a'),
      new RegistryClient(b.url).pushImage('race/app', 'latest', 'pushed on b')
    ])
    const agreed = await eventually(async () => {
      const seen = await Promise.all([a, b, c].map(async node => (await node.node.fleet?.catalogue.getTag('race/app', 'latest'))?.digest))
      return seen.every(digest => digest !== undefined && digest === seen[0]) ? seen[0] : undefined
    }, 15_000, 'every node to agree on the tag')
    assert.ok(agreed === fromA.digest || agreed === fromB.digest)
  })
})
