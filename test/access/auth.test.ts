// Users, rights and tokens with the real clients (issue 12): skopeo through the Docker token flow,
// curl with Basic credentials, tokens forged, expired, for another service or from another node.
import assert from 'node:assert/strict'
import { createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { htpasswdText } from '../support/htpasswd.ts'
import { SignJWT } from 'jose'
import { decode as decodeDagPb } from '@ipld/dag-pb'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PEER_HEADER } from '../../src/mesh/block-request.ts'
import { signRequest } from '../../src/mesh/peer-signature.ts'
import { shoal, shoalWith } from '../support/cli.ts'
import { curl } from '../support/curl.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, layoutBlobPath } from '../support/oci-image.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'
import { podmanPull } from '../support/podman.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'
import { openTagEvents } from '../support/tag-events.ts'

const PASSWORDS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw', root: 'root-pw' }
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

const basic = (user: keyof typeof PASSWORDS, password: string = PASSWORDS[user]): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

/** The users' htpasswd file, in both bcrypt forms ($2y$ as `htpasswd -B` writes it, and $2b$). */
const htpasswd = (): string => htpasswdText(PASSWORDS)

describe('a node with users and rights', () => {
  let dir: string
  let node: TestNode
  let other: TestNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-auth-'))
    await writeFile(join(dir, 'htpasswd'), htpasswd())
    const auth = {
      htpasswd: join(dir, 'htpasswd'),
      admins: ['root'],
      accessRules: [
        { repositories: ['team-a/*'], users: ['alice', 'bob'], allow: ['pull' as const, 'push' as const, 'delete' as const] },
        { repositories: ['secret/*'], users: ['alice'], allow: ['pull' as const, 'push' as const] },
        { repositories: ['secret/*'], users: ['*'], allow: [] as Array<'pull'> },
        { repositories: ['*'], users: ['*'], allow: ['pull' as const] }
      ]
    }
    node = await startTestNode({ config: auth })
    other = await startTestNode({ config: auth })
  })
  after(async () => {
    await Promise.all([node, other].map(async n => await n?.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  const get = async (path: string, init: RequestInit = {}): Promise<Response> => await fetch(`${node.url}${path}`, init)
  const token = async (user: keyof typeof PASSWORDS | undefined, ...scopes: string[]): Promise<string> => {
    const query = new URLSearchParams({ service: 'shoal' })
    for (const scope of scopes) query.append('scope', scope)
    const response = await get(`/auth/token?${query.toString()}`, user === undefined ? {} : { headers: { authorization: basic(user) } })
    assert.equal(response.status, 200, await response.clone().text())
    return (await response.json() as { token: string }).token
  }

  it('asks for credentials with a bearer challenge naming the token endpoint and the scope', async () => {
    for (const [path, scope] of [['/v2/', undefined], ['/v2/team-a/app/manifests/1.0', 'repository:team-a/app:pull'], ['/v2/_catalog', 'registry:catalog:*']] as const) {
      const response = await get(path)
      assert.equal(response.status, 401, path)
      const challenge = response.headers.get('www-authenticate') ?? ''
      assert.match(challenge, new RegExp(`^Bearer realm="${node.url}/auth/token",service="shoal"`))
      if (scope !== undefined) assert.ok(challenge.includes(`scope="${scope}"`), challenge)
      assert.equal((await response.json() as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAUTHORIZED')
    }
    // A push asks for pull and push, as clients expect.
    const push = await get('/v2/team-a/app/blobs/uploads/', { method: 'POST' })
    assert.equal(push.status, 401)
    assert.match(push.headers.get('www-authenticate') ?? '', /scope="repository:team-a\/app:pull,push"/)
  })

  it('refuses a wrong password, an unknown user and an unknown scheme with 401, and takes the right one', async () => {
    assert.equal((await get('/v2/', { headers: { authorization: basic('alice', 'nope') } })).status, 401)
    assert.equal((await get('/v2/', { headers: { authorization: `Basic ${Buffer.from('mallory:x').toString('base64')}` } })).status, 401)
    assert.equal((await get('/v2/', { headers: { authorization: 'Digest x' } })).status, 401)
    assert.equal((await get('/auth/token?service=shoal', { headers: { authorization: basic('alice', 'nope') } })).status, 401)
    assert.equal((await get('/v2/', { headers: { authorization: basic('alice') } })).status, 200)
  })

  it('skopeo pushes and pulls through the token flow; a user without the right is denied', async () => {
    const layout = join(dir, 'image')
    const image = await createImageLayout(layout, { layers: [1024 * 1024 + 3], seed: 'auth' })
    await copyToRegistry(layout, `${node.host}/team-a/app:1.0`, { creds: `alice:${PASSWORDS.alice}` })
    // carol may pull it (the last rule) but not push there.
    const out = join(dir, 'image-out')
    await copyFromRegistry(`${node.host}/team-a/app:1.0`, out, { creds: `carol:${PASSWORDS.carol}` })
    for (const digest of image.layerDigests) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
    await assert.rejects(copyToRegistry(layout, `${node.host}/team-a/app:carol`, { creds: `carol:${PASSWORDS.carol}` }), /denied|unauthorized/i)
    // podman signs in the same way; with a wrong password it is refused.
    assert.equal(`sha256:${await podmanPull(`${node.host}/team-a/app:1.0`, { creds: `carol:${PASSWORDS.carol}` })}`, image.configDigest)
    await assert.rejects(podmanPull(`${node.host}/team-a/app:1.0`, { creds: 'carol:wrong' }), /unauthorized|authentication required|401/i)
    // Without credentials nothing is read.
    await assert.rejects(copyFromRegistry(`${node.host}/team-a/app:1.0`, join(dir, 'anonymous-out')), /unauthorized|authentication required/i)
    assert.equal((await get('/v2/team-a/app/tags/list', { headers: { authorization: basic('carol') } })).status, 200)
  })

  it('shoal push and pull sign in with SHOAL_USER or the reference\'s user:password@, and a user without the right is refused in one line', async () => {
    const layout = join(dir, 'cli-image')
    const image = await createImageLayout(layout, { layers: [200_000], seed: 'auth-cli' })
    const pushed = await shoalWith({ SHOAL_USER: `alice:${PASSWORDS.alice}`, XDG_STATE_HOME: join(dir, 'cli-state') }, 'push', `oci:${layout}`, `${node.host}/team-a/cli:1`, '--quiet')
    assert.equal(pushed.code, 0, pushed.stderr)
    const pulled = await shoalWith({ XDG_STATE_HOME: join(dir, 'cli-state') }, 'pull', `carol:${PASSWORDS.carol}@${node.host}/team-a/cli:1`, `oci:${join(dir, 'cli-out')}`, '--quiet')
    assert.equal(pulled.code, 0, pulled.stderr)
    assert.equal(JSON.parse(await readFile(join(dir, 'cli-out', 'index.json'), 'utf8')).manifests[0].digest, image.manifestDigest)
    const refused = await shoalWith({ SHOAL_USER: `carol:${PASSWORDS.carol}`, XDG_STATE_HOME: join(dir, 'cli-state') }, 'push', `oci:${layout}`, `${node.host}/team-a/cli:carol`, '--quiet')
    assert.equal(refused.code, 1)
    assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr)
    assert.match(refused.stderr, /^shoal: .*refused/)
  })

  it('answers 403 DENIED to a signed-in user without the right, with Basic or a token', async () => {
    const registry = new RegistryClient(node.url)
    const alice = { authorization: basic('alice') }
    const pushed = await pushAs(registry, alice, 'team-a/del', '1', 'to delete')
    const carolDelete = await get(`/v2/team-a/del/manifests/${pushed}`, { method: 'DELETE', headers: { authorization: basic('carol') } })
    assert.equal(carolDelete.status, 403)
    assert.equal((await carolDelete.json() as { errors: Array<{ code: string }> }).errors[0]?.code, 'DENIED')
    // carol's token grants only what carol may do: pull, not push.
    const carolToken = await token('carol', 'repository:team-a/del:pull,push')
    const denied = await get('/v2/team-a/del/manifests/2', { method: 'PUT', headers: { authorization: `Bearer ${carolToken}`, 'content-type': MANIFEST }, body: '{}' })
    assert.equal(denied.status, 403)
    assert.equal((await get('/v2/team-a/del/manifests/1', { headers: { authorization: `Bearer ${carolToken}`, accept: MANIFEST } })).status, 200)
    // alice's token for pull only: a delete is sent back for a token with the scope (alice has the right).
    const alicePull = await token('alice', 'repository:team-a/del:pull')
    const narrow = await get(`/v2/team-a/del/manifests/${pushed}`, { method: 'DELETE', headers: { authorization: `Bearer ${alicePull}` } })
    assert.equal(narrow.status, 401)
    assert.match(narrow.headers.get('www-authenticate') ?? '', /scope="repository:team-a\/del:delete",error="insufficient_scope"/)
    assert.equal((await get(`/v2/team-a/del/manifests/${pushed}`, { method: 'DELETE', headers: alice })).status, 202)
    // root, an admin, may do anything.
    assert.equal((await get('/v2/secret/x/tags/list', { headers: { authorization: basic('root') } })).status, 404)
  })

  it('refuses tokens that are forged, expired, for another service, or from another node', async () => {
    const good = await token('alice', 'repository:team-a/app:pull')
    const path = '/v2/team-a/app/manifests/1.0'
    const headers = (bearer: string): Record<string, string> => ({ authorization: `Bearer ${bearer}`, accept: MANIFEST })
    assert.equal((await get(path, { headers: headers(good) })).status, 200)
    const nodeKey = createPrivateKey(await readFile(join(node.dataDir, 'auth', 'token-signing.key'), 'utf8'))
    const sign = async (key: KeyObject, claims: { aud?: string, exp?: number, iss?: string }): Promise<string> => await new SignJWT({ access: [{ type: 'repository', name: 'team-a/app', actions: ['pull'] }] })
      .setProtectedHeader({ alg: 'ES256' }).setSubject('alice').setIssuer(claims.iss ?? 'shoal').setAudience(claims.aud ?? 'shoal')
      .setIssuedAt().setExpirationTime(claims.exp ?? Math.floor(Date.now() / 1000) + 60).sign(key)
    const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey
    const refused = {
      forged: await sign(stranger, {}),
      expired: await sign(nodeKey, { exp: Math.floor(Date.now() / 1000) - 60 }),
      'another service': await sign(nodeKey, { aud: 'elsewhere' }),
      'another issuer': await sign(nodeKey, { iss: 'elsewhere' }),
      'tampered': good.slice(0, -4) + (good.endsWith('AAAA') ? 'BBBB' : 'AAAA')
    }
    for (const [why, bearer] of Object.entries(refused)) assert.equal((await get(path, { headers: headers(bearer) })).status, 401, why)
    // The other node's own token: another key, not trusted here.
    const elsewhere = await (await fetch(`${other.url}/auth/token?service=shoal&scope=repository:team-a/app:pull`, { headers: { authorization: basic('alice') } })).json() as { token: string }
    assert.equal((await get(path, { headers: headers(elsewhere.token) })).status, 401)
    assert.equal((await get(path, { headers: headers(good) })).status, 200, 'the node still serves everyone else')
  })

  it('lists in _catalog only what the user may pull', async () => {
    const registry = new RegistryClient(node.url)
    await pushAs(registry, { authorization: basic('alice') }, 'secret/plans', '1', 'secret layer')
    const catalog = async (user: keyof typeof PASSWORDS): Promise<string[]> => (await (await get('/v2/_catalog', { headers: { authorization: basic(user) } })).json() as { repositories: string[] }).repositories
    assert.ok((await catalog('alice')).includes('secret/plans'))
    assert.ok(!(await catalog('carol')).includes('secret/plans'))
    assert.ok((await catalog('carol')).includes('team-a/app'))
    // Paged: a page of one still skips what carol may not see.
    const page = await get('/v2/_catalog?n=1&last=secret', { headers: { authorization: basic('carol') } })
    assert.deepEqual((await page.json() as { repositories: string[] }).repositories, ['team-a/app'])
  })

  it('lets a user pull an image by its CID exactly when the user may pull a repository tagged with it', async () => {
    const registry = new RegistryClient(node.url)
    const alice = { authorization: basic('alice') }
    const open = await pushAs(registry, alice, 'team-a/bycid', '1', 'open by cid')
    const hidden = await pushAs(registry, alice, 'secret/bycid', '1', 'hidden by cid')
    const cidOf = async (repository: string): Promise<string> => (await get(`/v2/${repository}/manifests/1`, { method: 'HEAD', headers: { ...alice, accept: MANIFEST } })).headers.get('shoal-image-cid') ?? ''
    const [openCid, hiddenCid] = [await cidOf('team-a/bycid'), await cidOf('secret/bycid')]
    const carol = { authorization: basic('carol'), accept: MANIFEST }
    assert.equal((await get(`/v2/ipfs/${openCid}/manifests/${open}`, { headers: carol })).status, 200)
    assert.equal((await get(`/v2/ipfs/${hiddenCid}/manifests/${hidden}`, { headers: carol })).status, 403)
    assert.equal((await get(`/v2/ipfs/${hiddenCid}/manifests/${hidden}`, { headers: { ...alice, accept: MANIFEST } })).status, 200)
    // The token endpoint grants the same.
    const granted = async (cid: string): Promise<string[]> => {
      const bearer = await token('carol', `repository:ipfs/${cid}:pull`)
      const claims = JSON.parse(Buffer.from(bearer.split('.')[1] ?? '', 'base64url').toString()) as { access: Array<{ actions: string[] }> }
      return claims.access[0]?.actions ?? []
    }
    assert.deepEqual(await granted(openCid), ['pull'])
    assert.deepEqual(await granted(hiddenCid), [])
    // And the gateway: the image's root by CID, for a user who may pull it.
    const raw = { accept: 'application/vnd.ipld.raw', authorization: basic('carol') }
    assert.equal((await get(`/ipfs/${openCid}`, { headers: raw })).status, 200)
    assert.equal((await get(`/ipfs/${hiddenCid}`, { headers: raw })).status, 403)
  })

  it('holds against encoded paths, tokens used beyond the registry, and malformed queries', async () => {
    // The catalogue and the raw catalogue by another spelling.
    assert.equal((await get('/v2/%5Fcatalog')).status, 401)
    assert.equal((await get('/api/v1/%64atastore', { headers: { authorization: basic('carol') } })).status, 403)
    assert.equal((await get('/%69pfs/bafkqaaa', { headers: { authorization: basic('carol') } })).status, 404)
    assert.equal((await get('/v%32/_catalog')).status, 404)
    // A token for the registry is not a key to the management API; one with registry:api:* is.
    const registryOnly = await token('carol', 'repository:team-a/app:pull')
    assert.equal((await get('/api/v1/images', { headers: { authorization: `Bearer ${registryOnly}` } })).status, 401)
    const api = await token('carol', 'registry:api:*')
    assert.equal((await get('/api/v1/images', { headers: { authorization: `Bearer ${api}` } })).status, 200)
    // A catalogue token lists by the user's rights.
    const catalog = await token('carol', 'registry:catalog:*')
    const listed = (await (await get('/v2/_catalog', { headers: { authorization: `Bearer ${catalog}` } })).json() as { repositories: string[] }).repositories
    assert.ok(listed.includes('team-a/app') && !listed.some(name => name.startsWith('secret/')), JSON.stringify(listed))
    // Cancelling one's own upload is part of a push: alice may push to secret/ but not delete there.
    const started = await get('/v2/secret/cancel/blobs/uploads/', { method: 'POST', headers: { authorization: basic('alice') } })
    assert.equal(started.status, 202)
    assert.equal((await get(started.headers.get('location') ?? '', { method: 'DELETE', headers: { authorization: basic('alice') } })).status, 204)
    // A repeated from= is not a fault of the node.
    assert.equal((await get(`/v2/team-a/twice/blobs/uploads/?mount=${sha256('x')}&from=a&from=b`, { method: 'POST', headers: { authorization: basic('alice') } })).status, 202)
    // Too many scopes in one token request.
    const many = new URLSearchParams({ service: 'shoal' })
    for (let i = 0; i < 60; i++) many.append('scope', `repository:ipfs/bafy${i}:pull`)
    assert.equal((await get(`/auth/token?${many.toString()}`, { headers: { authorization: basic('carol') } })).status, 400)
  })

  it('mounts a blob only from a repository the user may pull', async () => {
    const registry = new RegistryClient(node.url)
    const digest = sha256('a secret blob')
    await pushBlobAs(registry, { authorization: basic('alice') }, 'secret/blobs', 'a secret blob')
    const mount = async (user: keyof typeof PASSWORDS, repository: string): Promise<number> => (await get(`/v2/${repository}/blobs/uploads/?mount=${digest}&from=secret/blobs`, { method: 'POST', headers: { authorization: basic(user) } })).status
    assert.equal(await mount('bob', 'team-a/mounted'), 202, 'bob may not read secret/: a plain upload starts instead')
    assert.equal((await get(`/v2/team-a/mounted/blobs/${digest}`, { method: 'HEAD', headers: { authorization: basic('bob') } })).status, 404)
    assert.equal(await mount('alice', 'team-a/mounted'), 201)
    // Without from, nothing is mounted either.
    assert.equal((await get(`/v2/team-a/other/blobs/uploads/?mount=${digest}`, { method: 'POST', headers: { authorization: basic('alice') } })).status, 202)
  })

  it('lets a signed-in user read the API and the UI, showing only what the user may pull, and only admins change anything', async () => {
    const registry = new RegistryClient(node.url)
    const alice = { authorization: basic('alice') }
    const carol = { authorization: basic('carol') }
    const carolEvents = await openTagEvents(node.url, carol)
    const aliceEvents = await openTagEvents(node.url, alice)
    try {
      await pushAs(registry, alice, 'secret/ui', '1', 'secret ui layer')
      await pushAs(registry, alice, 'team-a/ui', '1', 'team ui layer')
      await aliceEvents.next(change => change.repository === 'team-a/ui', 5_000)
      await carolEvents.next(change => change.repository === 'team-a/ui', 5_000)
      assert.ok(aliceEvents.received.some(change => change.repository === 'secret/ui'))
      assert.ok(!carolEvents.received.some(change => change.repository === 'secret/ui'), 'carol is not told of secret/ui')
    } finally {
      carolEvents.close()
      aliceEvents.close()
    }
    for (const path of ['/api/v1/images', '/', '/nodes']) {
      const anonymous = await get(path)
      assert.equal(anonymous.status, 401, path)
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic realm="shoal"/)
    }
    const images = async (headers: Record<string, string>): Promise<string[]> => (await (await get('/api/v1/images', { headers })).json() as { images: Array<{ repository: string }> }).images.map(image => image.repository)
    assert.ok((await images(alice)).includes('secret/ui'))
    assert.ok(!(await images(carol)).includes('secret/ui'))
    assert.ok((await images(carol)).includes('team-a/ui'))
    const page = async (headers: Record<string, string>): Promise<string> => await (await get('/', { headers })).text()
    assert.ok((await page(alice)).includes('secret/ui'))
    assert.ok(!(await page(carol)).includes('secret/ui'))
    assert.ok((await page(carol)).includes('team-a/ui'))
    // Changes and the raw catalogue: admins only (root passes the guard; this node is in no mesh).
    const strategy = JSON.stringify({ image: 'team-a/ui:1', kind: 'all' })
    const json = { 'content-type': 'application/json' }
    const refused = await get('/api/v1/strategies', { method: 'POST', headers: { ...carol, ...json }, body: strategy })
    assert.equal(refused.status, 403)
    assert.equal((await refused.json() as { code: string }).code, 'DENIED')
    assert.equal((await get('/api/v1/strategies', { method: 'POST', headers: { authorization: basic('root'), ...json }, body: strategy })).status, 409)
    assert.equal((await get('/api/v1/datastore', { headers: carol })).status, 403)
    assert.equal((await get('/api/v1/datastore', { headers: { authorization: basic('root') } })).status, 409)
    // Probes and metrics stay open.
    assert.equal((await get('/healthz')).status, 200)
    assert.equal((await get('/metrics')).status, 200)
  })

  it('issues tokens by the OAuth2 password grant (containerd) and refuses other grants', async () => {
    const form = new URLSearchParams({ grant_type: 'password', username: 'bob', password: PASSWORDS.bob, service: 'shoal', scope: 'repository:team-a/app:pull,push', client_id: 'containerd' })
    const response = await get('/auth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString() })
    assert.equal(response.status, 200)
    const answer = await response.json() as { access_token: string, expires_in: number }
    assert.equal(answer.expires_in, 300)
    assert.equal((await get('/v2/team-a/app/manifests/1.0', { method: 'HEAD', headers: { authorization: `Bearer ${answer.access_token}`, accept: MANIFEST } })).status, 200)
    const wrong = await get('/auth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ grant_type: 'password', username: 'bob', password: 'x' }).toString() })
    assert.equal(wrong.status, 401)
    const refresh = await get('/auth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'grant_type=refresh_token&refresh_token=x' })
    assert.equal(refresh.status, 400)
    assert.equal((await refresh.json() as { error: string }).error, 'unsupported_grant_type')
  })
})

/** Pushes a one-layer image with the given headers; answers its manifest digest. */
async function pushAs (registry: RegistryClient, headers: Record<string, string>, repository: string, tag: string, layer: string): Promise<string> {
  const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } })
  await pushBlobAs(registry, headers, repository, config)
  await pushBlobAs(registry, headers, repository, layer)
  const manifest = JSON.stringify({
    schemaVersion: 2,
    mediaType: MANIFEST,
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: Buffer.byteLength(config) },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: Buffer.byteLength(layer) }]
  })
  const response = await registry.request('PUT', `/v2/${repository}/manifests/${tag}`, { body: manifest, headers: { ...headers, 'content-type': MANIFEST } })
  assert.equal(response.status, 201, await response.text())
  return sha256(manifest)
}

