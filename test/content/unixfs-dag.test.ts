import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { importer, type ImporterOptions } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import type { CID } from 'multiformats/cid'
import { ChunkedBlobWriter } from '../../src/content/chunked-blob-writer.ts'
import { buildImageLayout } from '../../src/content/image-layout.ts'
import { CHUNK_SIZE, buildFileDag, putSmallFile, rawCidFromSha256Hex, type DagNode } from '../../src/content/unixfs-dag.ts'
import { digestOf } from '../../src/oci/digest.ts'

/** An in-memory block sink: enough for comparing CIDs. */
class MemoryBlocks {
  readonly blocks = new Map<string, Uint8Array>()
  async put (cid: CID, bytes: Uint8Array): Promise<CID> {
    this.blocks.set(cid.toString(), bytes)
    return cid
  }
}

async function importerRoot (entries: Array<{ path?: string, content: Uint8Array }>, options: Partial<ImporterOptions>): Promise<CID> {
  let root: CID | undefined
  for await (const entry of importer(entries, new MemoryBlocks(), { ...options })) root = entry.cid
  assert.ok(root)
  return root
}

const profile = (): Partial<ImporterOptions> => ({ profile: 'unixfs-v1-2025' })

describe('UnixFS DAGs under the unixfs-v1-2025 profile', () => {
  it('a ≤ 1 MiB blob is one raw block whose CID derives from its sha256 digest', async () => {
    for (const size of [0, 1, 1000, CHUNK_SIZE]) {
      const bytes = randomBytes(size)
      const node = await putSmallFile(bytes, new MemoryBlocks())
      const fromDigest = rawCidFromSha256Hex(digestOf(bytes).slice('sha256:'.length))
      assert.equal(node.cid.toString(), fromDigest.toString(), `size ${size}`)
      assert.equal(node.cid.toString(), (await importerRoot([{ content: bytes }], profile())).toString(), `size ${size}`)
    }
  })

  it('builds the same balanced tree as the importer, across the 1024-link boundary', async () => {
    // 1 KiB chunks stand in for 1 MiB ones so that 2100 leaves stay cheap; the tree rules are the same.
    const chunk = 1024
    for (const leafCount of [2, 1024, 1025, 2100]) {
      const bytes = randomBytes(leafCount * chunk - 7)
      const sink = new MemoryBlocks()
      const leaves: DagNode[] = []
      for (let offset = 0; offset < bytes.length; offset += chunk) leaves.push(await putSmallFile(bytes.subarray(offset, offset + chunk), sink))
      const ours = await buildFileDag(leaves, sink)
      const theirs = await importerRoot([{ content: bytes }], {
        cidVersion: 1, rawLeaves: true, reduceSingleLeafToSelf: true,
        chunker: fixedSize({ chunkSize: chunk }), layout: balanced({ maxChildrenPerNode: 1024 })
      })
      assert.equal(ours.cid.toString(), theirs.toString(), `${leafCount} leaves`)
      assert.equal(ours.fileSize, bytes.length)
    }
  })

  it('a blob written in odd pieces, across a reload, has the importer CID', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-writer-'))
    try {
      const bytes = randomBytes(3 * CHUNK_SIZE + 12345)
      const sink = new MemoryBlocks()
      const first = ChunkedBlobWriter.create(dir, sink)
      const pieces = async function * (from: number, to: number): AsyncGenerator<Uint8Array> {
        for (let offset = from; offset < to; offset += 65_537) yield bytes.subarray(offset, Math.min(offset + 65_537, to))
      }
      await first.append(pieces(0, CHUNK_SIZE + 999))
      const second = await ChunkedBlobWriter.load(dir, sink)
      assert.equal(second.size, CHUNK_SIZE + 999)
      await second.append(pieces(CHUNK_SIZE + 999, bytes.length))
      const finished = await second.finish()
      assert.equal(finished.size, bytes.length)
      assert.equal(finished.root.cid.toString(), (await importerRoot([{ content: bytes }], profile())).toString())
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('an image layout directory has the CID the importer gives the same files', async () => {
    const sink = new MemoryBlocks()
    const layer = randomBytes(CHUNK_SIZE * 2 + 5)
    const config = Buffer.from('{"architecture":"amd64","os":"linux"}')
    const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [digestOf(layer)] }))
    const blobs = new Map<string, DagNode>()
    const leaves: DagNode[] = []
    for (let offset = 0; offset < layer.length; offset += CHUNK_SIZE) leaves.push(await putSmallFile(layer.subarray(offset, offset + CHUNK_SIZE), sink))
    blobs.set(digestOf(layer), await buildFileDag(leaves, sink))
    blobs.set(digestOf(config), await putSmallFile(config, sink))
    blobs.set(digestOf(manifest), await putSmallFile(manifest, sink))
    const top = { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: digestOf(manifest), size: manifest.length }
    const ours = await buildImageLayout(top, blobs, sink)

    const index = JSON.stringify({ schemaVersion: 2, manifests: [top] })
    const file = (digest: string, content: Uint8Array) => ({ path: `blobs/sha256/${digest.slice(7)}`, content })
    const theirs = await importerRoot([
      { path: 'oci-layout', content: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
      { path: 'index.json', content: Buffer.from(index) },
      file(digestOf(layer), layer), file(digestOf(config), config), file(digestOf(manifest), manifest)
    ], { ...profile(), wrapWithDirectory: true })
    assert.equal(ours.cid.toString(), theirs.toString())
  })
})
