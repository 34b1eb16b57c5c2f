// The error registry: every error has one descriptor, and each HTTP face renders any error, whoever
// raised it (a handler, fastify, Node's HTTP parser), in its own format.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { describeError } from '../../src/http-errors.ts'
import * as registryErrors from '../../src/oci/errors.ts'
import { BlobUnknownError, ClientAbortedError, ShoalError, UploadRangeError } from '../../src/oci/errors.ts'
import { InvalidLabelsError, InvalidStrategyError } from '../../src/replication/strategy.ts'
import { StrategyNotFoundError } from '../../src/replication/strategy-service.ts'
import { AppendLimitError } from '../../src/content/chunked-blob-writer.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { rawRequest, sendAndHangUp } from '../support/raw-http.ts'
import { RegistryClient } from '../support/registry-client.ts'

describe('describeError', () => {
  it('every error class of the registry has its own descriptor, with a code of the OCI table\'s form', () => {
    const classes = Object.entries(registryErrors).filter(([, value]) => typeof value === 'function' && value.prototype instanceof ShoalError)
    assert.ok(classes.length >= 20)
    for (const [name, type] of classes) {
      const descriptor = (type as unknown as { descriptor: { code: string, status: number } }).descriptor
      assert.notEqual(descriptor.code, 'UNKNOWN', `${name} has a descriptor of its own`)
      assert.match(descriptor.code, /^[A-Z_]+$/, name)
      assert.ok(descriptor.status >= 400 && descriptor.status < 500, `${name}: ${descriptor.status}`)
    }
  })

  it('maps a domain error through its class descriptor, with the error\'s own message and headers', () => {
    assert.deepEqual(describeError(new BlobUnknownError('blob sha256:ab is unknown')), { status: 404, code: 'BLOB_UNKNOWN', message: 'blob sha256:ab is unknown' })
    assert.deepEqual(describeError(new UploadRangeError('chunk starts at 9', 5)), { status: 416, code: 'RANGE_INVALID', message: 'chunk starts at 9', headers: { range: '0-4' } })
  })

  it('maps errors of other modules that gained descriptors', () => {
    assert.deepEqual(describeError(new InvalidLabelsError('labels: bad')), { status: 400, code: 'LABELS_INVALID', message: 'labels: bad' })
    assert.equal(describeError(new InvalidStrategyError('x')).status, 400)
    assert.equal(describeError(new StrategyNotFoundError('x')).status, 404)
    assert.deepEqual(describeError(new AppendLimitError(5)), { status: 400, code: 'SIZE_INVALID', message: 'the body is longer than its declared length of 5 bytes' })
    assert.equal(describeError(new ClientAbortedError('gone')).status, 400)
  })

  it('hides what an unknown error says: it is the node\'s fault', () => {
    assert.deepEqual(describeError(new Error('EACCES /secret/path')), { status: 500, code: 'UNKNOWN', message: 'internal error' })
    class Undescribed extends ShoalError {}
    assert.deepEqual(describeError(new Undescribed('inner detail')), { status: 500, code: 'UNKNOWN', message: 'internal error' })
    assert.equal(describeError('a string').status, 500)
  })

  it('maps fastify\'s and Node\'s HTTP parser errors by code, not message text', () => {
    const fastifyError = Object.assign(new Error('Unsupported Media Type'), { statusCode: 415, code: 'FST_ERR_CTP_INVALID_MEDIA_TYPE' })
    assert.deepEqual(describeError(fastifyError), { status: 415, code: 'UNSUPPORTED', message: 'Unsupported Media Type' })
    const overflow = Object.assign(new Error('Header overflow'), { code: 'HPE_HEADER_OVERFLOW' })
    assert.equal(describeError(overflow).status, 431)
    const length = Object.assign(new Error('Parse Error'), { code: 'HPE_INVALID_CONTENT_LENGTH', reason: 'Invalid character in Content-Length' })
    assert.deepEqual(describeError(length), { status: 400, code: 'SIZE_INVALID', message: 'invalid Content-Length: Invalid character in Content-Length' })
  })
})

