// Pull-through mirrors (issue 13) with real parts: Debian's docker-registry stands in for the
// upstream registries, skopeo pulls through a Shoal node as a client would, by the
// `<node>/<registry>/<name>` form and by containerd's `?ns=<registry>`.
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startCountingProxy } from '../support/counting-proxy.ts'
import { htpasswdText } from '../support/htpasswd.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { startDockerRegistry, type RegistryProcess } from '../support/node-process.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry, inspectRaw } from '../support/skopeo.ts'

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json'

describe('a node mirroring two upstream registries', () => {
  let dir: string
  let hub: RegistryProcess
  let ghcr: RegistryProcess
  let node: TestNode
  let hubDigest: string
  let ghcrDigest: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-mirror-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText({ puller: 'puller-pw' }))
    await writeFile(join(dir, 'ghcr.json'), JSON.stringify({ username: 'puller', password: 'puller-pw' }))
    hub = await startDockerRegistry({ dataDir: join(dir, 'hub') })
    // The second upstream wants credentials (Distribution's htpasswd: Basic on every request).
    ghcr = await startDockerRegistry({ dataDir: join(dir, 'ghcr'), htpasswd: join(dir, 'htpasswd') })
    // The same repository name in both, holding different images.
    await createImageLayout(join(dir, 'hub-image'), { layers: [300_000, 2_000], seed: 'hub' })
    await createImageLayout(join(dir, 'ghcr-image'), { layers: [150_000], seed: 'ghcr' })
    await copyToRegistry(join(dir, 'hub-image'), `${hub.host}/library/app:1.0`)
    await copyToRegistry(join(dir, 'ghcr-image'), `${ghcr.host}/library/app:1.0`, { creds: 'puller:puller-pw' })
    hubDigest = await digestOf(`${hub.url}/v2/library/app/manifests/1.0`)
    ghcrDigest = await digestOf(`${ghcr.url}/v2/library/app/manifests/1.0`, 'puller:puller-pw')
    node = await startTestNode({
      config: {
        mirrors: [
          { registry: 'docker.io', url: hub.url },
          { registry: 'ghcr.io', url: ghcr.url, credentialsFile: join(dir, 'ghcr.json') }
        ],
        mirrorTagTtlSeconds: 0
      }
    })
  })
  after(async () => {
    await node?.stop()
    await hub?.stop()
    await ghcr?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  async function digestOf (url: string, creds?: string): Promise<string> {
    const response = await fetch(url, { method: 'HEAD', headers: { accept: ACCEPT, ...(creds === undefined ? {} : { authorization: `Basic ${Buffer.from(creds).toString('base64')}` }) } })
    assert.equal(response.status, 200, url)
    return response.headers.get('docker-content-digest') ?? ''
  }

  it('pulls an upstream image through the node by <registry>/<name>, with the upstream\'s digests', async () => {
    await copyFromRegistry(`${node.host}/docker.io/library/app:1.0`, join(dir, 'pulled-hub'))
    assert.equal(await digestOf(`${node.url}/v2/docker.io/library/app/manifests/1.0`), hubDigest)
    const raw = await inspectRaw(`${node.host}/docker.io/library/app:1.0`)
    assert.equal(raw, await inspectRaw(`${hub.host}/library/app:1.0`), 'the same manifest bytes')
  })

  it('lists its mirrors on the API (never the credentials) and marks mirrored images in the UI', async () => {
    const { mirrors } = await (await fetch(`${node.url}/api/v1/mirrors`)).json() as { mirrors: unknown[] }
    assert.deepEqual(mirrors, [{ registry: 'docker.io', url: hub.url }, { registry: 'ghcr.io', url: ghcr.url }])
    const page = await (await fetch(`${node.url}/`)).text()
    assert.match(page, new RegExp(`docker\\.io/library/app:1\\.0</span> <span class="chip" data-mirrored-from="${hub.url.replace(/[.]/g, '\\.')}"`))
  })

  it('keeps namespaces apart: containerd\'s ?ns picks the registry, with the upstream\'s credentials where it needs them', async () => {
    assert.equal(await digestOf(`${node.url}/v2/library/app/manifests/1.0?ns=ghcr.io`), ghcrDigest)
    assert.equal(await digestOf(`${node.url}/v2/library/app/manifests/1.0?ns=docker.io`), hubDigest)
    assert.notEqual(hubDigest, ghcrDigest)
    await copyFromRegistry(`${node.host}/ghcr.io/library/app:1.0`, join(dir, 'pulled-ghcr'))
  })

  it('answers Docker\'s registry-mirrors: a Hub name without a registry is the docker.io mirror\'s, where the node has none of its own', async () => {
    // As the Docker daemon asks a registry mirror: /v2/library/app/..., no ns; skopeo asks the same way.
    assert.equal(await digestOf(`${node.url}/v2/library/app/manifests/1.0`), hubDigest)
    await copyFromRegistry(`${node.host}/library/app:1.0`, join(dir, 'pulled-bare'))
    assert.equal(JSON.parse(await readFile(join(dir, 'pulled-bare', 'index.json'), 'utf8')).manifests[0].digest, hubDigest)
    // A repository of the node's own under that name is its own.
    await createImageLayout(join(dir, 'local-image'), { layers: [10_000], seed: 'local' })
    await copyToRegistry(join(dir, 'local-image'), `${node.host}/library/local:1.0`)
    const own = await digestOf(`${node.url}/v2/library/local/manifests/1.0`)
    assert.notEqual(own, hubDigest)
    const unknown = await fetch(`${node.url}/v2/library/nothing/manifests/1.0`, { headers: { accept: ACCEPT } })
    assert.equal(unknown.status, 404, 'neither the node nor the upstream has it')
    await unknown.text()
  })

  it('refuses pushes into a mirrored namespace', async () => {
    const answer = await fetch(`${node.url}/v2/docker.io/library/app/blobs/uploads/`, { method: 'POST' })
    assert.equal(answer.status, 400)
    assert.match(await answer.text(), /UNSUPPORTED.*mirrored/)
  })

  it('stops a fetch from its upstream when the node stops, leaving no upload behind', async () => {
    // The hub's image through a link of 20 kB/s: its 300 kB layer takes 15 s.
    const slow = await startCountingProxy(hub.url, { bytesPerSecond: 20_000 })
    const stopping = await startTestNode({ dataDir: join(dir, 'stopping'), config: { mirrors: [{ registry: 'docker.io', url: slow.url }] } })
    let stopped = false
    try {
      // A miss answers the manifest at once and fetches the image behind it.
      assert.equal(await digestOf(`${stopping.url}/v2/docker.io/library/app/manifests/1.0`), hubDigest)
      await eventually(async () => slow.bytesSent() > 20_000 ? true : undefined, 10_000, 'the layer on its way')
      const started = performance.now()
      await stopping.stop()
      stopped = true
      assert.ok(performance.now() - started < 5_000, `stopped in ${Math.round(performance.now() - started)} ms`)
      assert.deepEqual((await readdir(join(dir, 'stopping', 'uploads'))).filter(name => name !== 'tmp'), [])
    } finally {
      if (!stopped) await stopping.stop()
      await slow.stop()
    }
  })

  it('follows a tag that moved upstream, and serves what it fetched when the upstream is gone', async () => {
    await createImageLayout(join(dir, 'hub-image-2'), { layers: [50_000], seed: 'hub-2' })
    await copyToRegistry(join(dir, 'hub-image-2'), `${hub.host}/library/app:1.0`)
    const moved = await digestOf(`${hub.url}/v2/library/app/manifests/1.0`)
    assert.notEqual(moved, hubDigest)
    assert.equal(await digestOf(`${node.url}/v2/docker.io/library/app/manifests/1.0`), moved, 'the tag follows the upstream (time to live 0)')
    // Served at once, recorded once the image is in.
    await eventually(async () => (await node.node.manifests.tagged('docker.io/library/app', '1.0')) === moved ? true : undefined, 10_000, 'the moved tag recorded')
    await hub.stop()
    assert.equal(await digestOf(`${node.url}/v2/docker.io/library/app/manifests/1.0`), moved, 'stale if error')
    await copyFromRegistry(`${node.host}/docker.io/library/app:1.0`, join(dir, 'pulled-stale'))
    const said = node.logs.filter(line => /upstream registry is unavailable/.test(String(line.msg)))
    assert.equal(said.length, 1, 'said once')
    const unknown = await fetch(`${node.url}/v2/docker.io/library/other/manifests/1.0`, { headers: { accept: ACCEPT } })
    assert.equal(unknown.status, 503, 'a tag never fetched, upstream gone')
    assert.match(await unknown.text(), /"code":"UNAVAILABLE"/)
  })
})

