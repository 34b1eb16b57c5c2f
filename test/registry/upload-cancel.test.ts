// Cancelling an upload (DELETE) while a request is still streaming into it: never a 5xx.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { openPatch, type OpenRequest } from '../support/raw-http.ts'
import { RegistryClient, assertOciError, sha256 } from '../support/registry-client.ts'

/** The status and body of the PATCH's answer, once its head has come (or the connection closed). */
async function answerOf (patch: OpenRequest, timeoutMs = 10_000): Promise<{ status: number, body: string }> {
  const deadline = Date.now() + timeoutMs
  while (!/\r\n\r\n/.test(patch.received()) && Date.now() < deadline) {
    await Promise.race([patch.closed, new Promise(resolve => setTimeout(resolve, 20))])
    if (patch.socket.destroyed && !/\r\n\r\n/.test(patch.received())) break
  }
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(patch.received())?.[1] ?? 0)
  // Wait a moment for the body after the head.
  await new Promise(resolve => setTimeout(resolve, 100))
  const body = patch.received().split('\r\n\r\n').slice(1).join('\r\n\r\n')
  return { status, body }
}

describe('cancelling an upload while a PATCH streams into it', () => {
  let node: TestNode
  let registry: RegistryClient
  before(async () => {
    node = await startTestNode()
    registry = new RegistryClient(node.url)
  })
  after(async () => { await node.stop() })

  it('the DELETE answers 204 and the PATCH 404 BLOB_UPLOAD_UNKNOWN, never a 5xx', async () => {
    const location = (await registry.request('POST', '/v2/cancel/race/blobs/uploads/')).headers.get('location') ?? ''
    const total = 3 * 1024 * 1024
    const patch = await openPatch(node.port, location, total)
    try {
      // More than a leaf, so the session has stored blocks and a tail when the DELETE comes.
      patch.socket.write(Buffer.alloc(1536 * 1024, 1))
      await new Promise(resolve => setTimeout(resolve, 300))
      const deleted = await registry.request('DELETE', location)
      assert.equal(deleted.status, 204, await deleted.text())
      // The rest of the body arrives after the cancel (if the server still reads it).
      if (!patch.socket.destroyed) patch.socket.write(Buffer.alloc(total - 1536 * 1024, 2))
      const { status, body } = await answerOf(patch)
      assert.equal(status, 404, `the PATCH answered ${status}: ${body}`)
      assert.match(body, /BLOB_UPLOAD_UNKNOWN/)
    } finally {
      patch.socket.destroy()
    }
    await assertOciError(await registry.request('GET', location), 404, 'BLOB_UPLOAD_UNKNOWN')
    assert.deepEqual(node.logs.filter(line => (line.level as number) >= 50), [], 'nothing was logged as a server fault')
    // The node goes on taking uploads.
    await registry.pushBlob('cancel/race', 'after the race')
    assert.equal(await (await registry.request('GET', `/v2/cancel/race/blobs/${sha256('after the race')}`)).text(), 'after the race')
  })

  it('a DELETE of an upload whose PUT already completed it answers 404, and the blob stays', async () => {
    const location = (await registry.request('POST', '/v2/cancel/done/blobs/uploads/')).headers.get('location') ?? ''
    const bytes = Buffer.alloc(2 * 1024 * 1024 + 5, 3)
    const put = await registry.request('PUT', `${location}?digest=${sha256(bytes)}`, { body: bytes })
    assert.equal(put.status, 201)
    await assertOciError(await registry.request('DELETE', location), 404, 'BLOB_UPLOAD_UNKNOWN')
    assert.equal((await registry.request('HEAD', `/v2/cancel/done/blobs/${sha256(bytes)}`)).status, 200)
  })
})
