// Metadata's deletes take the same locks as its writes: a delete that starts while a push of the
// same manifest or tag is in progress runs after it, never in the middle of it.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { Metadata, type ManifestRecord } from '../../src/registry/metadata.ts'
import { sha256 } from '../support/registry-client.ts'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const BLOBS = Array.from({ length: 50 }, (_, i) => sha256(`layer ${i}`))

const manifest = (name: string, blobs = BLOBS): ManifestRecord => ({
  mediaType: OCI_MANIFEST, size: 100, cid: `manifest-${name}`, dagSize: 100, imageCid: `image-${name}`, blobs, children: []
})

describe('Metadata: deletes under the per-key locks', () => {
  let dir: string
  let metadata: Metadata

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-metadata-locks-'))
    metadata = new Metadata(join(dir, 'metadata'))
    await metadata.start()
    // A manifest over many blobs: its push checks each one under the locks before it writes.
    for (const blob of BLOBS) await metadata.linkBlob('app', blob, { cid: `blob-${blob}`, size: 1, dagSize: 1 })
  })
  afterEach(async () => {
    await metadata.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('deleteTag waits for a push of that tag in progress, then deletes what it wrote', async () => {
    const push = metadata.putManifest('app', sha256('m1'), manifest('m1'), 'latest', undefined)
    const deleted = metadata.deleteTag('app', 'latest')
    await push
    assert.equal(await deleted, true, 'the delete saw the tag the push wrote')
    assert.equal(await metadata.getTag('app', 'latest'), undefined)
  })

  it('deleteTag never deletes a tag moved after it looked', async () => {
    await metadata.putManifest('app', sha256('m1'), manifest('m1'), 'latest', undefined)
    const deleted = metadata.deleteTag('app', 'latest')
    // A manifest with nothing to check: its write lands between the delete's look and its act.
    const moved = metadata.putManifest('app', sha256('m2'), manifest('m2', []), 'latest', undefined)
    await Promise.all([deleted, moved])
    assert.equal(await metadata.getTag('app', 'latest'), sha256('m2'), 'the move came after the delete')
  })

  it('deleteManifest waits for a push of that manifest in progress, then unlinks it with its tag', async () => {
    const push = metadata.putManifest('app', sha256('m1'), manifest('m1'), 'v1', undefined)
    const deleted = metadata.deleteManifest('app', sha256('m1'))
    await Promise.all([push, deleted])
    assert.equal(await metadata.hasManifestLink('app', sha256('m1')), false)
    assert.equal(await metadata.getTag('app', 'v1'), undefined)
  })
})
