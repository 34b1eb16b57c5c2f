// GET /api/v1/events on a node outside a mesh: tag changes from the local metadata, as the
// registry answers them (the mesh's side is in test/mesh/fleet.test.ts).
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { openTagEvents } from '../support/tag-events.ts'

describe('GET /api/v1/events', () => {
  let node: TestNode
  before(async () => { node = await startTestNode() })
  after(async () => { await node?.stop() })

  it('sends each tag pushed, deleted, and removed with its manifest, once the registry answers it', async () => {
    const events = await openTagEvents(node.url)
    try {
      const registry = new RegistryClient(node.url)
      const pushed = await registry.pushImage('events/app', 'v1', 'events layer')
      const set = await events.next(change => change.tag === 'v1', 5_000)
      assert.deepEqual({ ...set, at: 0 }, { repository: 'events/app', tag: 'v1', deleted: false, at: 0 })
      assert.equal((await fetch(`${node.url}/v2/events/app/manifests/v1`, { method: 'HEAD' })).status, 200)

      assert.equal((await fetch(`${node.url}/v2/events/app/manifests/v1`, { method: 'DELETE' })).status, 202)
      await events.next(change => change.tag === 'v1' && change.deleted, 5_000)

      // A manifest deleted by digest takes its tags with it: each is told of.
      await registry.pushManifest('events/app', 'v2', pushed.body, 'application/vnd.oci.image.manifest.v1+json')
      await registry.pushManifest('events/app', 'v3', pushed.body, 'application/vnd.oci.image.manifest.v1+json')
      assert.equal((await fetch(`${node.url}/v2/events/app/manifests/${pushed.digest}`, { method: 'DELETE' })).status, 202)
      await events.next(change => change.tag === 'v2' && change.deleted, 5_000)
      await events.next(change => change.tag === 'v3' && change.deleted, 5_000)
      assert.deepEqual(events.received.map(change => `${change.tag}${change.deleted ? '-' : '+'}`), ['v1+', 'v1-', 'v2+', 'v3+', 'v2-', 'v3-'])
    } finally {
      events.close()
    }
  })

  it('stops listening when the client leaves', async () => {
    const listening = (): number => (node.node.metadata as unknown as { db: { listenerCount(event: string): number } }).db.listenerCount('write')
    const settles = async (count: number): Promise<void> => {
      const deadline = Date.now() + 5_000
      while (listening() !== count && Date.now() < deadline) await new Promise(resolve => setTimeout(resolve, 20))
      assert.equal(listening(), count)
    }
    // The first test's stream is gone by now: no listener is left behind.
    await settles(0)
    const events = await openTagEvents(node.url)
    try {
      assert.equal(listening(), 1)
    } finally {
      events.close()
    }
    await settles(0)
  })
})

describe('GET /api/v1/events at a stop', () => {
  it('ends the open streams, so that the stop does not wait for their clients', async () => {
    const node = await startTestNode()
    const events = await openTagEvents(node.url)
    try {
      const started = performance.now()
      await node.stop()
      assert.ok(performance.now() - started < 5_000, `the stop took ${Math.round(performance.now() - started)} ms`)
      assert.ok(await events.ended, 'the stream ends')
    } finally {
      events.close()
    }
  })
})
