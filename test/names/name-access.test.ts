// Names under users and rights (issue 14): `ipns/<name>` and `dnslink/<domain>` are read with the
// rights on the image they name now, as `ipfs/<cid>` is (whoever may pull a repository tagged
// with it), on /v2 and at /ipns and /routing/v1/ipns; publishing is an admin's change.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startDnsServer, type TestDnsServer } from '../support/dns-server.ts'
import { htpasswdText } from '../support/htpasswd.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, readLayoutIndex } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const PASSWORDS = { alice: 'alice-pw', bob: 'bob-pw', root: 'root-pw' }
const basic = (user: keyof typeof PASSWORDS): string => `Basic ${Buffer.from(`${user}:${PASSWORDS[user]}`).toString('base64')}`
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

describe('names with users and rights', () => {
  let dir: string
  let dns: TestDnsServer
  let node: TestNode
  let name: string
  let manifestDigest: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-names-auth-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText(PASSWORDS))
    const records: Record<string, string[]> = {}
    dns = await startDnsServer(records)
    node = await startTestNode({
      config: {
        htpasswd: join(dir, 'htpasswd'),
        admins: ['root'],
        accessRules: [
          { repositories: ['team-a/*'], users: ['alice'], allow: ['pull', 'push'] },
          { repositories: ['other/*'], users: ['bob'], allow: ['pull', 'push'] }
        ],
        dnsServers: [dns.address]
      }
    })
    const layout = await createImageLayout(join(dir, 'app'), { layers: [100_000], seed: 'names-auth' })
    manifestDigest = layout.manifestDigest
    await copyToRegistry(join(dir, 'app'), `${node.host}/team-a/app:v1`, { creds: 'alice:alice-pw' })
    const denied = await fetch(`${node.url}/api/v1/names/publish`, { method: 'POST', headers: { authorization: basic('alice'), 'content-type': 'application/json' }, body: JSON.stringify({ image: 'team-a/app:v1' }) })
    assert.equal(denied.status, 403, 'publishing is an admin\'s change')
    const published = await fetch(`${node.url}/api/v1/names/publish`, { method: 'POST', headers: { authorization: basic('root'), 'content-type': 'application/json' }, body: JSON.stringify({ image: 'team-a/app:v1' }) })
    assert.equal(published.status, 200)
    const answer = await published.json() as { name: string, value: string }
    name = answer.name
    records['_dnslink.app.example.com'] = [`dnslink=${answer.value}`]
  })
  after(async () => {
    await node?.stop()
    await dns?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('/v2: who may pull the image may pull it by name; others are refused', async () => {
    for (const repository of [`ipns/${name}`, 'dnslink/app.example.com']) {
      const get = async (authorization?: string): Promise<number> => (await fetch(`${node.url}/v2/${repository}/manifests/latest`, { headers: { accept: MANIFEST, ...(authorization === undefined ? {} : { authorization }) } })).status
      assert.equal(await get(basic('alice')), 200, `alice pulls ${repository}`)
      assert.equal(await get(basic('bob')), 403, `bob may not pull ${repository}`)
      assert.equal(await get(), 401, `anonymous is asked to sign in for ${repository}`)
    }
    // skopeo through the token flow: the token's scope is the name, granted by the image's rights.
    const out = join(dir, 'pulled')
    await copyFromRegistry(`${node.host}/ipns/${name}:latest`, out, { creds: 'alice:alice-pw' })
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [manifestDigest])
    await assert.rejects(copyFromRegistry(`${node.host}/ipns/${name}:latest`, join(dir, 'refused'), { creds: 'bob:bob-pw' }))
  })

  it('/v2: a name is resolved once per request, and the image served is the one whose rights were checked', async () => {
    const names = node.node.names
    const resolve = names.imageCid.bind(names)
    const asked: string[] = []
    names.imageCid = async (repository, signal) => {
      asked.push(repository)
      return await resolve(repository, signal)
    }
    try {
      const answer = await fetch(`${node.url}/v2/ipns/${name}/manifests/latest`, { headers: { accept: MANIFEST, authorization: basic('alice') } })
      assert.equal(answer.status, 200)
      assert.equal(answer.headers.get('docker-content-digest'), manifestDigest)
      assert.deepEqual(asked, [`ipns/${name}`], 'the guard\'s resolution is the one the router serves')
      asked.length = 0
      assert.equal((await fetch(`${node.url}/v2/ipns/${name}/manifests/latest`, { headers: { accept: MANIFEST, authorization: basic('bob') } })).status, 403)
      assert.deepEqual(asked, [`ipns/${name}`], 'a denial resolves it once too')
    } finally {
      names.imageCid = resolve
    }
  })

  it('/ipns and /routing/v1/ipns: the same rule', async () => {
    for (const path of [`/ipns/${name}`, `/routing/v1/ipns/${name}`, '/ipns/app.example.com']) {
      const get = async (authorization?: string): Promise<number> => (await fetch(`${node.url}${path}`, { redirect: 'manual', headers: authorization === undefined ? {} : { authorization } })).status
      assert.equal(await get(basic('alice')), path.startsWith('/routing') ? 200 : 302, `alice reads ${path}`)
      assert.equal(await get(basic('root')), path.startsWith('/routing') ? 200 : 302, `an admin reads ${path}`)
      assert.equal(await get(basic('bob')), 403, `bob may not read ${path}`)
      assert.equal(await get(), 401, `anonymous is asked to sign in at ${path}`)
    }
  })
})
