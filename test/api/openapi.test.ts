// The management API's plumbing: the OpenAPI document, Swagger UI, the API's own JSON bodies and
// error shape, and that none of it leaks into the registry's /v2 routes.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { isDeepStrictEqual } from 'node:util'
import type { FastifyInstance } from 'fastify'
import { pino } from 'pino'
import { NotInMeshError, apiErrorResponses } from '../../src/api/errors.ts'
import { API_BODY_LIMIT_BYTES, API_PREFIX, configureApiScope } from '../../src/api/scope.ts'
import { Metrics } from '../../src/metrics.ts'
import { createHttpServer } from '../../src/server.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'

const assertApiError = (body: unknown, statusCode: number, error: string): void => {
  assert.deepEqual(Object.keys(body as object).sort(), ['code', 'error', 'message', 'statusCode'])
  const { statusCode: status, error: reason, message } = body as { statusCode: number, error: string, message: string }
  assert.equal(status, statusCode)
  assert.equal(reason, error)
  assert.ok(message.length > 0)
}

describe('the management API on a node', () => {
  let node: TestNode
  before(async () => { node = await startTestNode() })
  after(async () => { await node.stop() })

  it('describes /api/v1 and only /api/v1 at /openapi.json', async () => {
    const response = await fetch(`${node.url}/openapi.json`)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/)
    const document = await response.json() as { openapi: string, info: { title: string, version: string }, paths: Record<string, Record<string, { tags?: string[], summary?: string }>> }
    assert.match(document.openapi, /^3\.\d+\.\d+$/)
    assert.equal(document.info.title, 'Shoal')
    assert.match(document.info.version, /^\d+\.\d+\.\d+/)
    for (const path of ['/api/v1/peers', '/api/v1/nodes']) {
      const operation = document.paths[path]?.get
      assert.ok(operation, `${path} is described`)
      assert.ok((operation.tags?.length ?? 0) > 0 && (operation.summary ?? '') !== '', `${path} has tags and a summary`)
    }
    const others = Object.keys(document.paths).filter(path => !path.startsWith('/api/v1/'))
    assert.deepEqual(others, [], 'no /v2, /ipfs, /metrics or UI routes in the document')
  })

  it('serves Swagger UI at /swagger with its assets from the node itself', async () => {
    const page = await fetch(`${node.url}/swagger`)
    assert.equal(page.status, 200)
    assert.match(page.headers.get('content-type') ?? '', /^text\/html/)
    const html = await page.text()
    const scripts = [...html.matchAll(/src="([^"]+)"/g)].map(match => new URL(match[1] ?? '', page.url))
    const bundle = scripts.find(url => url.pathname.endsWith('/swagger-ui-bundle.js'))
    assert.ok(bundle, 'the page loads the Swagger UI bundle')
    assert.equal(bundle.origin, new URL(node.url).origin, 'from the node, not a CDN')
    const asset = await fetch(bundle)
    assert.equal(asset.status, 200)
    assert.ok((await asset.arrayBuffer()).byteLength > 100_000)
    // The UI reads the document from /swagger/json.
    assert.equal((await fetch(`${node.url}/swagger/json`)).status, 200)
  })

  it('still answers /api/v1/peers and /api/v1/nodes', async () => {
    const peers = await fetch(`${node.url}/api/v1/peers`)
    assert.equal(peers.status, 200)
    assert.deepEqual(await peers.json(), { mesh: 'off', self: null, peers: [] })
    const nodes = await fetch(`${node.url}/api/v1/nodes`)
    assert.deepEqual(await nodes.json(), { nodes: [] })
  })

  it('answers unknown and malformed /api/v1 paths in the API error shape', async () => {
    const response = await fetch(`${node.url}/api/v1/nope`)
    assert.equal(response.status, 404)
    assertApiError(await response.json(), 404, 'Not Found')
    // fastify refuses a malformed URL before routing; under /api/v1 the refusal has the API's shape too.
    const badUrl = await fetch(`${node.url}/api/v1/%zz`)
    assert.equal(badUrl.status, 400)
    const refusal = await badUrl.json() as { message: string }
    assertApiError(refusal, 400, 'Bad Request')
    // In the domain's words, as every other refusal: not fastify's "… is not a valid url component".
    assert.equal(refusal.message, 'the URL is malformed: a % in it is not followed by two hex digits')
  })

  it('keeps OCI error bodies on /v2', async () => {
    const response = await fetch(`${node.url}/v2/nope/manifests/latest`)
    assert.equal(response.status, 404)
    const body = await response.json() as { errors: Array<{ code: string, message: string }> }
    assert.equal(body.errors[0]?.code, 'MANIFEST_UNKNOWN')
    const unknown = await fetch(`${node.url}/v2/nope/nothing-here`)
    assert.equal(unknown.status, 404)
    assert.ok(Array.isArray((await unknown.json() as { errors?: unknown }).errors))
  })
})