async function pushBlobAs (registry: RegistryClient, headers: Record<string, string>, repository: string, bytes: string): Promise<void> {
  const response = await registry.request('POST', `/v2/${repository}/blobs/uploads/?digest=${sha256(bytes)}`, { body: bytes, headers: { ...headers, 'content-type': 'application/octet-stream' } })
  assert.equal(response.status, 201, await response.text())
}

describe('a fleet of two nodes with users', () => {
  let dir: string
  let a: TestNode
  let b: TestNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-auth-mesh-'))
    await writeFile(join(dir, 'htpasswd'), htpasswd())
    const auth = { htpasswd: join(dir, 'htpasswd'), admins: ['root'], accessRules: [{ repositories: ['*'], users: ['*'], allow: ['pull' as const, 'push' as const] }] }
    a = await startTestNode({ config: { ...auth, mesh: true } })
    b = await startTestNode({ config: { ...auth, peers: [a.node.fleet?.mesh.addresses[0] ?? ''] } })
  })
  after(async () => {
    await Promise.all([a, b].map(async node => await node?.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('members fetch blocks from each other with signed requests; users, strangers and forgers do not', async () => {
    const layout = join(dir, 'image')
    const image = await createImageLayout(layout, { layers: [2 * 1024 * 1024 + 9], seed: 'auth-mesh' })
    await copyToRegistry(layout, `${a.host}/fleet/app:1.0`, { creds: `alice:${PASSWORDS.alice}` })
    await eventually(async () => (await b.node.fleet?.catalogue.getTag('fleet/app', '1.0')) ?? undefined, 10_000, 'the tag on B')
    const out = join(dir, 'image-out')
    await copyFromRegistry(`${b.host}/fleet/app:1.0`, out, { creds: `carol:${PASSWORDS.carol}` })
    for (const digest of image.layerDigests) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
    assert.ok((await b.node.metrics.meshBytesFetched.get()).values.reduce((sum, { value }) => sum + value, 0) >= 2 * 1024 * 1024, 'B fetched the layer from A')

    const record = await a.node.fleet?.catalogue.getTag('fleet/app', '1.0')
    assert.equal(record?.pushedBy, 'alice', 'the tag records who pushed it')
    assert.equal((await b.node.fleet?.catalogue.getTag('fleet/app', '1.0'))?.pushedBy, 'alice')
    const raw = { accept: 'application/vnd.ipld.raw' }
    // The image's root: carol may pull fleet/app, so she may read it by CID. A block below it
    // (the image directory's first entry) is for members and admins only.
    const root = await fetch(`${a.url}/ipfs/${record?.imageCid ?? ''}`, { headers: { ...raw, authorization: basic('carol') } })
    assert.equal(root.status, 200, 'the image by CID, for a user who may pull its tag')
    const below = decodeDagPb(new Uint8Array(await root.arrayBuffer())).Links[0]?.Hash.toString() ?? ''
    const path = `/ipfs/${below}`
    assert.equal((await fetch(`${a.url}${path}`, { headers: raw })).status, 401, 'no credentials')
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, authorization: basic('carol') } })).status, 403, 'a user who is not an admin')
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, authorization: basic('root') } })).status, 200, 'an admin')
    // A member's own signature.
    const member = await b.node.fleet?.mesh.signRequest('GET', `${a.host}${path}`) ?? {}
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, [PEER_HEADER]: b.node.fleet?.mesh.peerId ?? '', ...member } })).status, 200, 'a member')
    // A stranger with a valid key of its own, and one who claims B's id with another key.
    const strangerKey = await generateKeyPair('Ed25519')
    const stranger = peerIdFromPrivateKey(strangerKey).toString()
    const strangerHeaders = await signRequest(strangerKey, 'GET', `${a.host}${path}`)
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, [PEER_HEADER]: stranger, ...strangerHeaders } })).status, 403, 'not a member')
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, [PEER_HEADER]: b.node.fleet?.mesh.peerId ?? '', ...strangerHeaders } })).status, 401, 'forged as B')
    // B's signature for another path, or an old one, does not open this one.
    const other = await b.node.fleet?.mesh.signRequest('GET', `${a.host}/ipfs/bafkqaaa`) ?? {}
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, [PEER_HEADER]: b.node.fleet?.mesh.peerId ?? '', ...other } })).status, 401, 'signed for another path')
    const elsewhere = await b.node.fleet?.mesh.signRequest('GET', `${b.host}${path}`) ?? {}
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, [PEER_HEADER]: b.node.fleet?.mesh.peerId ?? '', ...elsewhere } })).status, 401, 'signed for another node')
    // A member's signature gets raw blocks, never the whole image as a CAR.
    const carPath = `/ipfs/${record?.imageCid ?? ''}?format=car`
    const car = await b.node.fleet?.mesh.signRequest('GET', `${a.host}${carPath}`) ?? {}
    assert.equal((await fetch(`${a.url}${carPath}`, { headers: { [PEER_HEADER]: b.node.fleet?.mesh.peerId ?? '', ...car } })).status, 403, 'a CAR by signature')
    // Two minutes old: refused before the signer is even looked up (401, not the stranger's 403).
    const stale = await signRequest(strangerKey, 'GET', `${a.host}${path}`, Date.now() - 120_000)
    assert.equal((await fetch(`${a.url}${path}`, { headers: { ...raw, [PEER_HEADER]: stranger, ...stale } })).status, 401, 'stale')
  })

  it('writes each node\'s identity (with its token key) once, not again and again', async () => {
    await eventually(async () => (await a.node.fleet?.catalogue.getNode(b.node.fleet?.peerId ?? ''))?.tokenKey, 20_000, 'B\'s identity with its token key on A')
    await new Promise(resolve => setTimeout(resolve, 2000))
    const entries = async (node: TestNode): Promise<number> => (await node.node.fleet?.catalogue.generations())?.find(db => db.name === 'shoal.nodes')?.logEntries ?? 0
    const before = await entries(a)
    await new Promise(resolve => setTimeout(resolve, 3000))
    // Each node writes its identity at start and when its addresses change; a node that took its
    // own token key for a change rewrote it hundreds of times a minute.
    assert.equal(await entries(a), before, 'no identity rewritten in 3 s')
    assert.ok(before <= 8, `${before} entries in the nodes database`)
  })

  it('takes a token any member issued: sign in on one node, pull from another', async () => {
    await eventually(async () => (await b.node.fleet?.catalogue.getTag('fleet/app', '1.0')) ?? undefined, 20_000, 'the tag on B')
    const answer = await (await fetch(`${a.url}/auth/token?service=shoal&scope=repository:fleet/app:pull`, { headers: { authorization: basic('carol') } })).json() as { token: string }
    const path = '/v2/fleet/app/manifests/1.0'
    const headers = { authorization: `Bearer ${answer.token}`, accept: MANIFEST }
    assert.equal((await fetch(`${a.url}${path}`, { headers })).status, 200)
    // B knows A's token key from A's identity in the catalogue.
    await eventually(async () => (await fetch(`${b.url}${path}`, { headers })).status === 200 ? true : undefined, 20_000, 'B to take A\'s token')
    // A key that no member has published is not taken, even under a member's key id.
    const stranger = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey
    const kid = JSON.parse(Buffer.from(answer.token.split('.')[0] ?? '', 'base64url').toString()) as { kid: string }
    const forged = await new SignJWT({ access: [{ type: 'repository', name: 'fleet/app', actions: ['pull'] }] })
      .setProtectedHeader({ alg: 'ES256', kid: kid.kid }).setSubject('carol').setIssuer('shoal').setAudience('shoal').setIssuedAt().setExpirationTime('1m').sign(stranger)
    assert.equal((await fetch(`${b.url}${path}`, { headers: { ...headers, authorization: `Bearer ${forged}` } })).status, 401)
  })

  it('shows in the UI the size of an image held only by another node (read there with a token for that image)', async () => {
    const registry = new RegistryClient(a.url)
    await pushAs(registry, { authorization: basic('alice') }, 'fleet/only-a', '1', 'held by a alone '.repeat(100))
    await eventually(async () => (await b.node.fleet?.catalogue.getTag('fleet/only-a', '1')) ?? undefined, 20_000, 'the tag on B')
    const sizeOnB = async (): Promise<string | undefined> => {
      const page = await (await fetch(`${b.url}/`, { headers: { authorization: basic('carol') } })).text()
      const card = page.slice(page.indexOf('fleet/only-a:1'))
      const size = /<dt>Size<\/dt><dd>(.*?)<\/dd>/.exec(card)?.[1]
      return size !== undefined && !size.includes('unknown') ? size : undefined
    }
    assert.match(await eventually(sizeOnB, 20_000, 'the size read from A'), /\d/)
  })

  it('shoal images shows who pushed each tag, signed in through the node URL or SHOAL_USER, and says in one line when it is not', async () => {
    await eventually(async () => (await b.node.fleet?.catalogue.getTag('fleet/app', '1.0')) ?? undefined, 20_000, 'the tag on B')
    const url = new URL(b.url)
    url.username = 'carol'
    url.password = PASSWORDS.carol
    const signedIn = await shoal('images', '--node', url.toString())
    assert.equal(signedIn.code, 0, signedIn.stderr)
    assert.match(signedIn.stdout, /^fleet\/app:1\.0 .* alice /m)
    const fromEnv = await shoalWith({ SHOAL_USER: `alice:${PASSWORDS.alice}` }, 'images', '--node', b.url)
    assert.equal(fromEnv.code, 0, fromEnv.stderr)
    assert.match(fromEnv.stdout, /^fleet\/app:1\.0 /m)
    const refused = await shoal('images', '--node', b.url)
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /^shoal: sign in to use this node\n$/)
    url.password = 'Secret-Typo-42'
    const wrong = await shoal('images', '--node', url.toString())
    assert.equal(wrong.code, 1)
    assert.match(wrong.stderr, /^shoal: wrong user name or password\n$/)
    assert.ok(!wrong.stderr.includes('Secret-Typo-42'), 'the password is not shown')
  })
})

