// A collection racing a push of the very blob it is removing: nothing acknowledged may be lost.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { utimes } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import type { ShoalNode } from '../../src/node.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

const MiB = 1024 * 1024
const ROUNDS = 100
const REPOSITORY = 'gc/race'

/** Sets the files of a blob's blocks as written two hours ago: past the collector's grace period. */
async function ageBlob (node: ShoalNode, root: CID): Promise<void> {
  const when = new Date(Date.now() - 2 * 3_600_000)
  const leaves = dagPb.decode(await node.blockstore.getBytes(root)).Links.map(link => link.Hash)
  for (const cid of [root, ...leaves]) await utimes(node.blockstore.pathOf(cid), when, when)
}

/** A chunked push: POST, PATCH in pieces, PUT with the digest. */
async function pushChunked (registry: RegistryClient, bytes: Buffer, digest: string): Promise<void> {
  const location = (await registry.request('POST', `/v2/${REPOSITORY}/blobs/uploads/`)).headers.get('location') ?? ''
  const piece = Math.ceil(bytes.length / 3)
  for (let offset = 0; offset < bytes.length; offset += piece) {
    const chunk = bytes.subarray(offset, offset + piece)
    const response = await registry.request('PATCH', location, {
      body: chunk, headers: { 'content-type': 'application/octet-stream', 'content-range': `${offset}-${offset + chunk.length - 1}` }
    })
    assert.equal(response.status, 202, await response.text())
  }
  const done = await registry.request('PUT', `${location}?digest=${digest}`)
  assert.equal(done.status, 201, await done.text())
}

describe('garbage collection racing pushes', () => {
  let test: TestNode
  let registry: RegistryClient
  before(async () => {
    test = await startTestNode()
    registry = new RegistryClient(test.url)
  })
  after(async () => { await test?.stop() })

  it(`keeps every blob a push acknowledged, over ${ROUNDS} rounds of collect-while-pushing`, async () => {
    const blob = randomBytes(2 * MiB + 1234)
    const digest = sha256(blob)
    const push = async (round: number): Promise<void> => {
      if (round % 2 === 0) await registry.pushBlob(REPOSITORY, blob, digest)
      else await pushChunked(registry, blob, digest)
    }
    // Start times are spread over about as long as either took last time, so every phase of
    // the collection meets every phase of the push.
    const timed = async <T>(work: () => Promise<T>): Promise<[T, number]> => {
      const started = Date.now()
      return [await work(), Date.now() - started]
    }
    const [, pushMs] = await timed(async () => { await push(0) })
    const [, collectMs] = await timed(async () => await test.node.gc.collect())
    let spreadMs = Math.max(pushMs, collectMs)

    let removedBlocks = 0
    for (let round = 0; round < ROUNDS; round++) {
      // The blob's blocks are now garbage: its record is dropped (as issue 5 does) and they are
      // older than the grace period, so a collection alone would remove every one of them.
      const root = CID.parse((await test.node.metadata.getBlob(digest))?.cid ?? '')
      await test.node.metadata.unlinkBlob(REPOSITORY, digest)
      await test.node.metadata.blobs.del(digest)
      await ageBlob(test.node, root)

      const [[collected, collectMs], [, pushMs]] = await Promise.all([
        sleep(Math.random() * spreadMs).then(async () => await timed(async () => await test.node.gc.collect())),
        sleep(Math.random() * spreadMs).then(async () => await timed(async () => { await push(round) }))
      ])
      removedBlocks += collected.removedBlocks
      spreadMs = Math.max(pushMs, collectMs)

      const response = await registry.request('GET', `/v2/${REPOSITORY}/blobs/${digest}`)
      assert.equal(response.status, 200, `round ${round}`)
      assert.equal(sha256(Buffer.from(await response.arrayBuffer())), digest, `round ${round}: the blob pushed is whole`)
    }
    assert.ok(removedBlocks > 0, 'the collections did remove blocks the pushes then wrote again')
  })
})
