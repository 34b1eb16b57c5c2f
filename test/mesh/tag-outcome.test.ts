// A manifest PUT to a tag in a mesh has one outcome: the tag is in the fleet's catalogue and the
// client hears 201, or it is nowhere (not even on the node that took the PUT) and the client
// hears an error.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Catalogue } from '../../src/catalogue/catalogue.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

describe('manifest PUT in a mesh', () => {
  let node: TestNode
  let catalogue: Catalogue

  before(async () => {
    node = await startTestNode({ config: { mesh: true } })
    const fleet = node.node.fleet
    assert.ok(fleet !== undefined)
    catalogue = fleet.catalogue
  })
  after(async () => { await node.stop() })

  it('leaves no tag anywhere when the catalogue write fails, and takes the retry', async () => {
    const registry = new RegistryClient(node.url)
    const manifest = await registry.pushImageBlobs('outcome/app', 'one outcome')

    // The fault: the catalogue refuses the write (a real node, its catalogue's one method failing).
    const putTag = catalogue.putTag.bind(catalogue)
    catalogue.putTag = async () => { throw new Error('the catalogue is unavailable') }
    let failed: Response
    try {
      failed = await registry.pushManifest('outcome/app', '1.0', manifest, 'application/vnd.oci.image.manifest.v1+json')
    } finally {
      catalogue.putTag = putTag
    }
    assert.ok(failed.status >= 500, `the push failed: ${failed.status} ${await failed.text()}`)
    assert.equal(await catalogue.getTag('outcome/app', '1.0'), undefined, 'the fleet has no such tag')
    assert.equal(await node.node.metadata.getTag('outcome/app', '1.0'), undefined, 'nor has the node that took the PUT')
    assert.equal((await fetch(`${node.url}/v2/outcome/app/manifests/1.0`, { method: 'HEAD' })).status, 404)

    // The client retries once the catalogue is back: the tag is then in the fleet.
    const retried = await registry.pushManifest('outcome/app', '1.0', manifest, 'application/vnd.oci.image.manifest.v1+json')
    assert.equal(retried.status, 201, await retried.text())
    assert.equal((await catalogue.getTag('outcome/app', '1.0'))?.digest, sha256(manifest))
    const pulled = await fetch(`${node.url}/v2/outcome/app/manifests/1.0`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    assert.equal(pulled.status, 200)
    assert.equal(await pulled.text(), manifest)
  })
})