describe('a node mirroring a registry that issues tokens', () => {
  let dir: string
  let upstream: TestNode
  let node: TestNode

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-mirror-token-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText({ puller: 'puller-pw' }))
    await writeFile(join(dir, 'creds.json'), JSON.stringify({ username: 'puller', password: 'puller-pw' }))
    // A Shoal node with users is a registry of the Docker token flow: 401 Bearer, then /auth/token.
    upstream = await startTestNode({ config: { htpasswd: join(dir, 'htpasswd') } })
    await createImageLayout(join(dir, 'image'), { layers: [100_000], seed: 'token-upstream' })
    await copyToRegistry(join(dir, 'image'), `${upstream.host}/team/app:2.0`, { creds: 'puller:puller-pw' })
  })
  after(async () => {
    await node?.stop()
    await upstream?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('signs in at the upstream\'s token endpoint with the configured credentials, and says why it cannot without them', async () => {
    node = await startTestNode({ config: { mirrors: [{ registry: 'quay.io', url: upstream.url, credentialsFile: join(dir, 'creds.json') }, { registry: 'anon.example', url: upstream.url }] } })
    await copyFromRegistry(`${node.host}/quay.io/team/app:2.0`, join(dir, 'pulled'))
    const refused = await fetch(`${node.url}/v2/anon.example/team/app/manifests/2.0`, { headers: { accept: ACCEPT } })
    assert.equal(refused.status, 503)
    assert.match(await refused.text(), /anon\.example refused access to team\/app \(401\): it needs credentials/)
  })
})

