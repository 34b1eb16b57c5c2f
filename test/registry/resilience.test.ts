// Clients that misbehave: the node answers with a 4xx, stays up, and keeps what it acknowledged.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { sendAndHangUp } from '../support/raw-http.ts'
import { RegistryClient, assertOciError, sha256 } from '../support/registry-client.ts'

describe('misbehaving clients', () => {
  let node: TestNode
  let registry: RegistryClient
  before(async () => {
    node = await startTestNode()
    registry = new RegistryClient(node.url)
  })
  after(async () => { await node.stop() })

  it('a client that disconnects mid-PATCH keeps what arrived; the node stays up', async () => {
    const kept = await registry.pushBlob('bad/client', 'acknowledged before')
    const location = (await registry.request('POST', '/v2/bad/client/blobs/uploads/')).headers.get('location') ?? ''
    const head = `PATCH ${location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\n`
    await sendAndHangUp(node.port, Buffer.concat([Buffer.from(head), Buffer.alloc(500, 1)]))
    await new Promise(resolve => setTimeout(resolve, 200))
    const status = await registry.request('GET', location)
    assert.equal(status.status, 204)
    assert.equal(status.headers.get('range'), '0-499')
    assert.equal(await (await registry.request('GET', `/v2/bad/client/blobs/${kept}`)).text(), 'acknowledged before')
  })

  it('a client that hangs up mid-download does not disturb the node', async () => {
    const bytes = Buffer.alloc(8 * 1024 * 1024 + 3, 9)
    const digest = await registry.pushBlob('bad/download', bytes)
    await sendAndHangUp(node.port, `GET /v2/bad/download/blobs/${digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`)
    const again = Buffer.from(await (await registry.request('GET', `/v2/bad/download/blobs/${digest}`)).arrayBuffer())
    assert.equal(sha256(again), digest)
  })

  it('a truncated monolithic upload is not recorded', async () => {
    const digest = sha256(Buffer.alloc(1000, 2))
    const head = `POST /v2/bad/mono/blobs/uploads/?digest=${digest} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n`
    await sendAndHangUp(node.port, Buffer.concat([Buffer.from(head), Buffer.alloc(300, 2)]))
    await assertOciError(await registry.request('GET', `/v2/bad/mono/blobs/${digest}`), 404, 'BLOB_UNKNOWN')
  })

  it('a body longer than its Content-Range is refused with SIZE_INVALID', async () => {
    const location = (await registry.request('POST', '/v2/bad/size/blobs/uploads/')).headers.get('location') ?? ''
    await assertOciError(await registry.request('PATCH', location, { body: '123456', headers: { 'content-range': '0-2' } }), 400, 'SIZE_INVALID')
  })

  it('answers odd URLs and methods with 4xx, never 500', async () => {
    const cases: Array<[string, string]> = [
      ['GET', '/v2/%zz/manifests/latest'],
      ['GET', '/v2/a/b/c'],
      ['POST', '/v2/repo/manifests/latest'],
      ['PUT', '/v2/repo/blobs/uploads/not-a-uuid?digest=' + sha256('x')],
      ['GET', '/v2/repo/blobs/uploads/../../etc/passwd'],
      ['PATCH', '/v2/ipfs/bafkqaaa/blobs/uploads/x']
    ]
    for (const [method, path] of cases) {
      const response = await registry.request(method, path)
      assert.ok(response.status >= 400 && response.status < 500, `${method} ${path} gave ${response.status}`)
      const text = await response.text()
      const body = JSON.parse(text) as { errors?: Array<{ code: string }> }
      assert.ok(body.errors?.[0]?.code, `${method} ${path} has an OCI error body: ${text}`)
    }
    assert.equal((await registry.request('GET', '/v2/')).status, 200)
  })

  it('pushes to an ipfs/<cid> repository are refused', async () => {
    await assertOciError(await registry.request('POST', '/v2/ipfs/bafkqaaa/blobs/uploads/'), 400, 'UNSUPPORTED')
  })
})