describe('each face answers every error in its format', () => {
  let node: TestNode
  before(async () => {
    node = await startTestNode()
  })
  after(async () => { await node.stop() })

  const head = (method: string, path: string, headers = ''): string => `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers}\r\n`

  // Defect 5: each of these got fastify's own {"error":"Bad Request",...} body, not an OCI error.
  const malformed: Array<[string, string, number]> = [
    ['a space in the path', head('GET', '/v2/a b/tags/list'), 400],
    ['Content-Length -1', head('PATCH', '/v2/a/blobs/uploads/x', 'Content-Length: -1\r\n'), 400],
    ['Content-Length 1e3', head('PATCH', '/v2/a/blobs/uploads/x', 'Content-Length: 1e3\r\n'), 400],
    ['Content-Length 0x5', head('PATCH', '/v2/a/blobs/uploads/x', 'Content-Length: 0x5\r\n'), 400],
    ['Content-Length "5, 5"', `${head('PATCH', '/v2/a/blobs/uploads/x', 'Content-Length: 5, 5\r\n')}hello`, 400],
    ['two Content-Lengths', `${head('PATCH', '/v2/a/blobs/uploads/x', 'Content-Length: 5\r\nContent-Length: 6\r\n')}hello!`, 400],
    ['a body longer than its Content-Length', `${head('PUT', '/v2/a/manifests/t', 'Content-Length: 2\r\n')}{} and more bytes`, 400],
    ['bad chunked encoding', `${head('PATCH', '/v2/a/blobs/uploads/x', 'Transfer-Encoding: chunked\r\n')}zz\r\nhello\r\n0\r\n\r\n`, 400],
    ['a NUL in a header', head('GET', '/v2/', 'X-Thing: a\u0000b\r\n'), 400],
    ['a URL over 16 KB', head('GET', `/v2/${'a'.repeat(20_000)}/tags/list`), 431],
    ['bad percent-encoding', head('GET', '/v2/%zz/manifests/latest'), 400],
    ['an unknown path', head('GET', '/v2/a/nothing/here'), 404],
    ['a method the endpoint does not take', head('POST', '/v2/a/manifests/latest', 'Content-Length: 0\r\n'), 405]
  ]
  for (const [what, request, status] of malformed) {
    it(`/v2: ${what} gets ${status} with an OCI error body`, async () => {
      const response = await rawRequest(node.port, request)
      assert.ok(response !== undefined, 'an answer came')
      assert.equal(response.status, status, response.raw)
      assert.match(response.headers['content-type'] ?? '', /^application\/json/)
      const body = JSON.parse(response.body) as { errors?: Array<{ code?: unknown, message?: unknown }> }
      assert.match(String(body.errors?.[0]?.code), /^[A-Z_]+$/, response.body)
      assert.ok(String(body.errors?.[0]?.message).length > 0)
    })
  }

  it('/ipfs: malformed requests get a line of plain text', async () => {
    for (const request of [head('GET', `/ipfs/${'a'.repeat(20_000)}`), head('GET', '/ipfs/x', 'Content-Length: -1\r\n'), head('GET', '/ipfs/not-a-cid?format=raw')]) {
      const response = await rawRequest(node.port, request)
      assert.ok(response !== undefined && response.status >= 400 && response.status < 500, response?.raw)
      assert.match(response.headers['content-type'] ?? '', /^text\/plain/)
      assert.ok(response.body.endsWith('\n') && !response.body.startsWith('{'), response.body)
    }
  })

  it('/api/v1: malformed requests get the API\'s JSON body', async () => {
    for (const request of [head('POST', '/api/v1/strategies', 'Content-Length: -1\r\n'), head('GET', `/api/v1/${'a'.repeat(20_000)}`)]) {
      const response = await rawRequest(node.port, request)
      assert.ok(response !== undefined && response.status >= 400 && response.status < 500, response?.raw)
      const body = JSON.parse(response.body) as { statusCode?: unknown, message?: unknown }
      assert.equal(body.statusCode, response.status)
      assert.ok(String(body.message).length > 0)
    }
  })

  // Defect 7: the manifest path logged an ordinary client drop as "internal error".
  it('a client that disconnects during a manifest PUT is not an internal error', async () => {
    const before = node.logs.length
    await sendAndHangUp(node.port, `${head('PUT', '/v2/drop/manifest/manifests/v1', 'Content-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000\r\n')}{"schemaVersion": 2, `)
    await new Promise(resolve => setTimeout(resolve, 300))
    const logged = node.logs.slice(before)
    assert.deepEqual(logged.filter(line => (line.level as number) >= 50), [], JSON.stringify(logged))
    assert.equal((await new RegistryClient(node.url).request('GET', '/v2/')).status, 200)
  })
})
