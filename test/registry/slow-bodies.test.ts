// Defect 4: request bodies that stall or trickle are cut, the upload keeps what arrived and can be
// resumed, and a slow but honest client still finishes.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { DEFAULT_CONFIG } from '../../src/config.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { openPatch } from '../support/raw-http.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

const sleep = async (ms: number): Promise<void> => { await new Promise(resolve => setTimeout(resolve, ms)) }

describe('slow request bodies', () => {
  it('defaults: silent for a minute, or under 1 KiB/s over 30 s, is cut', () => {
    assert.equal(DEFAULT_CONFIG.bodyIdleSeconds, 60)
    assert.equal(DEFAULT_CONFIG.bodyMinBytesPerSecond, 1024)
    assert.equal(DEFAULT_CONFIG.bodyRateWindowSeconds, 30)
  })

  describe('on a node with a short window', () => {
    let node: TestNode
    let registry: RegistryClient
    before(async () => {
      node = await startTestNode({ config: { bodyIdleSeconds: 1.5, bodyMinBytesPerSecond: 1024, bodyRateWindowSeconds: 1 } })
      registry = new RegistryClient(node.url)
    })
    after(async () => { await node.stop() })

    const startUpload = async (repository: string): Promise<string> =>
      (await registry.request('POST', `/v2/${repository}/blobs/uploads/`)).headers.get('location') ?? ''

    it('a trickle (a few bytes every 200 ms) is cut; the upload keeps what arrived and resumes', async () => {
      const blob = Buffer.alloc(4000, 7)
      const location = await startUpload('slow/trickle')
      const patch = await openPatch(node.port, location, blob.length)
      patch.socket.write(blob.subarray(0, 1000))
      let sent = 1000
      const trickle = setInterval(() => { if (!patch.socket.destroyed) { patch.socket.write(blob.subarray(sent, sent + 5)); sent += 5 } }, 200)
      const cutAfter = await Promise.race([patch.closed, sleep(10_000).then(() => Infinity)])
      clearInterval(trickle)
      patch.socket.destroy()
      assert.ok(cutAfter < 5_000, `cut after ${Math.round(cutAfter)} ms`)
      assert.match(patch.received(), /^HTTP\/1\.1 408 /, patch.received())
      assert.match(patch.received(), /"code":"BLOB_UPLOAD_INVALID"/)

      // What arrived is kept: the client asks where the upload stands and sends the rest.
      const status = await registry.request('GET', location)
      assert.equal(status.status, 204)
      const kept = Number(/^0-(\d+)$/.exec(status.headers.get('range') ?? '')?.[1] ?? -1) + 1
      assert.ok(kept >= 1000 && kept <= sent, `kept ${kept} of the ${sent} bytes sent`)
      const rest = await registry.request('PATCH', location, { body: blob.subarray(kept), headers: { 'content-range': `${kept}-${blob.length - 1}` } })
      assert.equal(rest.status, 202, await rest.text())
      const done = await registry.request('PUT', `${location}?digest=${sha256(blob)}`)
      assert.equal(done.status, 201, await done.text())
      assert.equal(sha256(Buffer.from(await (await registry.request('GET', `/v2/slow/trickle/blobs/${sha256(blob)}`)).arrayBuffer())), sha256(blob))
      assert.deepEqual(node.logs.filter(line => (line.level as number) >= 50), [])
    })

    it('a body that falls silent is cut after the idle timeout', async () => {
      const node2 = await startTestNode({ config: { bodyIdleSeconds: 1, bodyMinBytesPerSecond: 0 } })
      try {
        const client = new RegistryClient(node2.url)
        const location = (await client.request('POST', '/v2/slow/idle/blobs/uploads/')).headers.get('location') ?? ''
        const patch = await openPatch(node2.port, location, 5000)
        patch.socket.write(Buffer.alloc(2000, 1))
        const cutAfter = await Promise.race([patch.closed, sleep(5_000).then(() => Infinity)])
        patch.socket.destroy()
        assert.ok(cutAfter >= 900 && cutAfter < 3_000, `cut after ${Math.round(cutAfter)} ms`)
        assert.match(patch.received(), /^HTTP\/1\.1 408 /)
        assert.equal((await client.request('GET', location)).headers.get('range'), '0-1999')
      } finally {
        await node2.stop()
      }
    })

    it('a slow but honest client (about 3 KiB/s, in small pieces) finishes', async () => {
      const blob = Buffer.alloc(9 * 1024, 3)
      const location = await startUpload('slow/honest')
      const patch = await openPatch(node.port, location, blob.length)
      for (let at = 0; at < blob.length; at += 300) {
        patch.socket.write(blob.subarray(at, at + 300))
        await sleep(100)
      }
      await sleep(300)
      assert.match(patch.received(), /^HTTP\/1\.1 202 /, patch.received())
      patch.socket.destroy()
      assert.equal((await registry.request('PUT', `${location}?digest=${sha256(blob)}`)).status, 201)
    })

    it('fast bodies are never cut, the time the node spends storing them is not the client\'s', async () => {
      const blob = Buffer.alloc(24 * 1024 * 1024)
      for (let i = 0; i < blob.length; i += 4096) blob[i] = i % 251
      assert.equal(await registry.pushBlob('slow/fast', blob), sha256(blob))
      assert.equal((await registry.pushImage('slow/manifest', 'v1', 'a layer')).response.status, 201)
    })
  })
})
