// What a /v2 path may name: blobs an image still needs cannot be deleted (defect 8), an encoded
// name never reaches another repository, ipfs/<not a CID> is a bad name (defect 9), and a
// reference that is no tag and no digest names no manifest (defect 10, spec.md "Pulling manifests").
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, assertOciError, sha256 } from '../support/registry-client.ts'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

describe('names and references on /v2', () => {
  let node: TestNode
  let registry: RegistryClient
  before(async () => {
    node = await startTestNode()
    registry = new RegistryClient(node.url)
  })
  after(async () => { await node.stop() })

  describe('deleting a blob a manifest still references (defect 8)', () => {
    it('is refused with an OCI error naming the manifest; the image stays pullable', async () => {
      const image = await registry.pushImage('del/app', 'v1', 'a layer the image needs')
      const layer = sha256('a layer the image needs')
      const response = await registry.request('DELETE', `/v2/del/app/blobs/${layer}`)
      const text = await response.text()
      // spec.md, "Deleting Blobs": a delete the registry does not allow is 400 or 405.
      assert.equal(response.status, 405, text)
      assert.equal(response.headers.get('allow'), 'GET, HEAD')
      const body = JSON.parse(text) as { errors: Array<{ code: string, message: string, detail: { manifest?: string } }> }
      assert.equal(body.errors[0]?.code, 'UNSUPPORTED')
      assert.match(body.errors[0]?.message ?? '', new RegExp(image.digest))
      assert.equal(body.errors[0]?.detail.manifest, image.digest)
      await registry.assertPullable('del/app', 'v1')
    })

    it('the config blob is protected too, and an untagged manifest still protects its blobs', async () => {
      const image = await registry.pushImage('del/untagged', 'v1', 'untagged layer')
      assert.equal((await registry.request('DELETE', '/v2/del/untagged/manifests/v1')).status, 202)
      // The tag is gone, the manifest is still there by digest.
      const manifest = await (await registry.request('GET', `/v2/del/untagged/manifests/${image.digest}`)).json() as { config: { digest: string } }
      await assertOciError(await registry.request('DELETE', `/v2/del/untagged/blobs/${manifest.config.digest}`), 405, 'UNSUPPORTED')
      await registry.assertPullable('del/untagged', image.digest)
    })

    it('a manifest reached through an index protects its blobs', async () => {
      const image = await registry.pushImage('del/index', 'child', 'child layer')
      const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [{ mediaType: OCI_MANIFEST, digest: image.digest, size: Buffer.byteLength(image.body) }] }
      assert.equal((await registry.pushManifest('del/index', 'multi', index, OCI_INDEX)).status, 201)
      await assertOciError(await registry.request('DELETE', `/v2/del/index/blobs/${sha256('child layer')}`), 405, 'UNSUPPORTED')
    })

    it('once the manifest is deleted the blob can go; a blob of no manifest goes at once', async () => {
      const image = await registry.pushImage('del/after', 'v1', 'freed layer')
      assert.equal((await registry.request('DELETE', `/v2/del/after/manifests/${image.digest}`)).status, 202)
      assert.equal((await registry.request('DELETE', `/v2/del/after/blobs/${sha256('freed layer')}`)).status, 202)
      const loose = await registry.pushBlob('del/after', 'a loose blob')
      assert.equal((await registry.request('DELETE', `/v2/del/after/blobs/${loose}`)).status, 202)
      await assertOciError(await registry.request('GET', `/v2/del/after/blobs/${loose}`), 404, 'BLOB_UNKNOWN')
    })

    it('another repository\'s manifest does not pin a blob of this one', async () => {
      await registry.pushImage('del/one', 'v1', 'shared layer')
      await registry.pushBlob('del/two', 'shared layer')
      assert.equal((await registry.request('DELETE', `/v2/del/two/blobs/${sha256('shared layer')}`)).status, 202)
      await registry.assertPullable('del/one', 'v1')
    })
  })

  describe('an encoded name never reaches another repository', () => {
    it('%2f is a slash of the same name, and . or .. segments are refused on every route', async () => {
      const image = await registry.pushImage('enc/victim', 'v1', 'victim layer')
      const layer = sha256('victim layer')
      // The same repository, spelt with an encoded slash: the same answers as the plain name.
      assert.equal((await registry.request('GET', `/v2/enc%2fvictim/manifests/${image.digest}`)).status, 200)
      assert.equal((await registry.request('GET', `/v2/enc%2Fvictim/blobs/${layer}`)).status, 200)
      // Nothing climbs out of another name into this one, whatever the route and the method.
      const climbs = ['other%2f..%2fenc/victim', 'other/..%2fenc%2fvictim', 'other%2f%2e%2e%2fenc%2fvictim', 'enc/victim%2f.', 'ipfs%2f..%2fenc/victim']
      for (const name of climbs) {
        for (const [method, path] of [
          ['GET', `/v2/${name}/manifests/v1`],
          ['DELETE', `/v2/${name}/manifests/v1`],
          ['GET', `/v2/${name}/blobs/${layer}`],
          ['DELETE', `/v2/${name}/blobs/${layer}`],
          ['GET', `/v2/${name}/tags/list`],
          ['GET', `/v2/${name}/referrers/${image.digest}`],
          ['POST', `/v2/${name}/blobs/uploads/?mount=${layer}`]
        ] as const) {
          await assertOciError(await registry.request(method, path), 400, 'NAME_INVALID')
        }
      }
      // A resource path smuggled into the name is just a longer name: unknown, not the victim's.
      await assertOciError(await registry.request('GET', `/v2/enc%2fvictim%2fmanifests%2fv1/tags/list`), 404, 'NAME_UNKNOWN')
      await registry.assertPullable('enc/victim', 'v1')
    })
  })

  describe('ipfs/<not a CID> is a bad name on every route (defect 9)', () => {
    it('answers NAME_INVALID, like any other bad name', async () => {
      const digest = sha256('anything')
      for (const path of [`/v2/ipfs/not-a-cid/referrers/${digest}`, '/v2/ipfs/not-a-cid/manifests/latest', `/v2/ipfs/not-a-cid/blobs/${digest}`, '/v2/ipfs/not-a-cid/tags/list']) {
        await assertOciError(await registry.request('GET', path), 400, 'NAME_INVALID')
      }
      await assertOciError(await registry.request('GET', `/v2/Not_A_Name/referrers/${digest}`), 400, 'NAME_INVALID')
    })
  })

  describe('a manifest reference that is not a valid tag (defect 10)', () => {
    // spec.md, "Pulling manifests": <reference> MUST be a digest or a tag, and "if the manifest is
    // not found in the repository, the response code MUST be 404 Not Found". The conformance suite
    // uses `.INVALID_MANIFEST_NAME`.
    it('GET and HEAD answer 404 MANIFEST_UNKNOWN', async () => {
      await registry.pushImage('ref/app', 'v1', 'ref layer')
      for (const reference of ['.INVALID_MANIFEST_NAME', '-leading-dash', 'a'.repeat(129), 'sha256:not-hex', 'nothing:here']) {
        await assertOciError(await registry.request('GET', `/v2/ref/app/manifests/${encodeURIComponent(reference)}`), 404, 'MANIFEST_UNKNOWN')
        const head = await registry.request('HEAD', `/v2/ref/app/manifests/${encodeURIComponent(reference)}`)
        assert.equal(head.status, 404, reference)
      }
    })

    it('PUT keeps TAG_INVALID', async () => {
      const image = await registry.pushImage('ref/put', 'v1', 'put layer')
      await assertOciError(await registry.pushManifest('ref/put', '.INVALID_MANIFEST_NAME', image.body, OCI_MANIFEST), 400, 'TAG_INVALID')
    })
  })
})
