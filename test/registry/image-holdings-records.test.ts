// The records side of holding and dropping images: Metadata's drop, its per-digest lock against
// mounts and pushes, the placement log, and drops of records written before they listed references.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { join } from 'node:path'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { ImageHoldings, type Placement } from '../../src/registry/image-holdings.ts'
import { Metadata, type BlobRecord, type ManifestRecord, type ManifestReferences } from '../../src/registry/metadata.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

const digest = (name: string): string => sha256(name)
const blob = (name: string): BlobRecord => ({ cid: `blob-${name}`, size: 10, dagSize: 10 })
const manifest = (name: string, refs: Partial<ManifestReferences>): ManifestRecord => ({
  mediaType: refs.children === undefined ? OCI_MANIFEST : OCI_INDEX,
  size: 100,
  cid: `manifest-${name}`,
  dagSize: 100,
  imageCid: `image-${name}`,
  blobs: refs.blobs ?? [],
  children: refs.children ?? []
})

describe('Metadata: dropping an image', () => {
  let dir: string
  let metadata: Metadata
  const referencesOf = async (of: string): Promise<ManifestReferences> => {
    const record = await metadata.getManifest(of)
    return { blobs: record?.blobs ?? [], children: record?.children ?? [] }
  }
  /** Records an image manifest over blobs (recorded and linked first), tagged. */
  const putImage = async (repository: string, name: string, blobs: string[], tag?: string): Promise<string> => {
    for (const b of blobs) await metadata.linkBlob(repository, digest(b), blob(b))
    await metadata.putManifest(repository, digest(name), manifest(name, { blobs: blobs.map(digest) }), tag, undefined)
    return digest(name)
  }
  const drop = async (repository: string, top: string, descendants: string[], blobs: string[]): Promise<void> => {
    await metadata.dropImage(repository, { digest: digest(top), descendants: descendants.map(digest), blobs: blobs.map(digest) }, referencesOf)
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-holdings-records-'))
    metadata = new Metadata(join(dir, 'metadata'))
    await metadata.start()
  })
  afterEach(async () => {
    await metadata.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('removes the records, links, tags and image entry of an image nothing else uses', async () => {
    await putImage('app', 'm1', ['config', 'layer'], 'v1')
    await drop('app', 'm1', [], ['config', 'layer'])
    assert.equal(await metadata.getManifest(digest('m1')), undefined)
    assert.equal(await metadata.hasManifestLink('app', digest('m1')), false)
    assert.equal(await metadata.getTag('app', 'v1'), undefined)
    assert.equal(await metadata.manifestForImage('image-m1'), undefined)
    assert.equal(await metadata.getBlob(digest('layer')), undefined)
    assert.equal(await metadata.hasBlobLink('app', digest('layer')), false)
    assert.equal(await metadata.hasRepository('app'), false)
    const roots = []
    for await (const root of metadata.contentRoots()) roots.push(root)
    assert.deepEqual(roots, [], 'garbage collection has nothing left to keep')
  })

  it('keeps what another manifest of the repository, or another repository, still uses', async () => {
    await putImage('app', 'm1', ['config1', 'shared', 'own'])
    await putImage('app', 'm2', ['config2', 'shared'])
    await putImage('other', 'm3', ['config3', 'own'])
    await drop('app', 'm1', [], ['config1', 'shared', 'own'])

    assert.equal(await metadata.getManifest(digest('m1')), undefined)
    assert.equal(await metadata.hasBlobLink('app', digest('shared')), true, 'm2 in the same repository uses it')
    assert.equal(await metadata.hasBlobLink('app', digest('own')), false)
    assert.ok(await metadata.getBlob(digest('own')) !== undefined, 'linked from another repository')
    assert.equal(await metadata.getBlob(digest('config1')), undefined)
    assert.ok(await metadata.hasRepository('app'))
    assert.deepEqual((await metadata.listImages()).sort(), ['image-m2', 'image-m3'])
  })

  it('keeps a manifest record another repository links, with its image entry', async () => {
    await putImage('app', 'm1', ['layer'])
    await putImage('mirror', 'm1', ['layer'])
    await drop('app', 'm1', [], ['layer'])
    assert.equal(await metadata.hasManifestLink('app', digest('m1')), false)
    assert.ok(await metadata.getManifest(digest('m1')) !== undefined)
    assert.ok(await metadata.getBlob(digest('layer')) !== undefined)
    assert.deepEqual(await metadata.listImages(), ['image-m1'])
  })

  it('drops an index with its children, except a child another index or a tag keeps', async () => {
    await putImage('app', 'amd64', ['c-amd64', 'l-amd64'])
    await putImage('app', 'arm64', ['c-arm64', 'l-arm64'])
    await putImage('app', 'riscv', ['c-riscv', 'l-riscv'], 'riscv-only')
    await metadata.putManifest('app', digest('index'), manifest('index', { children: ['amd64', 'arm64', 'riscv'].map(digest) }), 'v1', undefined)
    await metadata.putManifest('app', digest('other-index'), manifest('other-index', { children: [digest('arm64')] }), 'v2', undefined)
    await drop('app', 'index', ['amd64', 'arm64', 'riscv'], ['c-amd64', 'l-amd64', 'c-arm64', 'l-arm64', 'c-riscv', 'l-riscv'])

    assert.equal(await metadata.getManifest(digest('index')), undefined)
    assert.equal(await metadata.getManifest(digest('amd64')), undefined)
    assert.equal(await metadata.getBlob(digest('l-amd64')), undefined)
    assert.equal(await metadata.hasManifestLink('app', digest('arm64')), true, 'other-index still names it')
    assert.equal(await metadata.hasBlobLink('app', digest('l-arm64')), true)
    assert.equal(await metadata.hasManifestLink('app', digest('riscv')), true, 'a tag of its own keeps it')
    assert.equal(await metadata.hasBlobLink('app', digest('l-riscv')), true)
    assert.equal(await metadata.getTag('app', 'v1'), undefined)
    assert.equal(await metadata.getTag('app', 'v2'), digest('other-index'))
  })

  it('a mount after a drop finds nothing (the client uploads instead) and never revives the record', async () => {
    await putImage('app', 'm1', ['layer'])
    assert.equal(await metadata.mountBlob('elsewhere', digest('layer')), true)
    await metadata.unlinkBlob('elsewhere', digest('layer'))
    await drop('app', 'm1', [], ['layer'])
    assert.equal(await metadata.mountBlob('elsewhere', digest('layer')), false)
    assert.equal(await metadata.hasBlobLink('elsewhere', digest('layer')), false)
    assert.equal(await metadata.getBlob(digest('layer')), undefined)
  })

  it('mounts racing drops: a mount either keeps the record alive by its link, or finds none', async () => {
    const later = async <T>(work: () => Promise<T>): Promise<T> => {
      await sleep(Math.random() * 4)
      return await work()
    }
    const outcomes = { mounted: 0, refused: 0 }
    for (let round = 0; round < 150; round++) {
      const name = `layer-${round}`
      await putImage('app', `m-${round}`, [name])
      const [mounted] = await Promise.all([
        later(async () => await metadata.mountBlob(`mount-${round}`, digest(name))),
        later(async () => { await drop('app', `m-${round}`, [], [name]) })
      ])
      outcomes[mounted ? 'mounted' : 'refused']++
      const record = await metadata.getBlob(digest(name))
      assert.equal(await metadata.hasBlobLink(`mount-${round}`, digest(name)), mounted, `round ${round}`)
      assert.equal(record !== undefined, mounted, `round ${round}: a link always has its record, a record always a link`)
    }
    assert.ok(outcomes.mounted > 0 && outcomes.refused > 0, `both orders happened: ${JSON.stringify(outcomes)}`)
  })

  it('a blob read whole after its drop stays dropped', async () => {
    await metadata.linkRemoteBlob('app', digest('layer'), blob('layer'))
    await metadata.putManifest('app', digest('m1'), { ...manifest('m1', { blobs: [digest('layer')] }), partial: true }, undefined, undefined)
    await Promise.all([metadata.markBlobHeld(digest('layer')), drop('app', 'm1', [], ['layer'])])
    assert.equal(await metadata.getBlob(digest('layer')), undefined)
    await metadata.markBlobHeld(digest('layer'))
    assert.equal(await metadata.getBlob(digest('layer')), undefined)
  })

  it('a manifest is not recorded over a blob a drop removed after the push checked it', async () => {
    await putImage('app', 'm1', ['layer'])
    await drop('app', 'm1', [], ['layer'])
    await assert.rejects(metadata.putManifest('app', digest('m2'), manifest('m2', { blobs: [digest('layer')] }), 'v2', undefined), { name: 'ManifestBlobUnknownError' })
    assert.equal(await metadata.getManifest(digest('m2')), undefined)
  })

  it('an adopted copy of a manifest held whole stays whole; markManifestWhole needs every blob held', async () => {
    await putImage('app', 'm1', ['layer'])
    await metadata.linkRemoteBlob('mirror', digest('layer'), blob('layer'))
    await metadata.putManifest('mirror', digest('m1'), { ...manifest('m1', { blobs: [digest('layer')] }), partial: true }, undefined, undefined)
    assert.equal((await metadata.getManifest(digest('m1')))?.partial, undefined)

    await metadata.linkRemoteBlob('app', digest('remote-layer'), blob('remote-layer'))
    await metadata.putManifest('app', digest('m2'), { ...manifest('m2', { blobs: [digest('remote-layer')] }), partial: true }, undefined, undefined)
    assert.equal(await metadata.markManifestWhole(digest('m2'), [digest('remote-layer')]), false)
    await metadata.markBlobHeld(digest('remote-layer'))
    assert.equal(await metadata.markManifestWhole(digest('m2'), [digest('remote-layer')]), true)
    assert.equal((await metadata.getManifest(digest('m2')))?.partial, undefined)
  })

  it('keeps the placement log across a restart', async () => {
    const placement: Placement = { repository: 'app', digest: digest('m1'), imageCid: 'image-m1', strategies: ['s1'], kept: false, placedAt: new Date(0).toISOString() }
    await metadata.placements.put(placement)
    await metadata.placements.put({ ...placement, imageCid: 'image-m2', kept: true })
    await metadata.stop()
    metadata = new Metadata(join(dir, 'metadata'))
    await metadata.start()
    assert.deepEqual(await metadata.placements.all(), [placement, { ...placement, imageCid: 'image-m2', kept: true }])
    await metadata.placements.delete('image-m1')
    assert.deepEqual((await metadata.placements.all()).map(p => p.imageCid), ['image-m2'])
  })
})

describe('ImageHoldings on a node outside a mesh', () => {
  let test: TestNode
  let registry: RegistryClient
  let holdings: ImageHoldings
  before(async () => {
    test = await startTestNode()
    registry = new RegistryClient(test.url)
    const { metadata, manifests, blobs } = test.node
    holdings = new ImageHoldings({ metadata, manifests, blobs, remote: undefined })
  })
  after(async () => { await test?.stop() })

  it('drops images recorded before records listed their references, by reading the manifests', async () => {
    const first = await registry.pushImage('old/app', '1', 'shared layer', { annotations: { n: '1' } })
    const second = await registry.pushImage('old/app', '2', 'shared layer', { annotations: { n: '2' } })
    for (const pushed of [first, second]) {
      const { blobs: _blobs, children: _children, ...before } = await test.node.metadata.getManifest(pushed.digest) as ManifestRecord
      await test.node.metadata.manifests.put(pushed.digest, before)
    }
    const layer = sha256('shared layer')
    const imageCid = first.response.headers.get('shoal-image-cid') ?? ''
    const one = { repository: 'old/app', digest: first.digest, imageCid }
    assert.equal(await holdings.holds(one), true)
    const progress: Array<[number, number]> = []
    await holdings.fetch(one, (done, total) => progress.push([done, total]), AbortSignal.timeout(5_000))
    assert.equal(progress.length, 1, 'held: nothing to fetch')

    await holdings.drop(one)
    assert.equal(await holdings.holds(one), false)
    assert.equal((await registry.request('GET', `/v2/old/app/manifests/${first.digest}`, { headers: { accept: OCI_MANIFEST } })).status, 404)
    assert.equal((await registry.request('GET', `/v2/old/app/manifests/2`, { headers: { accept: OCI_MANIFEST } })).status, 200)
    assert.equal(await (await registry.request('GET', `/v2/old/app/blobs/${layer}`)).text(), 'shared layer', 'the other image keeps the shared layer')

    await holdings.drop({ repository: 'old/app', digest: second.digest, imageCid: second.response.headers.get('shoal-image-cid') ?? '' })
    assert.equal(await test.node.metadata.getBlob(layer), undefined)
    const mount = await registry.request('POST', `/v2/new/app/blobs/uploads/?mount=${layer}&from=old/app`)
    assert.equal(mount.status, 202, 'nothing to mount: the client is sent to upload')
  })

  it('cannot fetch what it does not hold', async () => {
    const absent = { repository: 'none/app', digest: sha256('absent'), imageCid: 'bafkqaaa' }
    assert.equal(await holdings.holds(absent), false)
    await assert.rejects(holdings.fetch(absent, () => {}, AbortSignal.timeout(5_000)), { name: 'ImageUnavailableError' })
    await assert.rejects(holdings.size(absent), { name: 'ImageUnavailableError' })
  })
})
