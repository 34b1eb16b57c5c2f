// ImageHoldings on real nodes: fetch an image pushed elsewhere, hold it whole, serve it alone,
// drop it and get the disk back.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
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


describe('holding an image pushed to another node', () => {
  let a: TestNode
  let b: TestNode
  let aStopped = false
  let work: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-holdings-'))
    ;[a, b] = await startFleet(2) as [TestNode, TestNode]
  })
  after(async () => {
    if (!aStopped) await a?.stop()
    await b?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('fetches it whole with progress, serves it with the pusher gone, and drops it to give the disk back', async () => {
    const layout = join(work, 'app')
    const image = await createImageLayout(layout, { layers: [2 * MiB + 3, MiB + 7, 300_000], seed: 'image-holdings' })
    await copyToRegistry(layout, `${a.host}/holdings/app:1`)
    const resolved = await resolve(b, 'holdings/app', '1')
    assert.equal(resolved.digest, image.manifestDigest)
    const holdings = holdingsOf(b)
    const blobBytes = image.totalSize - image.manifestSize

    assert.equal(await holdings.holds(resolved), false)
    assert.deepEqual(await holdings.size(resolved), { total: blobBytes, held: 0 }, 'sized from the fleet before it is here')
    await assert.rejects(holdings.fetch(resolved, () => {}, AbortSignal.abort()), { name: 'AbortError' })

    const progress: Array<[number, number]> = []
    await holdings.fetch(resolved, (done, total) => progress.push([done, total]), AbortSignal.timeout(60_000))
    assert.deepEqual(progress.at(-1), [blobBytes, blobBytes])
    assert.ok(progress.length >= 5, `progress as bytes arrived, not only at the end: ${JSON.stringify(progress)}`)
    assert.ok(progress.every(([done, total], i) => total === blobBytes && done <= total && done >= (progress[i - 1]?.[0] ?? 0)), 'progress only grows')

    assert.equal(await holdings.holds(resolved), true)
    assert.deepEqual(await holdings.size(resolved), { total: blobBytes, held: blobBytes })
    assert.equal((await b.node.metadata.getManifest(resolved.digest))?.partial, undefined, 'the manifest is whole')
    assert.ok((await b.node.metadata.listImages()).includes(resolved.imageCid), 'the inventory lists it')
    const bId = b.node.fleet?.mesh.peerId.toString()
    await eventually(async () => (await a.node.fleet?.nodes())?.find(node => node.id === bId)?.images.includes(resolved.imageCid) === true ? true : undefined,
      10_000, 'A to see B hold the image')
    // Fetching what is held changes nothing.
    const again: Array<[number, number]> = []
    await holdings.fetch(resolved, (done, total) => again.push([done, total]), AbortSignal.timeout(10_000))
    assert.deepEqual(again, [[blobBytes, blobBytes]])

    await a.stop()
    aStopped = true
    const out = join(work, 'out')
    await copyFromRegistry(`${b.host}/holdings/app:1`, out)
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [image.manifestDigest])
    for (const digest of [image.configDigest, ...image.layerDigests]) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)

    const withImage = await blockBytes(b.dataDir)
    await holdings.drop(resolved)
    assert.equal(await holdings.holds(resolved), false)
    assert.equal(await b.node.metadata.getManifest(resolved.digest), undefined)
    for (const digest of [image.configDigest, ...image.layerDigests]) assert.equal(await b.node.metadata.getBlob(digest), undefined, digest)
    assert.ok(!(await b.node.metadata.listImages()).includes(resolved.imageCid), 'the inventory no longer lists it')
    assert.equal(await b.node.metadata.getTag('holdings/app', '1'), undefined)

    await age(b.dataDir, 2 * HOUR)
    const result = await b.node.gc.collect()
    const freed = withImage - await blockBytes(b.dataDir)
    assert.ok(Math.abs(freed - image.totalSize) < image.totalSize * 0.02, `${freed} bytes freed for a ${image.totalSize}-byte image`)
    assert.ok(result.removedBytes >= freed)

    // Nobody holds it now: the pusher is gone and B let it go.
    await assert.rejects(holdings.fetch(resolved, () => {}, AbortSignal.timeout(60_000)),
      (err: Error) => err.name === 'ImageUnavailableError' && (err.cause as Error).name === 'BlockUnavailableError')
  })
})
