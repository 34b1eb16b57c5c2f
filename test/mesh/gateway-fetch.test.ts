// Any node as an IPFS gateway: /ipfs/<cid> answers for blocks only its peers hold (opt-in).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CarReader } from '@ipld/car'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'

describe('/ipfs/<cid> through a node that lacks the blocks', () => {
  let a: TestNode
  let fetching: TestNode
  let plain: TestNode
  let imageCid: string
  before(async () => {
    a = await startTestNode({ config: { mesh: true } })
    const peers = [a.node.fleet?.mesh.addresses[0] ?? '']
    fetching = await startTestNode({ config: { peers, gatewayFetch: true } })
    plain = await startTestNode({ config: { peers } })
    const { response } = await new RegistryClient(a.url).pushImage('gw/app', '1.0', 'gateway layer '.repeat(100_000))
    imageCid = response.headers.get('shoal-image-cid') ?? ''
    await eventually(async () => ((await fetching.node.fleet?.nodes())?.length ?? 0) >= 3 ? true : undefined, 10_000, 'the inventory')
  })
  after(async () => { await Promise.all([a, fetching, plain].map(async node => await node?.stop())) })

  it('with gatewayFetch, serves a verified CAR of an image it did not hold, and keeps it', async () => {
    const response = await fetch(`${fetching.url}/ipfs/${imageCid}?format=car`)
    assert.equal(response.status, 200)
    const reader = await CarReader.fromBytes(new Uint8Array(await response.arrayBuffer()))
    let blocks = 0
    for await (const block of reader.blocks()) {
      assert.deepEqual((await sha256Hasher.digest(block.bytes)).digest, block.cid.multihash.digest)
      assert.ok(await fetching.node.blockstore.has(block.cid), 'the block is now held')
      blocks++
    }
    assert.ok(blocks >= 8)
  })

  it('without it, answers 404 for what it does not hold', async () => {
    assert.equal((await fetch(`${plain.url}/ipfs/${imageCid}?format=raw`)).status, 404)
  })
})
