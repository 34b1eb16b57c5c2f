import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, assertOciError, sha256, sha512 } from '../support/registry-client.ts'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

describe('OCI Distribution API on a real node', () => {
  let node: TestNode
  let registry: RegistryClient
  before(async () => {
    node = await startTestNode()
    registry = new RegistryClient(node.url)
  })
  after(async () => { await node.stop() })

  it('answers the base endpoint with the API version header', async () => {
    const response = await registry.request('GET', '/v2/')
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('docker-distribution-api-version'), 'registry/2.0')
  })

  describe('pull', () => {
    it('serves blobs whole, by range, and refuses unsatisfiable ranges', async () => {
      const digest = await registry.pushBlob('pull/blob', 'hello, shoal')
      const head = await registry.request('HEAD', `/v2/pull/blob/blobs/${digest}`)
      assert.equal(head.status, 200)
      assert.equal(head.headers.get('content-length'), '12')
      assert.equal(head.headers.get('docker-content-digest'), digest)
      assert.equal(await (await registry.request('GET', `/v2/pull/blob/blobs/${digest}`)).text(), 'hello, shoal')
      const part = await registry.request('GET', `/v2/pull/blob/blobs/${digest}`, { headers: { range: 'bytes=7-10' } })
      assert.equal(part.status, 206)
      assert.equal(part.headers.get('content-range'), 'bytes 7-10/12')
      assert.equal(await part.text(), 'shoa')
      const suffix = await registry.request('GET', `/v2/pull/blob/blobs/${digest}`, { headers: { range: 'bytes=-5' } })
      assert.equal(await suffix.text(), 'shoal')
      const beyond = await registry.request('GET', `/v2/pull/blob/blobs/${digest}`, { headers: { range: 'bytes=12-' } })
      assert.equal(beyond.headers.get('content-range'), 'bytes */12')
      await assertOciError(beyond, 416, 'RANGE_INVALID')
    })

    it('serves ranges across 1 MiB leaves of a large blob', async () => {
      const bytes = Buffer.alloc(3 * 1024 * 1024 + 17)
      for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) % 251
      const digest = await registry.pushBlob('pull/large', bytes)
      const start = 1024 * 1024 - 3
      const end = 2 * 1024 * 1024 + 5
      const part = await registry.request('GET', `/v2/pull/large/blobs/${digest}`, { headers: { range: `bytes=${start}-${end}` } })
      assert.equal(part.status, 206)
      assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(start, end + 1))
      const whole = Buffer.from(await (await registry.request('GET', `/v2/pull/large/blobs/${digest}`)).arrayBuffer())
      assert.equal(sha256(whole), digest)
    })

    it('gets and heads manifests by tag and by digest, with the image CID', async () => {
      const { digest, body } = await registry.pushImage('pull/image', 'v1', 'layer one')
      for (const reference of ['v1', digest]) {
        const response = await registry.request('GET', `/v2/pull/image/manifests/${reference}`)
        assert.equal(response.status, 200)
        assert.equal(response.headers.get('content-type'), OCI_MANIFEST)
        assert.equal(response.headers.get('docker-content-digest'), digest)
        assert.match(response.headers.get('shoal-image-cid') ?? '', /^bafy/)
        assert.equal(await response.text(), body)
        const head = await registry.request('HEAD', `/v2/pull/image/manifests/${reference}`)
        assert.equal(head.status, 200)
        assert.equal(head.headers.get('content-length'), String(Buffer.byteLength(body)))
      }
    })

    it('reports unknown blobs, manifests and repositories with their codes', async () => {
      await assertOciError(await registry.request('GET', `/v2/pull/none/blobs/${sha256('nothing')}`), 404, 'BLOB_UNKNOWN')
      await assertOciError(await registry.request('GET', '/v2/pull/none/manifests/latest'), 404, 'MANIFEST_UNKNOWN')
      await assertOciError(await registry.request('GET', '/v2/pull/none/tags/list'), 404, 'NAME_UNKNOWN')
    })
  })

  describe('push', () => {
    it('completes a monolithic POST in one request and checks its digest', async () => {
      const response = await registry.request('POST', `/v2/push/mono/blobs/uploads/?digest=${sha256('abc')}`, { body: 'abc' })
      assert.equal(response.status, 201)
      assert.equal(response.headers.get('location'), `/v2/push/mono/blobs/${sha256('abc')}`)
      await assertOciError(await registry.request('POST', `/v2/push/mono/blobs/uploads/?digest=${sha256('abd')}`, { body: 'abc' }), 400, 'DIGEST_INVALID')
    })

    it('takes POST then PUT with the body', async () => {
      const start = await registry.request('POST', '/v2/push/put/blobs/uploads/')
      assert.equal(start.status, 202)
      const location = start.headers.get('location') ?? ''
      assert.ok(start.headers.get('docker-upload-uuid'))
      const put = await registry.request('PUT', `${location}?digest=${sha256('put body')}`, { body: 'put body', headers: { 'content-type': 'application/octet-stream' } })
      assert.equal(put.status, 201, await put.text())
      assert.equal(await (await registry.request('GET', `/v2/push/put/blobs/${sha256('put body')}`)).text(), 'put body')
    })

    it('takes chunks in order, reports progress, and refuses an out-of-order chunk', async () => {
      const location = (await registry.request('POST', '/v2/push/chunks/blobs/uploads/')).headers.get('location') ?? ''
      const first = await registry.request('PATCH', location, { body: 'aaaa', headers: { 'content-range': '0-3', 'content-type': 'application/octet-stream' } })
      assert.equal(first.status, 202)
      assert.equal(first.headers.get('range'), '0-3')
      await assertOciError(await registry.request('PATCH', location, { body: 'cccc', headers: { 'content-range': '8-11' } }), 416, 'RANGE_INVALID')
      await assertOciError(await registry.request('PATCH', location, { body: 'bbbb', headers: { 'content-range': '4-9' } }), 400, 'SIZE_INVALID')
      const second = await registry.request('PATCH', location, { body: 'bbbb', headers: { 'content-range': '4-7' } })
      assert.equal(second.status, 202)
      const status = await registry.request('GET', location)
      assert.equal(status.status, 204)
      assert.equal(status.headers.get('range'), '0-7')
      const done = await registry.request('PUT', `${location}?digest=${sha256('aaaabbbb')}`)
      assert.equal(done.status, 201, await done.text())
      await assertOciError(await registry.request('GET', location), 404, 'BLOB_UPLOAD_UNKNOWN')
    })

    it('cancels an upload with DELETE', async () => {
      const location = (await registry.request('POST', '/v2/push/cancel/blobs/uploads/')).headers.get('location') ?? ''
      assert.equal((await registry.request('DELETE', location)).status, 204)
      await assertOciError(await registry.request('PATCH', location, { body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN')
    })

    it('mounts a blob from another repository, or falls back to a session', async () => {
      const digest = await registry.pushBlob('push/source', 'mount me')
      const mounted = await registry.request('POST', `/v2/push/target/blobs/uploads/?mount=${digest}&from=push/source`)
      assert.equal(mounted.status, 201)
      assert.equal(await (await registry.request('GET', `/v2/push/target/blobs/${digest}`)).text(), 'mount me')
      const fallback = await registry.request('POST', `/v2/push/target/blobs/uploads/?mount=${sha256('absent')}&from=push/source`)
      assert.equal(fallback.status, 202)
      assert.match(fallback.headers.get('location') ?? '', /\/v2\/push\/target\/blobs\/uploads\//)
    })

    it('accepts sha512 digests', async () => {
      const digest = await registry.pushBlob('push/sha512', 'five twelve', sha512('five twelve'))
      const response = await registry.request('GET', `/v2/push/sha512/blobs/${digest}`)
      assert.equal(response.status, 200)
      assert.equal(await response.text(), 'five twelve')
    })
  })

  describe('manifests', () => {
    it('refuses a manifest whose blobs are missing', async () => {
      const manifest = {
        schemaVersion: 2, mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256('no config'), size: 9 },
        layers: []
      }
      await assertOciError(await registry.pushManifest('man/missing', 'v1', manifest, OCI_MANIFEST), 400, 'MANIFEST_BLOB_UNKNOWN')
    })

    it('refuses malformed JSON, unknown media types, wrong digests and oversized bodies', async () => {
      await assertOciError(await registry.pushManifest('man/bad', 'v1', '{"schemaVersion": 2,', OCI_MANIFEST), 400, 'MANIFEST_INVALID')
      await assertOciError(await registry.pushManifest('man/bad', 'v1', { schemaVersion: 2, layers: [] }, 'application/x-nonsense'), 400, 'MANIFEST_INVALID')
      await assertOciError(await registry.pushManifest('man/bad', 'v1', { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, OCI_MANIFEST), 400, 'MANIFEST_INVALID')
      await assertOciError(await registry.pushManifest('man/bad', sha256('other'), { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [] }, OCI_INDEX), 400, 'DIGEST_INVALID')
      await assertOciError(await registry.pushManifest('man/bad', 'v1', 'x'.repeat(4 * 1024 * 1024 + 1), OCI_MANIFEST), 413, 'SIZE_INVALID')
    })

    it('refuses bad names, tags and digests', async () => {
      await assertOciError(await registry.request('GET', '/v2/Bad_Name/manifests/latest'), 400, 'NAME_INVALID')
      await assertOciError(await registry.pushManifest('good', '-tag', '{}', OCI_MANIFEST), 400, 'TAG_INVALID')
      await assertOciError(await registry.request('GET', '/v2/good/blobs/sha256:1234'), 400, 'DIGEST_INVALID')
      await assertOciError(await registry.request('GET', '/v2/good/blobs/md5:d41d8cd98f00b204e9800998ecf8427e'), 400, 'DIGEST_INVALID')
      await assertOciError(await registry.request('POST', '/v2/good/blobs/uploads/?digest=nonsense', { body: 'x' }), 400, 'DIGEST_INVALID')
    })

    it('lists tags with n, last and a Link header', async () => {
      for (const tag of ['c', 'a', 'b', 'd']) await registry.pushImage('man/tags', tag, 'tagged layer')
      const page = await registry.request('GET', '/v2/man/tags/tags/list?n=2')
      assert.deepEqual(await page.json(), { name: 'man/tags', tags: ['a', 'b'] })
      assert.equal(page.headers.get('link'), '</v2/man/tags/tags/list?n=2&last=b>; rel="next"')
      const rest = await registry.request('GET', '/v2/man/tags/tags/list?n=2&last=b')
      assert.deepEqual(await rest.json(), { name: 'man/tags', tags: ['c', 'd'] })
      const all = await registry.request('GET', '/v2/man/tags/tags/list')
      assert.deepEqual(await all.json(), { name: 'man/tags', tags: ['a', 'b', 'c', 'd'] })
      assert.equal(all.headers.get('link'), null)
    })

    it('lists repositories in _catalog with pagination', async () => {
      const catalog = await (await registry.request('GET', '/v2/_catalog')).json() as { repositories: string[] }
      assert.ok(catalog.repositories.includes('man/tags'))
      assert.deepEqual(catalog.repositories, [...catalog.repositories].sort())
      const page = await registry.request('GET', '/v2/_catalog?n=1')
      const first = await page.json() as { repositories: string[] }
      assert.equal(first.repositories.length, 1)
      assert.match(page.headers.get('link') ?? '', /^<\/v2\/_catalog\?n=1&last=.+>; rel="next"$/)
    })

    it('pushes an index, and lists referrers with an artifactType filter', async () => {
      const image = await registry.pushImage('man/ref', 'v1', 'subject layer')
      const index = {
        schemaVersion: 2, mediaType: OCI_INDEX,
        manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size: Buffer.byteLength(image.body), platform: { os: 'linux', architecture: 'amd64' } }]
      }
      assert.equal((await registry.pushManifest('man/ref', 'multi', index, OCI_INDEX)).status, 201)
      const subject = { mediaType: OCI_MANIFEST, digest: image.digest, size: Buffer.byteLength(image.body) }
      const sbom = await registry.pushImage('man/ref', 'sbom', 'sbom layer', { artifactType: 'application/spdx+json', subject, annotations: { kind: 'sbom' } })
      assert.equal(sbom.response.headers.get('oci-subject'), image.digest)
      await registry.pushImage('man/ref', 'sig', 'sig layer', { artifactType: 'application/vnd.example.sig', subject })

      const all = await registry.request('GET', `/v2/man/ref/referrers/${image.digest}`)
      assert.equal(all.headers.get('content-type'), OCI_INDEX)
      const listed = await all.json() as { manifests: Array<{ digest: string, artifactType: string, annotations?: object }> }
      assert.equal(listed.manifests.length, 2)
      const filtered = await registry.request('GET', `/v2/man/ref/referrers/${image.digest}?artifactType=application/spdx%2Bjson`)
      assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType')
      const only = await filtered.json() as { manifests: Array<{ digest: string, artifactType: string, annotations?: object }> }
      assert.deepEqual(only.manifests.map(m => [m.digest, m.artifactType]), [[sbom.digest, 'application/spdx+json']])
      assert.deepEqual(only.manifests[0]?.annotations, { kind: 'sbom' })
      const none = await (await registry.request('GET', `/v2/man/ref/referrers/${sha256('no subject')}`)).json() as { manifests: unknown[] }
      assert.deepEqual(none.manifests, [])
    })

    it('deletes by tag, by digest, and deletes blobs', async () => {
      const image = await registry.pushImage('man/del', 'v1', 'delete me')
      await registry.pushManifest('man/del', 'v2', image.body, OCI_MANIFEST)
      assert.equal((await registry.request('DELETE', '/v2/man/del/manifests/v1')).status, 202)
      await assertOciError(await registry.request('GET', '/v2/man/del/manifests/v1'), 404, 'MANIFEST_UNKNOWN')
      assert.equal((await registry.request('GET', '/v2/man/del/manifests/v2')).status, 200)
      assert.equal((await registry.request('DELETE', `/v2/man/del/manifests/${image.digest}`)).status, 202)
      await assertOciError(await registry.request('GET', `/v2/man/del/manifests/${image.digest}`), 404, 'MANIFEST_UNKNOWN')
      await assertOciError(await registry.request('GET', '/v2/man/del/manifests/v2'), 404, 'MANIFEST_UNKNOWN')
      await assertOciError(await registry.request('DELETE', `/v2/man/del/manifests/${image.digest}`), 404, 'MANIFEST_UNKNOWN')
      const layer = sha256('delete me')
      assert.equal((await registry.request('DELETE', `/v2/man/del/blobs/${layer}`)).status, 202)
      await assertOciError(await registry.request('GET', `/v2/man/del/blobs/${layer}`), 404, 'BLOB_UNKNOWN')
    })

    it('accepts Docker schema2 manifests and manifest lists', async () => {
      const config = '{"architecture":"arm64","os":"linux"}'
      await registry.pushBlob('man/docker', config)
      await registry.pushBlob('man/docker', 'docker layer')
      const manifest = JSON.stringify({
        schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: { mediaType: 'application/vnd.docker.container.image.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: sha256('docker layer'), size: 12 }]
      })
      assert.equal((await registry.pushManifest('man/docker', 'v1', manifest, 'application/vnd.docker.distribution.manifest.v2+json')).status, 201)
      const list = {
        schemaVersion: 2, mediaType: 'application/vnd.docker.distribution.manifest.list.v2+json',
        manifests: [{ mediaType: 'application/vnd.docker.distribution.manifest.v2+json', digest: sha256(manifest), size: manifest.length, platform: { os: 'linux', architecture: 'arm64' } }]
      }
      assert.equal((await registry.pushManifest('man/docker', 'list', list, list.mediaType)).status, 201)
      const got = await registry.request('GET', '/v2/man/docker/manifests/list')
      assert.equal(got.headers.get('content-type'), list.mediaType)
    })
  })
})
