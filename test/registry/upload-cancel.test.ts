// Cancelling an upload (DELETE) while a request is still streaming into it: never a 5xx.
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, assertOciError, sha256 } from '../support/registry-client.ts'

/** A request written by hand, so its body can stop half way and go on later. */
class RawRequest {
  private readonly socket: Socket
  private received = ''
  private readonly ended: Promise<void>

  constructor (port: number, head: string) {
    this.socket = connect(port, '127.0.0.1')
    this.socket.setEncoding('utf8')
    this.socket.on('data', (text: string) => { this.received += text })
    this.socket.on('error', () => { /* the server may close on us; what it answered is kept */ })
    this.ended = new Promise(resolve => this.socket.once('close', () => { resolve() }))
    this.socket.write(head)
  }

  send (bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes)
  }

  /** The status line and body of the answer, once one has come (or the socket closed). */
  async answer (timeoutMs = 10_000): Promise<{ status: number, body: string }> {
    const deadline = Date.now() + timeoutMs
    while (!/\r\n\r\n/.test(this.received) && Date.now() < deadline) {
      await Promise.race([this.ended, new Promise(resolve => setTimeout(resolve, 20))])
      if (this.socket.destroyed && !/\r\n\r\n/.test(this.received)) break
    }
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(this.received)?.[1] ?? 0)
    // Wait a moment for the body after the head.
    await new Promise(resolve => setTimeout(resolve, 100))
    const body = this.received.split('\r\n\r\n').slice(1).join('\r\n\r\n')
    return { status, body }
  }

  close (): void {
    this.socket.destroy()
  }
}

describe('cancelling an upload while a PATCH streams into it', () => {
  let node: TestNode
  let registry: RegistryClient
  let port: number
  before(async () => {
    node = await startTestNode()
    registry = new RegistryClient(node.url)
    port = Number(new URL(node.url).port)
  })
  after(async () => { await node.stop() })

  it('the DELETE answers 204 and the PATCH 404 BLOB_UPLOAD_UNKNOWN, never a 5xx', async () => {
    const location = (await registry.request('POST', '/v2/cancel/race/blobs/uploads/')).headers.get('location') ?? ''
    const total = 3 * 1024 * 1024
    const patch = new RawRequest(port, `PATCH ${location} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: ${total}\r\n\r\n`)
    try {
      // More than a leaf, so the session has stored blocks and a tail when the DELETE comes.
      patch.send(Buffer.alloc(1536 * 1024, 1))
      await new Promise(resolve => setTimeout(resolve, 300))
      const deleted = await registry.request('DELETE', location)
      assert.equal(deleted.status, 204, await deleted.text())
      // The rest of the body arrives after the cancel (if the server still reads it).
      patch.send(Buffer.alloc(total - 1536 * 1024, 2))
      const { status, body } = await patch.answer()
      assert.equal(status, 404, `the PATCH answered ${status}: ${body}`)
      assert.match(body, /BLOB_UPLOAD_UNKNOWN/)
    } finally {
      patch.close()
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
