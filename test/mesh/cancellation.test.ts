// A client that leaves stops the work it caused, fetches from peers included: a pull through a
// node that reads the blob from its mesh peer ends that node's requests to the peer.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { get, type IncomingMessage } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { Counter } from 'prom-client'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

const MiB = 1024 * 1024

async function total (counter: Counter<string>): Promise<number> {
  return (await counter.get()).values.reduce((sum, { value }) => sum + value, 0)
}

/** Reads a response until `bytes` have arrived, then drops the connection. */
async function readThenLeave (url: string, bytes: number): Promise<number> {
  const request = get(url, { agent: false })
  const [response] = await once(request, 'response') as [IncomingMessage]
  assert.equal(response.statusCode, 200)
  let received = 0
  for await (const chunk of response as AsyncIterable<Buffer>) {
    received += chunk.length
    if (received >= bytes) break
  }
  assert.ok(received >= bytes, 'the response ended before the client left')
  request.destroy()
  return received
}

describe('a client that leaves mid-pull', () => {
  let seeder: TestNode
  let puller: TestNode
  const layers: Array<{ digest: string, imageCid: string }> = []

  before(async () => {
    // The seeder sends at most 1 MB/s, so a 12 MiB blob is still flowing when the client leaves.
    ;[seeder, puller] = await startFleet(2, index => index === 0 ? { uploadLimitMbps: 8 } : {}) as [TestNode, TestNode]
    const registry = new RegistryClient(seeder.url)
    for (const tag of ['by-tag', 'by-cid']) {
      const layer = randomBytes(6 * MiB).toString('hex')
      const { response } = await registry.pushImage('cancel/app', tag, layer)
      const digest = sha256(layer)
      layers.push({ digest, imageCid: response.headers.get('shoal-image-cid') ?? '' })
    }
    await eventually(async () => await puller.node.fleet?.catalogue.getTag('cancel/app', 'by-cid'), 10_000, 'the tags on the puller')
  })
  after(async () => { await Promise.all([seeder?.stop(), puller?.stop()]) })

  it('stops a manifest read or adoption from peers when its signal has aborted', async () => {
    const registry = new RegistryClient(seeder.url)
    const { digest, response } = await registry.pushImage('cancel/manifest', 'v1', 'a small layer')
    const imageCid = response.headers.get('shoal-image-cid') ?? ''
    const sentBefore = await total(seeder.node.metrics.bytesOut)
    await assert.rejects(puller.node.manifests.read(digest, imageCid, AbortSignal.abort()), { name: 'AbortError' })
    await assert.rejects(puller.node.manifests.adopt('cancel/manifest', digest, imageCid, AbortSignal.abort()), { name: 'AbortError' })
    assert.equal(await puller.node.metadata.getManifest(digest), undefined, 'nothing was adopted')
    assert.equal(await total(seeder.node.metrics.bytesOut) - sentBefore, 0, 'the seeder was asked for nothing')
    // The same reads with a live signal go through.
    assert.equal((await puller.node.manifests.read(digest, imageCid, AbortSignal.timeout(10_000))).mediaType, 'application/vnd.oci.image.manifest.v1+json')
  })

  for (const [index, path] of ['by tag', 'as ipfs/<cid>'].entries()) {
    it(`stops the puller's fetches from its peer (blob read ${path})`, async () => {
      const { digest, imageCid } = layers[index] as { digest: string, imageCid: string }
      const repository = index === 0 ? 'cancel/app' : `ipfs/${imageCid}`
      if (index === 0) {
        // The manifest GET adopts the image: its blobs are then known to the puller, not held.
        const manifest = await fetch(`${puller.url}/v2/cancel/app/manifests/by-tag`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
        assert.equal(manifest.status, 200, await manifest.text())
      }
      const sentBefore = await total(seeder.node.metrics.bytesOut)
      await readThenLeave(`${puller.url}/v2/${repository}/blobs/${digest}`, MiB)
      // Requests already on the wire end within a moment of the client leaving ...
      await sleep(1_000)
      const sent = await total(seeder.node.metrics.bytesOut)
      const fetched = await total(puller.node.metrics.meshBytesFetched)
      assert.ok(sent - sentBefore < 8 * MiB, `the seeder sent ${sent - sentBefore} bytes, not the whole blob`)
      // ... and none follow: at 1 MB/s the read-ahead alone would have kept the seeder busy.
      await sleep(3_000)
      assert.equal(await total(seeder.node.metrics.bytesOut) - sent, 0, 'the seeder sent nothing more')
      assert.equal(await total(puller.node.metrics.meshBytesFetched) - fetched, 0, 'the puller fetched nothing more')
      const errors = puller.logs.filter(line => Number(line.level) >= 50)
      assert.deepEqual(errors, [], 'a client leaving is not logged as a fault')
    })
  }
})
