// Lazy pulls over the mesh: a Range GET on a blob the node does not hold fetches only the 1 MiB
// leaves under the range (and the tree nodes above them) from its peers, and sends them on as
// they arrive, so eStargz/SOCI-style readers (a footer, then the table of contents, then the
// files they open) work through any node.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, get, type IncomingMessage } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import type { CID } from 'multiformats/cid'
import type { Counter } from 'prom-client'
import type { PooledBytes } from '../../src/content/chunk-pool.ts'
import { buildFileDag, rawCid, type DagNode } from '../../src/content/unixfs-dag.ts'
import { BlockFetcher } from '../../src/mesh/block-fetcher.ts'
import { newSwarmKey } from '../../src/mesh/swarm-key.ts'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { metricSum } from '../support/metrics.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'
import { Scratch } from '../support/scratch.ts'

const MiB = 1024 * 1024
const KiB = 1024
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
/** 97 leaves, the last one short: ranges below name leaves by their index. */
const LAYER_SIZE = 96 * MiB + 12_345
/** What a range read may fetch beyond its own bytes: the parts of the two leaves at its ends. */
const SLACK = 2 * MiB
/**
 * The read-ahead window of a range read: the fetcher's 8 leaves ahead, the one it hands over and
 * the one writeChunks reads ahead of the socket, and the leaves cut at the range's two ends.
 */
const WINDOW = 12 * MiB

/** Bytes of verified blocks the node fetched from its peers, as its /metrics shows them. */
async function fetchedBy (node: TestNode): Promise<number> {
  return await metricSum(node.url, 'shoal_mesh_bytes_fetched_total')
}

async function total (counter: Counter<string>): Promise<number> {
  return (await counter.get()).values.reduce((sum, { value }) => sum + value, 0)
}

/** A GET with a Range header whose body the caller reads at its own pace (node:http applies backpressure). */
async function openRange (url: string, range: string): Promise<{ request: ReturnType<typeof get>, response: IncomingMessage }> {
  const request = get(url, { agent: false, headers: { range } })
  const [response] = await once(request, 'response') as [IncomingMessage]
  return { request, response }
}