describe('the management API on a node in a mesh', () => {
  let node: TestNode
  before(async () => { node = await startTestNode({ config: { mesh: true, name: 'solo', labels: { zone: 'eu' } } }) })
  after(async () => { await node.stop() })

  it('sends the fleet\'s records whole: the response schemas strip nothing', async () => {
    const fleet = node.node.fleet
    assert.ok(fleet)
    const peers = await (await fetch(`${node.url}/api/v1/peers`)).json()
    assert.deepEqual(peers, { mesh: 'joined', self: { id: fleet.mesh.peerId, addresses: fleet.mesh.addresses }, peers: [] })
    // A heartbeat may land between the two reads; they agree once none does.
    await eventually(async () => {
      const answer = await (await fetch(`${node.url}/api/v1/nodes`)).json()
      const nodes = JSON.parse(JSON.stringify(await fleet.nodes())) as unknown
      return isDeepStrictEqual(answer, { nodes }) ? true : undefined
    }, 5_000, '/api/v1/nodes to equal fleet.nodes()')
  })
})

describe('an API scope', () => {
  let app: FastifyInstance
  before(async () => {
    app = createHttpServer(pino({ level: 'silent' }), new Metrics({ storedBlobs: async () => ({ blobs: 0, bytes: 0 }), openUploads: async () => 0 }))
    // A route outside the API, as the registry's: the server's catch-all parser leaves its body
    // unread. Added in a plugin, so the OpenAPI plugin sees it and has to leave it out.
    app.register(async (registry: FastifyInstance) => {
      registry.post('/v2/unread', async req => ({ bodyRead: req.body !== undefined }))
    })
    app.register(async (api: FastifyInstance) => {
      configureApiScope(api)
      api.post<{ Body: { name: string, replicas?: number, mode?: string } }>('/things', {
        schema: {
          tags: ['test'],
          summary: 'Echoes a thing',
          body: {
            type: 'object',
            required: ['name'],
            additionalProperties: false,
            properties: { name: { type: 'string', minLength: 1 }, replicas: { type: 'integer', minimum: 1 }, mode: { type: 'string', enum: ['pin', 'cache'] } }
          },
          response: { 201: { type: 'object', properties: { name: { type: 'string' }, replicas: { type: 'integer' } } }, ...apiErrorResponses }
        }
      }, async (req, reply) => await reply.code(201).send(req.body))
      api.delete('/things/:name', async req => {
        throw new NotInMeshError(`thing ${(req.params as { name: string }).name} is in use`)
      })
      api.get('/broken', async () => { throw new Error('secret internals') })
    }, { prefix: API_PREFIX })
    await app.ready()
  })
  after(async () => { await app.close() })

  const post = async (payload: string, contentType = 'application/json') =>
    await app.inject({ method: 'POST', url: `${API_PREFIX}/things`, headers: { 'content-type': contentType }, payload })

  it('parses a JSON body', async () => {
    const response = await post(JSON.stringify({ name: 'a', replicas: 2 }))
    assert.equal(response.statusCode, 201)
    assert.deepEqual(response.json(), { name: 'a', replicas: 2 })
  })

  it('refuses a malformed JSON body with a 400 in the API error shape', async () => {
    const response = await post('{"name": ')
    assert.equal(response.statusCode, 400)
    assertApiError(response.json(), 400, 'Bad Request')
    assert.match(response.json<{ message: string }>().message, /^the body is not valid JSON: /)
    assert.equal(response.json<{ code: string }>().code, 'INVALID_REQUEST')
    const empty = await post('')
    assert.equal(empty.statusCode, 400)
    assert.equal(empty.json<{ message: string }>().message, 'the body is empty: send a JSON object')
    const poisoned = await post('{"name": "a", "__proto__": {"x": 1}}')
    assert.equal(poisoned.statusCode, 400)
    assert.match(poisoned.json<{ message: string }>().message, /^the body is not valid JSON: /)
  })

  it('refuses a body the schema does not allow, naming the field in the domain\'s words', async () => {
    const cases: Array<[unknown, string]> = [
      [{ replicas: 2 }, 'missing field "name"'],
      [{ name: 'a', replicas: 0 }, 'replicas must be at least 1, not 0'],
      [{ name: 'a', replica: 2 }, 'unknown field "replica" (known: name, replicas, mode)'],
      [{ name: 'a', mode: 'keep' }, 'mode must be one of pin, cache, not "keep"'],
      [{ name: '' }, 'name must not be empty'],
      // No coercion: fastify's default Ajv would take "2" for 2, 1 for "1" and null for 0.
      [{ name: 'a', replicas: '2' }, 'replicas must be a whole number, not "2"'],
      [{ name: 1 }, 'name must be a string, not 1'],
      [{ name: 'a', replicas: null }, 'replicas must be a whole number, not null'],
      ['a', 'the body must be an object, not "a"']
    ]
    for (const [body, message] of cases) {
      const response = await post(JSON.stringify(body))
      assert.equal(response.statusCode, 400, JSON.stringify(body))
      assertApiError(response.json(), 400, 'Bad Request')
      assert.equal(response.json<{ message: string }>().message, message)
    }
  })

  it('takes JSON in UTF-8 only', async () => {
    const utf16 = await post(JSON.stringify({ name: 'a' }), 'application/json; charset=utf-16')
    assert.equal(utf16.statusCode, 415)
    assertApiError(utf16.json(), 415, 'Unsupported Media Type')
    assert.equal(utf16.json<{ message: string }>().message, 'the body must be JSON in UTF-8, not charset=utf-16')
    for (const contentType of ['application/json; charset=utf-8', 'application/json; charset="UTF-8"', 'application/json;charset=utf8']) {
      assert.equal((await post(JSON.stringify({ name: 'a' }), contentType)).statusCode, 201, contentType)
    }
  })

  it('takes JSON only, and at most 1 MiB of it', async () => {
    const text = await post('name=a', 'text/plain')
    assert.equal(text.statusCode, 415)
    assertApiError(text.json(), 415, 'Unsupported Media Type')
    const large = await post(JSON.stringify({ name: 'x'.repeat(API_BODY_LIMIT_BYTES) }))
    assert.equal(large.statusCode, 413)
    assertApiError(large.json(), 413, 'Payload Too Large')
    assert.equal(large.json<{ message: string }>().message, 'the body is larger than this endpoint takes')
  })

  it('sends a domain error thrown by a handler with its descriptor\'s status and code, and its message', async () => {
    const response = await app.inject({ method: 'DELETE', url: `${API_PREFIX}/things/a` })
    assert.equal(response.statusCode, 409)
    assert.deepEqual(response.json(), { statusCode: 409, error: 'Conflict', code: 'NOT_IN_MESH', message: 'thing a is in use' })
  })

  it('hides the message of an unexpected failure', async () => {
    const response = await app.inject({ method: 'GET', url: `${API_PREFIX}/broken` })
    assert.equal(response.statusCode, 500)
    assert.deepEqual(response.json(), { statusCode: 500, error: 'Internal Server Error', code: 'UNKNOWN', message: 'internal error' })
  })

  it('leaves bodies outside the API unparsed', async () => {
    const response = await app.inject({ method: 'POST', url: '/v2/unread', headers: { 'content-type': 'application/json' }, payload: '{"a":1}' })
    assert.equal(response.statusCode, 200)
    assert.deepEqual(response.json(), { bodyRead: false })
  })

  it('documents the routes it is given', async () => {
    const document = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<{ paths: Record<string, Record<string, unknown>> }>()
    assert.ok(document.paths[`${API_PREFIX}/things`]?.post)
    assert.equal(document.paths['/v2/unread'], undefined)
  })
})
