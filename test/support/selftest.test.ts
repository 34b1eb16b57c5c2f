// Checks the test helpers themselves: the image builders make layouts that umoci and skopeo
// accept, and a push/pull through the reference registry keeps every digest.

import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import {
  MEDIA_TYPES, REF_NAME_ANNOTATION, addArtifactWithSubject, createDockerSchema2Layout, createImageLayout,
  createMultiArchLayout, readLayoutIndex, sha256Digest
} from './oci-image.ts'
import { startDockerRegistry } from './node-process.ts'
import type { RegistryProcess } from './node-process.ts'
import { copyFromRegistry, copyToRegistry, inspectRaw, skopeo } from './skopeo.ts'

const run = promisify(execFile)
const SMALL_LAYERS = [1000, 70_000, 0, 1024 * 1024 + 3]

let scratch: string

before(async () => {
  scratch = await mkdtemp(path.join(os.tmpdir(), 'shoal-selftest-'))
})

after(async () => {
  await rm(scratch, { recursive: true, force: true })
})

describe('image builders', () => {
  it('are deterministic: the same options give the same digests', async () => {
    const first = await createImageLayout(path.join(scratch, 'same-a'), { layers: SMALL_LAYERS, seed: 'same' })
    const second = await createImageLayout(path.join(scratch, 'same-b'), { layers: SMALL_LAYERS, seed: 'same' })
    const other = await createImageLayout(path.join(scratch, 'other'), { layers: SMALL_LAYERS, seed: 'other' })
    assert.deepEqual(second, first)
    assert.notEqual(other.manifestDigest, first.manifestDigest)
    assert.equal(new Set(first.layerDigests).size, SMALL_LAYERS.length, 'every layer differs')
  })

  it('writes an image that skopeo inspects and umoci unpacks', async () => {
    const dir = path.join(scratch, 'single')
    const image = await createImageLayout(dir, { layers: SMALL_LAYERS, seed: 'single', tag: 'v1' })
    const inspected = JSON.parse((await skopeo(['inspect', `oci:${dir}:v1`])).stdout) as { Digest: string, Layers: string[], Architecture: string }
    assert.equal(inspected.Digest, image.manifestDigest)
    assert.deepEqual(inspected.Layers, image.layerDigests)
    assert.equal(inspected.Architecture, 'amd64')

    assert.match((await run('umoci', ['ls', '--layout', dir])).stdout, /^v1$/m)
    await run('umoci', ['stat', '--image', `${dir}:v1`])
    const bundle = path.join(scratch, 'bundle')
    await run('umoci', ['unpack', '--rootless', '--image', `${dir}:v1`, bundle])
    for (const [index, size] of SMALL_LAYERS.entries()) {
      assert.equal((await stat(path.join(bundle, 'rootfs', `layer-${index}.bin`))).size, size)
    }
  })

  it('writes a multi-arch index that skopeo reads', async () => {
    const dir = path.join(scratch, 'multi')
    const multi = await createMultiArchLayout(dir, {
      platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }],
      layerSize: 4096,
      seed: 'multi',
      tag: 'multi'
    })
    const index = JSON.parse(await inspectRaw(`oci:${dir}:multi`)) as { mediaType: string, manifests: Array<{ digest: string }> }
    assert.equal(index.mediaType, MEDIA_TYPES.ociIndex)
    assert.deepEqual(index.manifests.map((m) => m.digest), multi.manifests.map((m) => m.manifestDigest))
    assert.notEqual(multi.manifests[0]?.layerDigests[0], multi.manifests[1]?.layerDigests[0])
  })
})

describe('round trip through docker-registry with skopeo', () => {
  let registry: RegistryProcess
  const source = (): string => path.join(scratch, 'roundtrip-source')
  // skopeo 1.9 finds only OCI media types by tag in index.json: a schema2 image gets a layout of its own.
  const dockerSource = (): string => path.join(scratch, 'roundtrip-docker')
  /** tag -> where the image is, and its manifest digest */
  const images: Record<string, { layoutDir: string, layoutTag?: string, digest: string }> = {}

  before(async () => {
    registry = await startDockerRegistry({ dataDir: path.join(scratch, 'registry') })
    const image = await createImageLayout(source(), { layers: SMALL_LAYERS, seed: 'roundtrip', tag: 'image' })
    const multi = await createMultiArchLayout(source(), {
      platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 's390x' }],
      layerSize: 2048,
      seed: 'roundtrip-multi',
      tag: 'multi'
    })
    const artifact = await addArtifactWithSubject(source(), {
      subjectDigest: image.manifestDigest,
      subjectSize: image.manifestSize,
      subjectMediaType: image.manifestMediaType,
      artifactType: 'application/vnd.example.sbom.v1',
      tag: 'sbom'
    })
    const docker = await createDockerSchema2Layout(dockerSource(), { layers: [5000], seed: 'roundtrip-docker' })
    images.image = { layoutDir: source(), layoutTag: 'image', digest: image.manifestDigest }
    images.multi = { layoutDir: source(), layoutTag: 'multi', digest: multi.indexDigest }
    images.sbom = { layoutDir: source(), layoutTag: 'sbom', digest: artifact.manifestDigest }
    images.docker = { layoutDir: dockerSource(), digest: docker.manifestDigest }
  })

  after(async () => {
    await registry.stop()
  })

  it('keeps manifest digests and blobs identical', async () => {
    const pulled = path.join(scratch, 'roundtrip-pulled')
    for (const [tag, { layoutDir, layoutTag, digest }] of Object.entries(images)) {
      const ref = `${registry.host}/selftest/roundtrip:${tag}`
      await copyToRegistry(layoutDir, ref, { layoutTag, all: true })
      assert.equal(sha256Digest(await inspectRaw(ref)), digest, `registry serves ${tag} unchanged`)
      await copyFromRegistry(ref, pulled, { layoutTag: tag, all: true })
    }
    const pulledDigests = Object.fromEntries((await readLayoutIndex(pulled)).manifests
      .map((m) => [m.annotations?.[REF_NAME_ANNOTATION], m.digest]))
    assert.deepEqual(pulledDigests, Object.fromEntries(Object.entries(images).map(([tag, { digest }]) => [tag, digest])))
    const sourceBlobs = new Set([...await blobNames(source()), ...await blobNames(dockerSource())])
    assert.deepEqual(await blobNames(pulled), [...sourceBlobs].sort())
  })
})

async function blobNames (layoutDir: string): Promise<string[]> {
  return (await readdir(path.join(layoutDir, 'blobs', 'sha256'))).sort()
}