describe('a mirror on a node with users', () => {
  let dir: string
  let upstream: RegistryProcess
  let node: TestNode
  const basic = (user: string): string => `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-mirror-auth-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText({ alice: 'alice-pw', bob: 'bob-pw' }))
    upstream = await startDockerRegistry({ dataDir: join(dir, 'upstream') })
    await createImageLayout(join(dir, 'image'), { layers: [20_000], seed: 'mirror-auth' })
    await copyToRegistry(join(dir, 'image'), `${upstream.host}/library/app:1.0`)
    node = await startTestNode({
      config: {
        mirrors: [{ registry: 'docker.io', url: upstream.url }],
        htpasswd: join(dir, 'htpasswd'),
        accessRules: [
          { repositories: ['docker.io/*'], users: ['alice'], allow: ['pull'] },
          { repositories: ['library/*'], users: ['bob'], allow: ['pull'] }
        ]
      }
    })
  })
  after(async () => {
    await node?.stop()
    await upstream?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('checks rights on the repository the request names with its ns, not on the bare path', async () => {
    const path = '/v2/library/app/manifests/1.0?ns=docker.io'
    const asBob = await fetch(`${node.url}${path}`, { headers: { accept: ACCEPT, authorization: basic('bob') } })
    assert.equal(asBob.status, 403, 'bob may pull library/*, not docker.io/library/*')
    const anonymous = await fetch(`${node.url}${path}`, { headers: { accept: ACCEPT } })
    assert.equal(anonymous.status, 401)
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /scope="repository:docker\.io\/library\/app:pull"/)
    const asAlice = await fetch(`${node.url}${path}`, { headers: { accept: ACCEPT, authorization: basic('alice') } })
    assert.equal(asAlice.status, 200)
    // Docker's registry-mirrors form (no ns): bob may pull library/*, which the node lacks, and not the docker.io mirror's.
    const bare = await fetch(`${node.url}/v2/library/app/manifests/1.0`, { headers: { accept: ACCEPT, authorization: basic('bob') } })
    assert.equal(bare.status, 404)
    assert.match(await bare.text(), /MANIFEST_UNKNOWN/)
  })
})