describe('lazy pulls: a range read through a node that lacks the blob', () => {
  let work: string
  let seeder: TestNode
  let puller: TestNode
  let layer: Buffer
  let digest: string
  let imageCid: string

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-lazy-pull-'))
    const swarmKeyFile = join(work, 'swarm.key')
    await writeFile(swarmKeyFile, newSwarmKey())
    ;[seeder, puller] = await startFleet(2, { swarmKeyFile }) as [TestNode, TestNode]
    layer = randomBytes(LAYER_SIZE)
    digest = sha256(layer)
    const registry = new RegistryClient(seeder.url)
    const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [digest] } })
    await registry.pushBlob('lazy/app', config)
    await registry.pushBlob('lazy/app', layer)
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: Buffer.byteLength(config) },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest, size: LAYER_SIZE }]
    })
    const pushed = await registry.pushManifest('lazy/app', '1.0', manifest, OCI_MANIFEST)
    assert.equal(pushed.status, 201, await pushed.text())
    imageCid = pushed.headers.get('shoal-image-cid') ?? ''
    await eventually(async () => await puller.node.fleet?.catalogue.getTag('lazy/app', '1.0'), 10_000, 'the tag on the puller')
    // The manifest GET adopts the image: the puller then knows the layer (remote), holds none of it.
    const adopted = await fetch(`${puller.url}/v2/lazy/app/manifests/1.0`, { headers: { accept: OCI_MANIFEST } })
    assert.equal(adopted.status, 200, await adopted.text())
    assert.equal((await puller.node.metadata.getBlob(digest))?.remote, true)
  })
  after(async () => {
    await Promise.all([seeder?.stop(), puller?.stop()])
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  it('a HEAD fetches nothing; a middle, a suffix and a start range each fetch at most the range plus 2 MiB', async t => {
    const url = `${puller.url}/v2/lazy/app/blobs/${digest}`
    let before = await fetchedBy(puller)
    const head = await fetch(url, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('content-length'), String(LAYER_SIZE))
    assert.equal(await fetchedBy(puller) - before, 0, 'a HEAD fetched nothing')

    const ranges = [
      // 100 KiB across the boundary of leaves 7 and 8.
      { header: `bytes=${8 * MiB - 50 * KiB}-${8 * MiB + 50 * KiB - 1}`, start: 8 * MiB - 50 * KiB, end: 8 * MiB + 50 * KiB - 1 },
      // The last 51 bytes: an eStargz footer.
      { header: 'bytes=-51', start: LAYER_SIZE - 51, end: LAYER_SIZE - 1 },
      // A small range at the start (a tar header).
      { header: 'bytes=0-1023', start: 0, end: 1023 }
    ]
    for (const { header, start, end } of ranges) {
      before = await fetchedBy(puller)
      const sentBefore = await total(seeder.node.metrics.bytesOut)
      const response = await fetch(url, { headers: { range: header } })
      assert.equal(response.status, 206, header)
      assert.equal(response.headers.get('content-range'), `bytes ${start}-${end}/${LAYER_SIZE}`)
      assert.equal(response.headers.get('content-length'), String(end - start + 1))
      const body = Buffer.from(await response.arrayBuffer())
      assert.ok(body.equals(layer.subarray(start, end + 1)), `${header}: the layer's bytes`)
      const fetched = await fetchedBy(puller) - before
      const sent = await total(seeder.node.metrics.bytesOut) - sentBefore
      t.diagnostic(`${header} (${end - start + 1} bytes): fetched ${fetched} bytes, the seeder sent ${sent}`)
      assert.ok(fetched > 0, `${header}: the bytes came over the mesh`)
      assert.ok(fetched <= end - start + 1 + SLACK, `${header}: fetched ${fetched} bytes for a range of ${end - start + 1}`)
      assert.ok(sent <= end - start + 1 + SLACK, `${header}: the seeder sent ${sent} bytes for a range of ${end - start + 1}`)
    }
    assert.equal((await puller.node.metadata.getBlob(digest))?.remote, true, 'range reads do not make the blob held')
  })

  it('a range read as ipfs/<image CID> is lazy too', async t => {
    const url = `${puller.url}/v2/ipfs/${imageCid}/blobs/${digest}`
    let before = await fetchedBy(puller)
    const head = await fetch(url, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(head.headers.get('content-length'), String(LAYER_SIZE))
    // The blob's size is read from its root node (about 4 KiB for 97 links), fetched if missing.
    const headFetched = await fetchedBy(puller) - before
    t.diagnostic(`ipfs/<cid> HEAD: fetched ${headFetched} bytes`)
    assert.ok(headFetched < 64 * KiB, `a HEAD fetched ${headFetched} bytes`)

    const start = 12 * MiB - 50 * KiB
    const end = 12 * MiB + 50 * KiB - 1
    before = await fetchedBy(puller)
    const response = await fetch(url, { headers: { range: `bytes=${start}-${end}` } })
    assert.equal(response.status, 206)
    assert.equal(response.headers.get('content-range'), `bytes ${start}-${end}/${LAYER_SIZE}`)
    assert.ok(Buffer.from(await response.arrayBuffer()).equals(layer.subarray(start, end + 1)))
    const fetched = await fetchedBy(puller) - before
    t.diagnostic(`ipfs/<cid> bytes=${start}-${end}: fetched ${fetched} bytes`)
    assert.ok(fetched > 0 && fetched <= end - start + 1 + SLACK, `fetched ${fetched} bytes`)
    assert.equal((await puller.node.metadata.getBlob(digest))?.remote, true)
  })

  it('a 40 MiB range is sent as it arrives, fetched as the client reads it', async t => {
    const start = 16 * MiB
    const end = 56 * MiB - 1
    const before = await fetchedBy(puller)
    const sentBefore = await total(puller.node.metrics.bytesOut)
    const { request, response } = await openRange(`${puller.url}/v2/lazy/app/blobs/${digest}`, `bytes=${start}-${end}`)
    try {
      assert.equal(response.statusCode, 206)
      assert.equal(response.headers['content-range'], `bytes ${start}-${end}/${LAYER_SIZE}`)
      assert.equal(response.headers['content-length'], String(end - start + 1))
      // The headers are here and the body is not read: the node fetches no more than its
      // read-ahead window beyond what the socket took, whatever the machine's speed. Had it
      // fetched the whole range before answering, all 40 MiB would be counted by now.
      await sleep(1_000)
      const fetchedUnread = await fetchedBy(puller) - before
      const sentUnread = await total(puller.node.metrics.bytesOut) - sentBefore
      t.diagnostic(`headers received, body not read for 1 s: fetched ${fetchedUnread} of ${end - start + 1} bytes, written to the socket ${sentUnread}`)
      assert.ok(fetchedUnread > 0)
      assert.ok(fetchedUnread <= sentUnread + WINDOW, `fetched ${fetchedUnread} bytes, ${sentUnread} of them written to the client`)
      assert.ok(fetchedUnread < 24 * MiB, `fetched ${fetchedUnread} bytes before the client read any`)
      const chunks: Buffer[] = []
      for await (const chunk of response as AsyncIterable<Buffer>) chunks.push(chunk)
      assert.ok(Buffer.concat(chunks).equals(layer.subarray(start, end + 1)), 'the range\'s bytes')
    } finally {
      request.destroy()
    }
    const fetched = await fetchedBy(puller) - before
    t.diagnostic(`bytes=${start}-${end}: fetched ${fetched} bytes in all`)
    assert.ok(fetched <= end - start + 1 + SLACK, `fetched ${fetched} bytes`)
    assert.equal((await puller.node.metadata.getBlob(digest))?.remote, true, 'a range read does not make the blob held')
  })

  it('a client that leaves mid-range stops the fetches', async t => {
    const start = 56 * MiB
    const end = 96 * MiB - 1
    const before = await fetchedBy(puller)
    const { request, response } = await openRange(`${puller.url}/v2/lazy/app/blobs/${digest}`, `bytes=${start}-${end}`)
    assert.equal(response.statusCode, 206)
    let received = 0
    for await (const chunk of response as AsyncIterable<Buffer>) {
      received += chunk.length
      if (received >= MiB) break
    }
    request.destroy()
    // Requests already on the wire end within a moment of the client leaving ...
    await sleep(1_000)
    const fetched = await fetchedBy(puller) - before
    // ... and none follow.
    await sleep(2_000)
    const later = await fetchedBy(puller) - before
    t.diagnostic(`left after ${received} bytes: fetched ${fetched} bytes, ${later} 2 s later, of a ${end - start + 1}-byte range`)
    assert.equal(later, fetched, 'the puller fetched nothing more')
    assert.ok(fetched < 24 * MiB, `fetched ${fetched} bytes of a range of ${end - start + 1}`)
    assert.equal((await puller.node.metadata.getBlob(digest))?.remote, true, 'a read cut short does not make the blob held')
    const errors = puller.logs.filter(line => Number(line.level) >= 50)
    assert.deepEqual(errors, [], 'a client leaving is not logged as a fault')
  })

  it('after range reads a whole read returns the blob, fetches only the leaves not yet held, and the node holds it', async t => {
    assert.equal((await puller.node.metadata.getBlob(digest))?.remote, true)
    const before = await fetchedBy(puller)
    const response = await fetch(`${puller.url}/v2/lazy/app/blobs/${digest}`)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-length'), String(LAYER_SIZE))
    const body = Buffer.from(await response.arrayBuffer())
    assert.equal(sha256(body), digest)
    const fetched = await fetchedBy(puller) - before
    t.diagnostic(`whole read after the range reads: fetched ${fetched} of ${LAYER_SIZE} bytes`)
    // Leaves 0, 7-8, 11-12 and 16-56 at least were fetched by the reads before.
    assert.ok(fetched <= LAYER_SIZE - 46 * MiB, `fetched ${fetched} bytes: the leaves held were fetched again`)
    // Recorded just after the last bytes went out (the client may have them a moment before).
    await eventually(async () => (await puller.node.metadata.getBlob(digest))?.remote === undefined ? true : undefined, 5_000, 'the blob to be recorded as held')
    // Held, it is read from the node's own disk.
    const again = await fetch(`${puller.url}/v2/lazy/app/blobs/${digest}`, { headers: { range: 'bytes=-51' } })
    assert.ok(Buffer.from(await again.arrayBuffer()).equals(layer.subarray(-51)))
    assert.equal(await fetchedBy(puller) - before, fetched, 'a read of a held blob fetches nothing')
  })
})

describe('lazy pulls: a range of a file more than one level deep', () => {
  const scratch = new Scratch()
  after(async () => { await scratch.cleanup() })

  it('fetches the nodes on the path to the range\'s leaves and those leaves, nothing past its end', async () => {
    // 2,100 leaves of 16 bytes: a root over three inner nodes (1,024, 1,024 and 52 leaves), the
    // shape a file over 1 GiB has, built small.
    const blocks = new Map<string, Uint8Array>()
    const leaves: DagNode[] = []
    const content: Buffer[] = []
    for (let i = 0; i < 2_100; i++) {
      const bytes = Buffer.from(`leaf ${String(i).padStart(11, '0')}`)
      const cid = rawCid(bytes)
      blocks.set(cid.toString(), bytes)
      leaves.push({ cid, dagSize: bytes.length, fileSize: bytes.length })
      content.push(bytes)
    }
    const file = Buffer.concat(content)
    const root = await buildFileDag(leaves, { put: async (cid: CID, bytes: Uint8Array) => { blocks.set(cid.toString(), bytes) } })
    const leafIndex = new Map(leaves.map((leaf, i) => [leaf.cid.toString(), i]))
    const asked: string[] = []
    const provider = { id: 'provider', url: await scratch.listen(createServer((req, res) => {
      const cid = (req.url ?? '').replace(/^\/ipfs\//, '')
      asked.push(cid)
      const bytes = blocks.get(cid)
      if (bytes === undefined) res.writeHead(404).end()
      else res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' }).end(bytes)
    })) }
    const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore() })
    const read = async (start: number, end: number): Promise<{ bytes: Buffer, leaves: number[], inner: number }> => {
      asked.length = 0
      const parts: Buffer[] = []
      for await (const chunk of fetcher.fetchFileChunks(root.cid, [provider], start, end, AbortSignal.timeout(10_000)) as AsyncIterable<PooledBytes>) {
        parts.push(Buffer.from(chunk.bytes))
        chunk.release()
      }
      const fetchedLeaves = asked.map(cid => leafIndex.get(cid)).filter(i => i !== undefined)
      return { bytes: Buffer.concat(parts), leaves: fetchedLeaves.sort((x, y) => x - y), inner: asked.length - fetchedLeaves.length }
    }
    // Leaves 1,020-1,030, across the first two inner nodes: the root, both of them, 11 leaves.
    let range = await read(1_020 * 16 + 5, 1_030 * 16 + 9)
    assert.ok(range.bytes.equals(file.subarray(1_020 * 16 + 5, 1_030 * 16 + 10)))
    assert.deepEqual(range.leaves, Array.from({ length: 11 }, (_, i) => 1_020 + i))
    assert.equal(range.inner, 3)
    // Three leaves under the third inner node: it alone (the root is held now), and no
    // read-ahead past the range's end (the window is 8 leaves).
    range = await read(2_060 * 16, 2_063 * 16 - 1)
    assert.ok(range.bytes.equals(file.subarray(2_060 * 16, 2_063 * 16)))
    assert.deepEqual(range.leaves, [2_060, 2_061, 2_062])
    assert.equal(range.inner, 1)
  })
})
