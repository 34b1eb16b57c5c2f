// Push to one node, pull from the others with real skopeo: the bytes come over the mesh, verified.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, createMultiArchLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
import { sha256 } from '../support/registry-client.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

describe('pulling an image pushed to another node', () => {
  let a: TestNode
  let b: TestNode
  let c: TestNode
  let work: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-mesh-pull-'))
    a = await startTestNode({ config: { mesh: true } })
    const peers = [a.node.fleet?.mesh.addresses[0] ?? '']
    b = await startTestNode({ config: { peers } })
    c = await startTestNode({ config: { peers } })
  })
  after(async () => {
    await Promise.all([a, b, c].map(async node => await node?.stop()))
    await rm(work, { recursive: true, force: true })
  })

  it('any node serves it by tag and by ipfs/<cid>, with identical digests', async () => {
    const image = await createImageLayout(join(work, 'app'), { layers: [3 * 1024 * 1024 + 5, 700_000], seed: 'mesh-pull' })
    await copyToRegistry(join(work, 'app'), `${a.host}/mesh/app:1.0`)
    await eventually(async () => (await c.node.fleet?.catalogue.getTag('mesh/app', '1.0')) ?? undefined, 10_000, 'the tag on C')
    await eventually(async () => (await b.node.fleet?.catalogue.getTag('mesh/app', '1.0')) ?? undefined, 10_000, 'the tag on B')

    for (const node of [b, c]) {
      const out = join(work, node === b ? 'out-b' : 'out-c')
      await copyFromRegistry(`${node.host}/mesh/app:1.0`, out)
      assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [image.manifestDigest])
      for (const digest of [image.configDigest, ...image.layerDigests]) {
        assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
      }
    }
    const metrics = await (await fetch(`${b.url}/metrics`)).text()
    const fetched = /shoal_mesh_bytes_fetched_total\{[^}]*\} (\d+)/.exec(metrics)
    assert.ok(fetched !== null && Number(fetched[1]) >= 3 * 1024 * 1024, 'B fetched the layers over the mesh')
    // What B fetched it now holds whole.
    assert.equal((await b.node.metadata.getBlob(image.layerDigests[0] ?? ''))?.remote, undefined)

    // Having every blob, B and C hold the image as A does, and their presence says so: the fleet
    // finds its blobs through the image's holders, so they serve it when A is gone.
    const imageCid = (await a.node.fleet?.catalogue.getTag('mesh/app', '1.0'))?.imageCid ?? ''
    const holders = await eventually(async () => {
      const heldBy = (await a.node.fleet?.nodes() ?? []).filter(node => node.images.includes(imageCid)).map(node => node.id).sort()
      return heldBy.length === 3 ? heldBy : undefined
    }, 10_000, 'B and C to list the image in their presence')
    assert.deepEqual(holders, [a, b, c].map(node => node.node.fleet?.peerId ?? '').sort())
    const byCid = join(work, 'by-cid')
    const fresh = await startTestNode({ config: { peers: [a.node.fleet?.mesh.addresses[0] ?? ''] } })
    try {
      // Joined: connected, and the fleet's inventory has reached it.
      await eventually(async () => ((await fresh.node.fleet?.nodes())?.length ?? 0) >= 3 ? true : undefined, 10_000, 'the fresh node to learn the inventory')
      await copyFromRegistry(`${fresh.host}/ipfs/${imageCid}@${image.manifestDigest}`, byCid)
      assert.deepEqual((await readLayoutIndex(byCid)).manifests.map(m => m.digest), [image.manifestDigest])
    } finally {
      await fresh.stop()
    }
  })

  it('a multi-arch index pulls from another node with --all', async () => {
    const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]
    const index = await createMultiArchLayout(join(work, 'multi'), { platforms, layerSize: 200_000, seed: 'mesh-multi' })
    await copyToRegistry(join(work, 'multi'), `${b.host}/mesh/multi:1.0`, { all: true })
    await eventually(async () => (await c.node.fleet?.catalogue.getTag('mesh/multi', '1.0')) ?? undefined, 10_000, 'the tag on C')
    const out = join(work, 'multi-out')
    await copyFromRegistry(`${c.host}/mesh/multi:1.0`, out, { all: true })
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [index.indexDigest])
  })
})