describe('a node with anonymous pulls, and one that takes an external issuer\'s tokens', () => {
  let dir: string
  let open: TestNode
  let external: TestNode
  let issuerKey: KeyObject
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-auth-modes-'))
    await writeFile(join(dir, 'htpasswd'), htpasswd())
    open = await startTestNode({ config: { htpasswd: join(dir, 'htpasswd'), anonymousPull: true, accessRules: [{ repositories: ['*'], users: ['alice'], allow: ['pull', 'push'] }] } })
    const pair = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    issuerKey = pair.privateKey
    await writeFile(join(dir, 'issuer.pub'), pair.publicKey.export({ format: 'pem', type: 'spki' }))
    external = await startTestNode({ config: { tokenRealm: 'https://auth.example/token', tokenPublicKey: join(dir, 'issuer.pub'), tokenService: 'registry.example', tokenIssuer: 'auth.example', allowedHosts: ['127.0.0.1'] } })
  })
  after(async () => {
    await Promise.all([open, external].map(async node => await node?.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('with anonymousPull, skopeo pulls without signing in, and a push still asks for credentials', async () => {
    const layout = join(dir, 'image')
    const image = await createImageLayout(layout, { layers: [4096], seed: 'anonymous' })
    await copyToRegistry(layout, `${open.host}/pub/app:1`, { creds: `alice:${PASSWORDS.alice}` })
    const out = join(dir, 'anonymous-out')
    await copyFromRegistry(`${open.host}/pub/app:1`, out)
    assert.equal((await readLayoutIndexDigests(out))[0], image.manifestDigest)
    await assert.rejects(copyToRegistry(layout, `${open.host}/pub/app:2`), /unauthorized|authentication required/i)
    // The base endpoint still challenges (so clients learn how to sign in); an anonymous token opens it.
    assert.equal((await fetch(`${open.url}/v2/`)).status, 401)
    const anonymous = await (await fetch(`${open.url}/auth/token?service=shoal&scope=repository:pub/app:pull,push`)).json() as { token: string }
    const claims = JSON.parse(Buffer.from(anonymous.token.split('.')[1] ?? '', 'base64url').toString()) as { access: Array<{ actions: string[] }> }
    assert.deepEqual(claims.access[0]?.actions, ['pull'], 'pull only, whatever was asked')
    assert.equal((await fetch(`${open.url}/v2/`, { headers: { authorization: `Bearer ${anonymous.token}` } })).status, 200)
  })

  it('takes the external issuer\'s tokens, sends clients to its realm, and issues none itself', async () => {
    const challenge = await fetch(`${external.url}/v2/app/manifests/1`)
    assert.equal(challenge.status, 401)
    assert.match(challenge.headers.get('www-authenticate') ?? '', /^Bearer realm="https:\/\/auth\.example\/token",service="registry\.example",scope="repository:app:pull"/)
    assert.equal((await fetch(`${external.url}/auth/token?service=registry.example`)).status, 404, 'no token endpoint here')
    const sign = async (claims: { iss?: string, aud?: string }, key: KeyObject = issuerKey): Promise<string> => await new SignJWT({ access: [{ type: 'repository', name: 'app', actions: ['pull', 'push'] }] })
      .setProtectedHeader({ alg: 'ES256' }).setSubject('ci').setIssuer(claims.iss ?? 'auth.example').setAudience(claims.aud ?? 'registry.example').setIssuedAt().setExpirationTime('1m').sign(key)
    const pushed = await fetch(`${external.url}/v2/app/blobs/uploads/?digest=${sha256('external')}`, { method: 'POST', headers: { authorization: `Bearer ${await sign({})}` }, body: 'external' })
    assert.equal(pushed.status, 201)
    assert.equal((await fetch(`${external.url}/v2/app/blobs/${sha256('external')}`, { method: 'HEAD', headers: { authorization: `Bearer ${await sign({ iss: 'shoal' })}` } })).status, 401, 'another issuer')
    assert.equal((await fetch(`${external.url}/v2/app/blobs/${sha256('external')}`, { method: 'HEAD', headers: { authorization: `Bearer ${await sign({ aud: 'shoal' })}` } })).status, 401, 'another service')
    assert.equal((await fetch(`${external.url}/v2/app/blobs/${sha256('external')}`, { method: 'HEAD', headers: { authorization: `Bearer ${await sign({}, generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey)}` } })).status, 401, 'another key')
    // allowedHosts set: 127.0.0.1 (and localhost) only.
    // (curl: fetch does not let a script set Host.)
    assert.equal((await curl(`${external.url}/v2/`, '-H', `Host: elsewhere.example:${external.port}`)).status, 403)
    assert.equal((await curl(`${external.url}/v2/`, '-H', `Host: localhost:${external.port}`)).status, 401, 'localhost is always a name of the node')
  })
})

async function readLayoutIndexDigests (dir: string): Promise<string[]> {
  return (JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }).manifests.map(m => m.digest)
}
