// How the names refuse (issue 14): a bad name is a 400 naming the field on the API, NAME_INVALID on
// /v2 and one line from the CLI; a name that resolves to nothing is a 404 with the reason; keys
// that do not exist or exist already, bad durations, writes to a name. A node outside any mesh
// answers for its own names alone, at once.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { shoal } from '../support/cli.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'

interface ApiError { statusCode: number, code: string, message: string }

describe('names refuse clearly', () => {
  let node: TestNode
  let name: string
  before(async () => {
    node = await startTestNode()
    await new RegistryClient(node.url).pushImage('names/err', 'v1', 'a layer')
    const published = await post('/names/publish', { image: 'names/err:v1', lifetimeSeconds: 3600, ttlSeconds: 60 })
    assert.equal(published.status, 200)
    name = (await published.json() as { name: string }).name
  })
  after(async () => { await node?.stop() })

  const post = async (path: string, body: unknown): Promise<Response> => await fetch(`${node.url}/api/v1${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const refusal = async (response: Response, status: number, code: string): Promise<string> => {
    assert.equal(response.status, status)
    const body = await response.json() as ApiError
    assert.equal(body.code, code)
    return body.message
  }

  it('a node outside a mesh resolves its own name at once, and nobody else\'s', async () => {
    const record = await fetch(`${node.url}/api/v1/names/records/${name}`)
    assert.equal(record.status, 200)
    assert.equal((await record.json() as { source: string, sequence: number }).source, 'published here')
    const stranger = await fetch(`${node.url}/api/v1/names/resolve/k51qzi5uqu5dkvsmrrafgver4bkshy3t9r1mdkmotk1lbldwx5pnkxbzuiy2cc`)
    assert.match(await refusal(stranger, 404, 'NAME_UNKNOWN'), /this node did not publish it, and it is in no mesh to ask/)
  })

  it('a bad name is a 400 that names the field, on the API, the gateways and /v2', async () => {
    assert.match(await refusal(await fetch(`${node.url}/api/v1/names/resolve/not_a_name`), 400, 'NAME_INVALID'), /^name "not_a_name" is not an IPNS name .* nor a domain/)
    assert.match(await refusal(await fetch(`${node.url}/api/v1/names/records/app.example.com`), 400, 'NAME_INVALID'), /^name "app.example.com" is not an IPNS name/)
    const gateway = await fetch(`${node.url}/ipns/not_a_name`)
    assert.equal(gateway.status, 400)
    assert.match(await gateway.text(), /not an IPNS name/)
    assert.equal((await fetch(`${node.url}/routing/v1/ipns/not_a_name`)).status, 400)
    const notAccepted = await fetch(`${node.url}/routing/v1/ipns/${name}`, { headers: { accept: 'application/json' } })
    assert.equal(notAccepted.status, 406)
    assert.match(await notAccepted.text(), /application\/vnd\.ipfs\.ipns-record/)

    const v2 = await fetch(`${node.url}/v2/ipns/not_a_name/manifests/latest`)
    assert.equal(v2.status, 400)
    const errors = (await v2.json() as { errors: Array<{ code: string, message: string }> }).errors
    assert.equal(errors[0]?.code, 'NAME_INVALID')
    assert.match(errors[0]?.message ?? '', /repository name "not_a_name" is not an IPNS name/)
    // A peer id has capitals, which no repository name may: /v2 says which form to use.
    const peerId = (await (await fetch(`${node.url}/api/v1/names/keys`)).json() as { keys: Array<{ peerId: string }> }).keys[0]?.peerId ?? ''
    const upper = await fetch(`${node.url}/v2/ipns/${peerId}/manifests/latest`)
    assert.equal(upper.status, 400)
    assert.match(await upper.text(), /k51… form/)
    // Through the API the peer id form resolves.
    assert.equal((await fetch(`${node.url}/api/v1/names/resolve/${peerId}`)).status, 200)
  })

  it('a name\'s repository is read-only on /v2', async () => {
    const upload = await fetch(`${node.url}/v2/ipns/${name}/blobs/uploads/`, { method: 'POST' })
    assert.equal(upload.status, 400)
    assert.match(await upload.text(), /read-only/)
  })

  it('publish refuses unknown keys, unknown images and bad fields, naming them', async () => {
    assert.match(await refusal(await post('/names/publish', { image: 'names/err:v1', key: 'nope' }), 404, 'KEY_UNKNOWN'), /^key: no IPNS key named "nope"/)
    assert.match(await refusal(await post('/names/publish', { image: 'names/err:v9' }), 404, 'IMAGE_UNKNOWN'), /^image: names\/err:v9 names no image/)
    assert.match(await refusal(await post('/names/publish', { image: 'names/err:v1', lifetimeSeconds: 'a day' }), 400, 'INVALID_REQUEST'), /^lifetimeSeconds must be a whole number, not "a day"/)
    assert.match(await refusal(await post('/names/publish', { image: 'names/err:v1', lifetimeSeconds: 1 }), 400, 'INVALID_REQUEST'), /^lifetimeSeconds must be at least 2/)
    assert.match(await refusal(await post('/names/publish', { image: 'names/err:v1', colour: 'red' }), 400, 'INVALID_REQUEST'), /unknown field "colour"/)
    assert.match(await refusal(await post('/names/publish', { image: 'names/err:v1', key: '../x' }), 400, 'NAME_INVALID'), /^key "..\/x" is not a key name/)
    assert.match(await refusal(await post('/names/keys', { name: '../x' }), 400, 'NAME_INVALID'), /^name "..\/x" is not a key name/)
    assert.match(await refusal(await post('/names/keys', { name: 'self' }), 409, 'KEY_EXISTS'), /self is this node's own key/)
  })

  it('the CLI says what is wrong in one line and exits non-zero', async () => {
    for (const args of [
      ['name', 'publish', 'names/err:v1', '--lifetime', 'soon'],
      ['name', 'publish', 'names/err:v1', '--key', 'nope'],
      ['name', 'resolve', 'not_a_name'],
      ['name', 'inspect', 'k51qzi5uqu5dkvsmrrafgver4bkshy3t9r1mdkmotk1lbldwx5pnkxbzuiy2cc']
    ]) {
      const { code, stderr } = await shoal(...args, '--node', node.url)
      assert.notEqual(code, 0, args.join(' '))
      assert.equal(stderr.trim().split('\n').length, 1, `one line: ${stderr}`)
      assert.match(stderr, /^shoal: /)
    }
    const { stderr } = await shoal('name', 'publish', 'names/err:v1', '--lifetime', 'soon', '--node', node.url)
    assert.match(stderr, /--lifetime must be a duration such as 24h/)
  })
})
