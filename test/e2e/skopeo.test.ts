// Real skopeo against real nodes: the four things a user does with a registry, byte for byte.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { addArtifactWithSubject, createDockerSchema2Layout, createImageLayout, createMultiArchLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
import { sha256 } from '../support/registry-client.ts'
import { copyFromRegistry, copyToRegistry, inspectRaw } from '../support/skopeo.ts'

describe('skopeo against a Shoal node', () => {
  let node: TestNode
  let work: string
  before(async () => {
    node = await startTestNode()
    work = await mkdtemp(join(tmpdir(), 'shoal-skopeo-test-'))
  })
  after(async () => {
    await node.stop()
    await rm(work, { recursive: true, force: true })
  })

  /** The manifest digests a pulled layout's index.json names. */
  async function pulledDigests (dir: string): Promise<string[]> {
    return (await readLayoutIndex(dir)).manifests.map(m => m.digest)
  }

  it('copies a single-arch image in and out with identical digests', async () => {
    const image = await createImageLayout(join(work, 'single'), { layers: [1000, 2 * 1024 * 1024 + 333], seed: 'single' })
    await copyToRegistry(join(work, 'single'), `${node.host}/e2e/single:1.0`)
    await copyFromRegistry(`${node.host}/e2e/single:1.0`, join(work, 'single-out'))
    assert.deepEqual(await pulledDigests(join(work, 'single-out')), [image.manifestDigest])
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      assert.equal(sha256(await readFile(layoutBlobPath(join(work, 'single-out'), digest))), digest)
    }
  })

  it('copies a multi-arch index with --all', async () => {
    const platforms = [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 's390x' }]
    const index = await createMultiArchLayout(join(work, 'multi'), { platforms, layerSize: 300_000, seed: 'multi' })
    await copyToRegistry(join(work, 'multi'), `${node.host}/e2e/multi:1.0`, { all: true })
    await copyFromRegistry(`${node.host}/e2e/multi:1.0`, join(work, 'multi-out'), { all: true })
    assert.deepEqual(await pulledDigests(join(work, 'multi-out')), [index.indexDigest])
    for (const child of index.manifests) {
      for (const digest of [child.manifestDigest, child.configDigest, ...child.layerDigests]) {
        assert.equal(sha256(await readFile(layoutBlobPath(join(work, 'multi-out'), digest))), digest)
      }
    }
  })

  it('copies an artifact with a subject, and lists it as a referrer', async () => {
    const dir = join(work, 'artifact')
    const image = await createImageLayout(dir, { layers: [5000], seed: 'artifact', tag: 'app' })
    const artifact = await addArtifactWithSubject(dir, {
      subjectDigest: image.manifestDigest, subjectSize: image.manifestSize, subjectMediaType: image.manifestMediaType,
      artifactType: 'application/spdx+json', tag: 'sbom'
    })
    await copyToRegistry(dir, `${node.host}/e2e/artifact:app`, { layoutTag: 'app' })
    await copyToRegistry(dir, `${node.host}/e2e/artifact:sbom`, { layoutTag: 'sbom' })
    const raw = await inspectRaw(`${node.host}/e2e/artifact:sbom`)
    assert.equal(sha256(raw), artifact.manifestDigest)
    const response = await fetch(`${node.url}/v2/e2e/artifact/referrers/${image.manifestDigest}`)
    const referrers = await response.json() as { manifests: Array<{ digest: string, artifactType: string }> }
    assert.deepEqual(referrers.manifests.map(m => [m.digest, m.artifactType]), [[artifact.manifestDigest, 'application/spdx+json']])
    await copyFromRegistry(`${node.host}/e2e/artifact:sbom`, join(work, 'artifact-out'))
    assert.deepEqual(await pulledDigests(join(work, 'artifact-out')), [artifact.manifestDigest])
  })

  it('copies a Docker schema2 image', async () => {
    const image = await createDockerSchema2Layout(join(work, 'docker'), { layers: [70_000], seed: 'docker' })
    await copyToRegistry(join(work, 'docker'), `${node.host}/e2e/docker:1.0`)
    const raw = await inspectRaw(`${node.host}/e2e/docker:1.0`)
    assert.equal(sha256(raw), image.manifestDigest)
    assert.equal((JSON.parse(raw) as { mediaType: string }).mediaType, 'application/vnd.docker.distribution.manifest.v2+json')
  })

  it('serves every image as ipfs/<cid>, by tag and by digest, and the CID is the same on a second node', async () => {
    const image = await createImageLayout(join(work, 'byCid'), { layers: [1024 * 1024 + 1, 64], seed: 'by-cid' })
    await copyToRegistry(join(work, 'byCid'), `${node.host}/e2e/bycid:1.0`)
    const head = await fetch(`${node.url}/v2/e2e/bycid/manifests/1.0`, { method: 'HEAD' })
    const imageCid = head.headers.get('shoal-image-cid') ?? ''
    assert.match(imageCid, /^bafy/)

    await copyFromRegistry(`${node.host}/ipfs/${imageCid}:latest`, join(work, 'cid-tag-out'))
    assert.deepEqual(await pulledDigests(join(work, 'cid-tag-out')), [image.manifestDigest])
    await copyFromRegistry(`${node.host}/ipfs/${imageCid}@${image.manifestDigest}`, join(work, 'cid-digest-out'))
    assert.deepEqual(await pulledDigests(join(work, 'cid-digest-out')), [image.manifestDigest])

    const second = await startTestNode()
    try {
      await copyToRegistry(join(work, 'byCid'), `${second.host}/elsewhere/other-name:2.0`)
      const again = await fetch(`${second.url}/v2/elsewhere/other-name/manifests/2.0`, { method: 'HEAD' })
      assert.equal(again.headers.get('shoal-image-cid'), imageCid)
    } finally {
      await second.stop()
    }
  })
})
