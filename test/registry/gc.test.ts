// Garbage collection on a real node: what /v2 pushed and was then dropped goes, the rest stays.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'
import { age, blockBytes } from '../support/disk.ts'

const MiB = 1024 * 1024
const HOUR = 3_600_000
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'



interface PushedImage {
  manifestDigest: string
  blobDigests: string[]
  /** Bytes of the manifest, config and layers. */
  totalSize: number
}

/** Pushes a config, random layers of the given sizes and a manifest naming them. */
async function pushImage (registry: RegistryClient, repository: string, tag: string, layerSizes: number[]): Promise<PushedImage> {
  const layers = layerSizes.map(size => randomBytes(size))
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: layers.map(layer => sha256(layer)) } })
  const blobDigests = [await registry.pushBlob(repository, config)]
  for (const layer of layers) blobDigests.push(await registry.pushBlob(repository, layer))
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: Buffer.byteLength(config) },
    layers: layers.map(layer => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: layer.length }))
  })
  const response = await registry.pushManifest(repository, tag, manifest, OCI_MANIFEST)
  assert.equal(response.status, 201, await response.text())
  const totalSize = Buffer.byteLength(manifest) + Buffer.byteLength(config) + layerSizes.reduce((a, b) => a + b, 0)
  return { manifestDigest: sha256(manifest), blobDigests, totalSize }
}

describe('garbage collection on a node', () => {
  let test: TestNode
  let registry: RegistryClient
  let blocksDir: string
  before(async () => {
    test = await startTestNode()
    registry = new RegistryClient(test.url)
    blocksDir = join(test.dataDir, 'blocks')
  })
  after(async () => { await test?.stop() })

  it('gives back the disk space of an image whose records are dropped; other images still pull', async () => {
    await pushImage(registry, 'gc/keep', '1', [MiB + 5, 300_000])
    const withoutApp = await blockBytes(blocksDir)
    const app = await pushImage(registry, 'gc/app', '1', [8 * MiB + 1, 7 * MiB + 3, 5 * MiB + 5])
    const withApp = await blockBytes(blocksDir)
    assert.ok(withApp - withoutApp >= app.totalSize, 'the image is on disk')

    // /v2 DELETE unlinks the manifest and blobs from the repository...
    assert.equal((await registry.request('DELETE', `/v2/gc/app/manifests/${app.manifestDigest}`)).status, 202)
    for (const digest of app.blobDigests) assert.equal((await registry.request('DELETE', `/v2/gc/app/blobs/${digest}`)).status, 202)
    // ...and keeps the global records, which a mount may still use: they are the roots. Dropping
    // them is what removing a replication strategy does (issue 5); here directly.
    await test.node.metadata.manifests.del(app.manifestDigest)
    for (const digest of app.blobDigests) await test.node.metadata.blobs.del(digest)
    await age(blocksDir, 2 * HOUR)

    const result = await test.node.gc.collect()

    const afterGc = await blockBytes(blocksDir)
    assert.equal(afterGc, withoutApp, 'exactly the image\'s blocks went: its data, DAG nodes and layout directory')
    assert.equal(result.removedBytes, withApp - afterGc)
    assert.ok(result.removedBytes < app.totalSize * 1.01, `${result.removedBytes} bytes freed for a ${app.totalSize}-byte image`)
    await registry.assertPullable('gc/keep', '1')

    const metrics = await (await fetch(`${test.url}/metrics`)).text()
    assert.match(metrics, /shoal_gc_runs_total\{outcome="completed"\} 1\b/)
    assert.match(metrics, new RegExp(`shoal_gc_bytes_removed_total ${result.removedBytes}\\b`))
  })

  it('frees the leaves of a cancelled upload and keeps those of one still open', async () => {
    const start = async (): Promise<string> => (await registry.request('POST', '/v2/gc/uploads/blobs/uploads/')).headers.get('location') ?? ''
    const cancelled = await start()
    const open = await start()
    const parts = [randomBytes(3 * MiB), randomBytes(3 * MiB)]
    for (const [i, location] of [cancelled, open].entries()) {
      const response = await registry.request('PATCH', location, { body: parts[i], headers: { 'content-type': 'application/octet-stream' } })
      assert.equal(response.status, 202)
    }
    assert.equal((await registry.request('DELETE', cancelled)).status, 204)
    await age(blocksDir, 2 * HOUR)
    const beforeGc = await blockBytes(blocksDir)

    const result = await test.node.gc.collect()

    assert.equal(result.removedBlocks, 3)
    assert.equal(beforeGc - await blockBytes(blocksDir), 3 * MiB)
    const rest = randomBytes(1000)
    const digest = sha256(Buffer.concat([parts[1] as Buffer, rest]))
    const done = await registry.request('PUT', `${open}?digest=${digest}`, { body: rest, headers: { 'content-type': 'application/octet-stream' } })
    assert.equal(done.status, 201, await done.text())
    const blob = await registry.request('GET', `/v2/gc/uploads/blobs/${digest}`)
    assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), digest)
    await registry.assertPullable('gc/keep', '1')
  })
})

describe('garbage collection on a mesh node', () => {
  it('keeps the catalogue\'s blocks (pinned by OrbitDB in the shared blockstore) across a restart', async () => {
    const first = await startTestNode({ config: { mesh: true } })
    const dataDir = first.dataDir
    let second: TestNode | undefined
    let plain: TestNode | undefined
    try {
      await pushImage(new RegistryClient(first.url), 'gc/mesh', '1', [MiB + 7])
      await age(join(dataDir, 'blocks'), 2 * HOUR)
      await first.node.stop()

      // The mesh datastore holds the pins: without the mesh open a collection must not guess.
      plain = await startTestNode({ dataDir })
      await assert.rejects(plain.node.gc.collect(), { name: 'GcUnavailableError' })
      await plain.stop()
      plain = undefined

      second = await startTestNode({ dataDir, config: { mesh: true } })
      const result = await second.node.gc.collect()
      assert.equal(result.removedBlocks, 0, 'every block is a record\'s or a pinned catalogue entry')
      await second.stop()
      second = undefined

      // The catalogue reloads its log from the blockstore: the tag is still there.
      second = await startTestNode({ dataDir, config: { mesh: true } })
      assert.equal((await second.node.fleet?.catalogue.getTag('gc/mesh', '1'))?.repository, 'gc/mesh')
      await new RegistryClient(second.url).assertPullable('gc/mesh', '1')
    } finally {
      await plain?.stop()
      await second?.stop()
      await rm(dataDir, { recursive: true, force: true })
    }
  })
})
