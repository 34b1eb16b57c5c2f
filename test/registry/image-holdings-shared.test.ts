// ImageHoldings on real nodes: a multi-arch index held and dropped with its children, and a drop
// that must keep what another image shares.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { ImageHoldings, ResolvedImage } from '../../src/registry/image-holdings.ts'
import { startFleet, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, createMultiArchLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
import { sha256 } from '../support/registry-client.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'
import { age as ageFiles, blockBytes as blocksDirBytes } from '../support/disk.ts'
import { holdingsOf, resolve } from '../support/image-holdings.ts'

const MiB = 1024 * 1024
const HOUR = 3_600_000

/** Bytes of every block file of a node's data directory. */
async function blockBytes (dataDir: string): Promise<number> {
  return await blocksDirBytes(join(dataDir, 'blocks'))
}

/** Sets every block file of a node's data directory as written `ageMs` ago: past the collector's grace period. */
async function age (dataDir: string, ageMs: number): Promise<void> {
  await ageFiles(join(dataDir, 'blocks'), ageMs)
}


/** Drops, then collects with every block past the grace period; the bytes freed. */
async function dropAndCollect (test: TestNode, holdings: ImageHoldings, image: ResolvedImage): Promise<number> {
  const before = await blockBytes(test.dataDir)
  await holdings.drop(image)
  await age(test.dataDir, 2 * HOUR)
  await test.node.gc.collect()
  return before - await blockBytes(test.dataDir)
}

describe('holding images that share content', () => {
  let a: TestNode
  let b: TestNode
  let aStopped = false
  let work: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-holdings-shared-'))
    ;[a, b] = await startFleet(2) as [TestNode, TestNode]
  })
  after(async () => {
    if (!aStopped) await a?.stop()
    await b?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('fetches a multi-arch index with every child whole, and drops it with its children', async () => {
    const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }]
    const layout = join(work, 'multi')
    const index = await createMultiArchLayout(layout, { platforms, layerSize: MiB + 11, seed: 'holdings-multi' })
    await copyToRegistry(layout, `${a.host}/holdings/multi:1`, { all: true })
    const resolved = await resolve(b, 'holdings/multi', '1')
    assert.equal(resolved.digest, index.indexDigest)
    const holdings = holdingsOf(b)
    const blobBytes = index.manifests.reduce((sum, m) => sum + m.totalSize - m.manifestSize, 0)
    assert.deepEqual(await holdings.size(resolved), { total: blobBytes, held: 0 })

    let last: [number, number] | undefined
    await holdings.fetch(resolved, (done, total) => { last = [done, total] }, AbortSignal.timeout(60_000))
    assert.deepEqual(last, [blobBytes, blobBytes])
    assert.equal(await holdings.holds(resolved), true)
    for (const child of index.manifests) {
      const record = await b.node.metadata.getManifest(child.manifestDigest)
      assert.ok(record !== undefined && record.partial === undefined, 'every child is recorded whole')
    }
    assert.ok((await b.node.metadata.listImages()).includes(resolved.imageCid))
    const out = join(work, 'multi-out')
    await copyFromRegistry(`${b.host}/holdings/multi:1`, out, { all: true })
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [index.indexDigest])

    const freed = await dropAndCollect(b, holdings, resolved)
    assert.equal(await holdings.holds(resolved), false)
    for (const child of index.manifests) {
      assert.equal(await b.node.metadata.getManifest(child.manifestDigest), undefined, 'children go with the index')
      for (const digest of [child.configDigest, ...child.layerDigests]) assert.equal(await b.node.metadata.getBlob(digest), undefined)
    }
    assert.deepEqual(await b.node.metadata.listImages(), [])
    assert.ok(Math.abs(freed - index.totalSize) < index.totalSize * 0.03, `${freed} bytes freed for a ${index.totalSize}-byte index`)
  })

  it('dropping one of two images that share a layer keeps the layer and the other image, which B serves alone', async () => {
    const shared = 2 * MiB + 1
    const first = await createImageLayout(join(work, 'one'), { layers: [shared, MiB + 5], seed: 'holdings-shared' })
    const second = await createImageLayout(join(work, 'two'), { layers: [shared, 1536 * 1024], seed: 'holdings-shared' })
    const sharedLayer = first.layerDigests[0] ?? ''
    assert.equal(second.layerDigests[0], sharedLayer)
    await copyToRegistry(join(work, 'one'), `${a.host}/holdings/shared:1`)
    await copyToRegistry(join(work, 'two'), `${a.host}/holdings/shared:2`)
    const one = await resolve(b, 'holdings/shared', '1')
    const two = await resolve(b, 'holdings/shared', '2')
    const holdings = holdingsOf(b)
    await holdings.fetch(one, () => {}, AbortSignal.timeout(60_000))
    await holdings.fetch(two, () => {}, AbortSignal.timeout(60_000))
    assert.equal(await holdings.holds(one), true)
    assert.equal(await holdings.holds(two), true)

    const freed = await dropAndCollect(b, holdings, one)
    assert.equal(await holdings.holds(one), false)
    assert.equal(await holdings.holds(two), true)
    assert.ok((await b.node.metadata.getBlob(sharedLayer)) !== undefined, 'the shared layer stays')
    assert.ok(await b.node.metadata.hasBlobLink('holdings/shared', sharedLayer))
    assert.equal(await b.node.metadata.getBlob(first.layerDigests[1] ?? ''), undefined, 'the layer only the dropped image had goes')
    // Its manifest, config and own layer (blob sizes: the shared layer's tar is a bit over `shared`).
    const ownBytes = first.totalSize - (first.layerSizes[0] ?? 0)
    assert.ok(Math.abs(freed - ownBytes) < ownBytes * 0.03, `${freed} bytes freed for ${ownBytes} bytes the dropped image alone had`)
    assert.deepEqual(await b.node.metadata.listImages(), [two.imageCid])

    await a.stop()
    aStopped = true
    const out = join(work, 'two-out')
    await copyFromRegistry(`${b.host}/holdings/shared:2`, out)
    for (const digest of [second.configDigest, ...second.layerDigests]) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
  })
})
