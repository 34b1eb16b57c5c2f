// The trustless gateway: raw blocks and CARs that a receiver can verify block by block.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CarReader } from '@ipld/car'
import { CID } from 'multiformats/cid'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'

describe('GET /ipfs/<cid>', () => {
  let node: TestNode
  let imageCid: string
  before(async () => {
    node = await startTestNode()
    const registry = new RegistryClient(node.url)
    const layer = Buffer.alloc(2 * 1024 * 1024 + 10, 'x').toString()
    const { response } = await registry.pushImage('gw/app', 'v1', layer)
    imageCid = response.headers.get('shoal-image-cid') ?? ''
  })
  after(async () => { await node.stop() })

  it('serves a raw block that hashes to its CID', async () => {
    const response = await fetch(`${node.url}/ipfs/${imageCid}`, { headers: { accept: 'application/vnd.ipld.raw' } })
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'application/vnd.ipld.raw')
    const bytes = new Uint8Array(await response.arrayBuffer())
    const cid = CID.parse(imageCid)
    assert.deepEqual((await sha256Hasher.digest(bytes)).digest, cid.multihash.digest)
  })

  it('serves the whole image DAG as a CAR whose every block verifies', async () => {
    const response = await fetch(`${node.url}/ipfs/${imageCid}?format=car`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^application\/vnd\.ipld\.car/)
    const reader = await CarReader.fromBytes(new Uint8Array(await response.arrayBuffer()))
    assert.deepEqual((await reader.getRoots()).map(String), [imageCid])
    let blocks = 0
    let bytes = 0
    for await (const block of reader.blocks()) {
      assert.deepEqual((await sha256Hasher.digest(block.bytes)).digest, block.cid.multihash.digest, `block ${block.cid.toString()}`)
      blocks++
      bytes += block.bytes.length
    }
    // root, blobs/, blobs/sha256/, index.json, oci-layout, manifest, config, layer root, and
    // 2 distinct leaves: the layer's two full 1 MiB leaves are the same block, sent once.
    assert.equal(blocks, 10)
    assert.ok(bytes > 1024 * 1024 + 10)
  })

  it('answers 404 for blocks it does not hold, 400 for non-CIDs, 406 without a trustless format', async () => {
    assert.equal((await fetch(`${node.url}/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy?format=raw`)).status, 404)
    assert.equal((await fetch(`${node.url}/ipfs/not-a-cid?format=raw`)).status, 400)
    assert.equal((await fetch(`${node.url}/ipfs/${imageCid}`)).status, 406)
  })

  // Defect 16: a walk that failed mid-CAR ended the response cleanly behind its 200.
  it('cuts a CAR short when a block is missing mid-walk, never ends it cleanly', async () => {
    const registry = new RegistryClient(node.url)
    const layer = Buffer.alloc(3 * 1024 * 1024, 0)
    for (let i = 0; i < layer.length; i++) layer[i] = (i * 31) % 253
    const { response } = await registry.pushImage('gw/broken', 'v1', layer.toString('latin1'))
    const cid = response.headers.get('shoal-image-cid') ?? ''
    const whole = await CarReader.fromBytes(new Uint8Array(await (await fetch(`${node.url}/ipfs/${cid}?format=car`)).arrayBuffer()))
    const order: CID[] = []
    for await (const block of whole.blocks()) order.push(block.cid)
    const last = order.at(-1)
    assert.ok(last !== undefined && order.length > 5)
    await node.node.blockstore.delete(last)

    const broken = await fetch(`${node.url}/ipfs/${cid}?format=car`)
    assert.equal(broken.status, 200)
    await assert.rejects(broken.arrayBuffer(), 'the body ends in a transfer error, not a clean end')
    assert.equal((await fetch(`${node.url}/v2/`)).status, 200)
  })
})
