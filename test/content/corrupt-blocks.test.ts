// A node never sends a block that does not match its CID: a corrupt block is quarantined,
// counted, logged, fetched again from a peer in a mesh; `shoal fsck` and the scrub find them.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { rawCid, rawCidFromSha256Hex } from '../../src/content/unixfs-dag.ts'
import { shoal } from '../support/cli.ts'
import { eventually, startFleet, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { metricValue } from '../support/metrics.ts'
import { startNodeProcess } from '../support/node-process.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

const MiB = 1024 * 1024

/**
 * Flips one byte of a file in place. A moment after the block was written: the node trusts a
 * block it wrote while the file's inode, size and change time stay, and the change time has the
 * kernel clock's grain (a few ms).
 */
async function flipByte (path: string, at = 100): Promise<void> {
  await new Promise(resolve => setTimeout(resolve, 20))
  const bytes = await readFile(path)
  bytes[at] = (bytes[at] ?? 0) ^ 0xff
  await writeFile(path, bytes)
}

/** GETs a URL and reads the whole body; undefined when the response was cut short. */
async function download (url: string, init?: RequestInit): Promise<{ status: number, body: Buffer | undefined }> {
  const response = await fetch(url, init)
  try {
    return { status: response.status, body: Buffer.from(await response.arrayBuffer()) }
  } catch {
    return { status: response.status, body: undefined }
  }
}

describe('corrupt blocks on a node\'s disk', () => {
  describe('one node', () => {
    let node: TestNode
    let registry: RegistryClient
    before(async () => {
      node = await startTestNode()
      registry = new RegistryClient(node.url)
    })
    after(async () => { await node.stop() })

    it('a blob GET never streams bytes that do not hash to its digest; the leaf is quarantined, counted and logged', async () => {
      const blob = randomBytes(3 * MiB + 17)
      const digest = await registry.pushBlob('corrupt/blob', blob)
      const leaf = rawCid(blob.subarray(MiB, 2 * MiB))
      const path = node.node.blockstore.pathOf(leaf)
      await flipByte(path)

      const { status, body } = await download(`${node.url}/v2/corrupt/blob/blobs/${digest}`)
      assert.ok(status === 200 || status >= 400, `status ${status}`)
      if (body !== undefined && status === 200) assert.notEqual(body.length, blob.length, 'a complete body would be the corrupt one: the response must be cut short')
      assert.ok(body === undefined || !body.subarray(MiB, 2 * MiB).equals(await readFile(join(node.dataDir, 'quarantine', (await readdir(join(node.dataDir, 'quarantine')))[0] ?? ''))), 'the corrupt leaf\'s bytes were not sent')
      assert.equal(existsSync(path), false, 'the corrupt block is no longer in the store')
      const quarantined = await readdir(join(node.dataDir, 'quarantine'))
      assert.equal(quarantined.length, 1)
      assert.ok(quarantined[0]?.startsWith(node.node.blockstore.keyOf(leaf)))
      assert.equal(await metricValue(node.url, 'shoal_blocks_corrupt_total'), 1)
      assert.ok(node.logs.some(line => line.cid === leaf.toString() && String(line.msg).includes('does not match its CID')), 'logged with its CID')
    })

    it('a blob whose first block is corrupt answers 404 BLOB_UNKNOWN in an OCI body, not a response cut short', async () => {
      const blob = randomBytes(2 * MiB + 3)
      const digest = await registry.pushBlob('corrupt/first', blob)
      await flipByte(node.node.blockstore.pathOf(rawCid(blob.subarray(0, MiB))))
      for (const range of [undefined, 'bytes=5-10']) {
        const response = await fetch(`${node.url}/v2/corrupt/first/blobs/${digest}`, { headers: range === undefined ? {} : { range } })
        assert.equal(response.status, 404, `range ${range ?? 'none'}`)
        const body = await response.json() as { errors: Array<{ code: string }> }
        assert.equal(body.errors[0]?.code, 'BLOB_UNKNOWN')
      }
      assert.equal((await fetch(`${node.url}/v2/`)).status, 200, 'the node is still up')
      assert.ok(!node.logs.some(line => line.msg === 'internal error'), 'not logged as a fault of the node')
    })

    it('GET /ipfs/<cid> answers 404 for a corrupt block, never 200 with its bytes; ranges too', async () => {
      const small = randomBytes(4000)
      const digest = await registry.pushBlob('corrupt/small', small)
      const cid = rawCidFromSha256Hex(digest.slice('sha256:'.length))
      await flipByte(node.node.blockstore.pathOf(cid))
      const raw = await fetch(`${node.url}/ipfs/${cid.toString()}`, { headers: { accept: 'application/vnd.ipld.raw' } })
      assert.equal(raw.status, 404, await raw.text())
      // The blob's one block is gone now: a range of it is refused or cut short, never served.
      const range = await download(`${node.url}/v2/corrupt/small/blobs/${digest}`, { headers: { range: 'bytes=10-20' } }).catch(() => undefined)
      assert.ok(range === undefined || range.status !== 206 || range.body === undefined || range.body.length === 0, `a range of the corrupt block was served: ${range?.status}`)
    })

    it('a CAR of a DAG with a corrupt block never carries it', async () => {
      const blob = randomBytes(2 * MiB + 5)
      const digest = await registry.pushBlob('corrupt/car', blob)
      const root = (await node.node.metadata.getBlob(digest))?.cid ?? ''
      const leaf = rawCid(blob.subarray(0, MiB))
      await flipByte(node.node.blockstore.pathOf(leaf))
      const { status, body } = await download(`${node.url}/ipfs/${root}`, { headers: { accept: 'application/vnd.ipld.car' } })
      const bad = Buffer.from(blob.subarray(0, MiB))
      bad[100] = (bad[100] ?? 0) ^ 0xff
      assert.ok(body === undefined || !body.includes(bad.subarray(0, 4096)), `the CAR (status ${status}) carries the corrupt leaf`)
    })
  })

  it('a block the node wrote and remembers as good is still caught once its file changed, across a restart too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-remembered-'))
    try {
      let node = await startTestNode({ dataDir: dir })
      const small = randomBytes(3000)
      const digest = await new RegistryClient(node.url).pushBlob('remembered/blob', small)
      const cid = rawCidFromSha256Hex(digest.slice(7))
      // Read once, so it is remembered as checked; then the node stops and keeps that memory.
      assert.equal((await fetch(`${node.url}/ipfs/${cid.toString()}`, { headers: { accept: 'application/vnd.ipld.raw' } })).status, 200)
      await node.stop()
      assert.match(await readFile(join(dir, 'verified-blocks'), 'utf8'), new RegExp(node.node.blockstore.keyOf(cid)))
      await flipByte(node.node.blockstore.pathOf(cid))
      node = await startTestNode({ dataDir: dir })
      try {
        assert.equal((await fetch(`${node.url}/ipfs/${cid.toString()}`, { headers: { accept: 'application/vnd.ipld.raw' } })).status, 404)
        assert.equal(await metricValue(node.url, 'shoal_blocks_corrupt_total'), 1)
      } finally {
        await node.stop()
      }
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('in a mesh, a corrupt leaf is fetched again from a peer and the GET delivers the whole blob', { timeout: 120_000 }, async () => {
    const [holder, reader] = await startFleet(2) as [TestNode, TestNode]
    try {
      const layer = randomBytes(3 * MiB + 1).toString('base64')
      const pushed = await new RegistryClient(holder.url).pushImage('corrupt/mesh', 'v1', layer)
      const registry = new RegistryClient(reader.url)
      // The reader adopts the image and reads the layer whole: it then holds it.
      await eventually(async () => (await registry.request('GET', '/v2/corrupt/mesh/manifests/v1', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).ok ? true : undefined, 15_000, 'the tag on the reader')
      const digest = sha256(layer)
      assert.equal(sha256(Buffer.from(await (await registry.request('GET', `/v2/corrupt/mesh/blobs/${digest}`)).arrayBuffer())), digest)
      await eventually(async () => (await reader.node.metadata.getBlob(digest))?.remote !== true ? true : undefined, 5000, 'the layer held whole')
      assert.ok(pushed.digest !== '')

      const leaf = rawCid(Buffer.from(layer).subarray(MiB, 2 * MiB))
      const path = reader.node.blockstore.pathOf(leaf)
      await flipByte(path)
      const { status, body } = await download(`${reader.url}/v2/corrupt/mesh/blobs/${digest}`)
      assert.equal(status, 200)
      assert.equal(body === undefined ? 'cut short' : sha256(body), digest, 'the whole, correct blob')
      // Stored as it was fetched (its rename may come a moment after the bytes went out).
      await eventually(async () => existsSync(path) ? true : undefined, 5000, 'the leaf fetched again')
      assert.equal(rawCid(await readFile(path)).toString(), leaf.toString(), 'the leaf is back, fetched again from the holder')
      assert.equal((await readdir(join(reader.dataDir, 'quarantine'))).length, 1)
      assert.equal(await metricValue(reader.url, 'shoal_blocks_corrupt_total'), 1)
    } finally {
      await reader.stop()
      await holder.stop()
    }
  })

  describe('shoal fsck and the scrub', () => {
    let dir: string
    before(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-fsck-')) })
    after(async () => { await rm(dir, { recursive: true, force: true }) })

    it('fsck checks every block, reports one line per corrupt one, quarantines it and exits 1; then 0', { timeout: 120_000 }, async () => {
      const data = join(dir, 'node')
      const blobs = [randomBytes(2 * MiB + 3), randomBytes(500)]
      const node = await startNodeProcess({ dataDir: data })
      const registry = new RegistryClient(node.url)
      for (const blob of blobs) await registry.pushBlob('fsck/test', blob)
      const inUse = await shoal('fsck', '--data', data)
      assert.equal(inUse.code, 1)
      assert.match(inUse.stderr, /in use by another node \(pid \d+\)/)
      await node.stop()

      const { FsBlockstore } = await import('../../src/content/fs-blockstore.ts')
      const store = new FsBlockstore(join(data, 'blocks'))
      const bad = [rawCid((blobs[0] as Buffer).subarray(0, MiB)), rawCidFromSha256Hex(sha256(blobs[1] as Buffer).slice(7))]
      for (const cid of bad) await flipByte(store.pathOf(cid), 7)

      const first = await shoal('fsck', '--data', data)
      assert.equal(first.code, 1, first.stdout + first.stderr)
      const lines = first.stdout.trim().split('\n')
      const problems = lines.filter(line => line.startsWith('corrupt block'))
      assert.equal(problems.length, 2, first.stdout)
      for (const cid of bad) assert.ok(problems.some(line => line.includes(cid.toString())), `${cid.toString()} reported`)
      assert.match(lines.at(-1) ?? '', /^checked \d+ blocks .*: 2 corrupt, 0 unreadable/)
      assert.equal((await readdir(join(data, 'quarantine'))).length, 2)

      const second = await shoal('fsck', '--data', data)
      assert.equal(second.code, 0, second.stdout)
      assert.match(second.stdout, /: 0 corrupt, 0 unreadable/)
    })

    it('the scrub finds a corrupt block nobody reads', { timeout: 60_000 }, async () => {
      const node = await startTestNode({ config: { scrubIntervalHours: 0.5 / 3600 } })
      try {
        const blob = randomBytes(5000)
        const digest = await new RegistryClient(node.url).pushBlob('scrub/test', blob)
        const cid = rawCidFromSha256Hex(digest.slice(7))
        await flipByte(node.node.blockstore.pathOf(cid))
        await eventually(async () => existsSync(node.node.blockstore.pathOf(cid)) ? undefined : true, 20_000, 'the scrub to quarantine the block')
        assert.equal(await metricValue(node.url, 'shoal_blocks_corrupt_total'), 1)
        assert.ok(await metricValue(node.url, 'shoal_scrub_blocks_verified_total') >= 1)
      } finally {
        await node.stop()
      }
    })
  })
})
