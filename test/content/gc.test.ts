import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, stat, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, beforeEach, describe, it } from 'node:test'
import type { CID } from 'multiformats/cid'
import { readSmallFile } from '../../src/content/dag-reader.ts'
import { FsBlockstore } from '../../src/content/fs-blockstore.ts'
import { GarbageCollector, GarbageCollectorStoppedError, GcUnavailableError, registryRoots, type CollectionOutcome, type GcRoots } from '../../src/content/gc.ts'
import { UploadStore } from '../../src/content/upload-store.ts'
import { CHUNK_SIZE, buildDirectory, buildFileDag, putSmallFile, type DagNode } from '../../src/content/unixfs-dag.ts'
import { age } from '../support/disk.ts'

const HOUR = 3_600_000

/** Stores bytes as a UnixFS file under the profile; returns its root and every block written. */
async function storeFile (blocks: FsBlockstore, bytes: Buffer): Promise<{ root: DagNode, cids: CID[] }> {
  const cids: CID[] = []
  const sink = { put: async (cid: CID, block: Uint8Array) => { cids.push(cid); await blocks.put(cid, block) } }
  const leaves: DagNode[] = []
  for (let offset = 0; offset === 0 || offset < bytes.length; offset += CHUNK_SIZE) {
    leaves.push(await putSmallFile(bytes.subarray(offset, offset + CHUNK_SIZE), sink))
  }
  return { root: await buildFileDag(leaves, sink), cids }
}


async function present (blocks: FsBlockstore, cids: CID[]): Promise<boolean[]> {
  return await Promise.all(cids.map(async cid => await blocks.has(cid)))
}

function fixedRoots (...roots: CID[]): GcRoots {
  return { async * roots () { yield * roots } }
}

describe('garbage collection of blocks', () => {
  let dir: string
  let blocks: FsBlockstore
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-gc-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })
  beforeEach(async () => {
    await rm(join(dir, 'blocks'), { recursive: true, force: true })
    await rm(join(dir, 'uploads'), { recursive: true, force: true })
    blocks = new FsBlockstore(join(dir, 'blocks'))
    await blocks.start()
  })

  async function collectOnce (roots: GcRoots, graceMs = 0): Promise<Awaited<ReturnType<GarbageCollector['collect']>>> {
    const gc = new GarbageCollector({ blockstore: blocks, roots, graceMs })
    gc.start()
    // With no grace, a block written in the same millisecond the collection starts still counts as new.
    await sleep(5)
    try {
      return await gc.collect()
    } finally {
      await gc.stop()
    }
  }

  it('removes blocks no root reaches and keeps every block of a referenced DAG', async () => {
    const kept = await storeFile(blocks, randomBytes(2 * CHUNK_SIZE + 100))
    const dropped = await storeFile(blocks, randomBytes(3 * CHUNK_SIZE + 7))
    const small = await storeFile(blocks, randomBytes(500))

    const result = await collectOnce(fixedRoots(kept.root.cid))

    assert.deepEqual(await present(blocks, kept.cids), kept.cids.map(() => true))
    assert.deepEqual(await present(blocks, [...dropped.cids, ...small.cids]), [...dropped.cids, ...small.cids].map(() => false))
    assert.equal(result.scannedBlocks, kept.cids.length + dropped.cids.length + small.cids.length)
    assert.equal(result.removedBlocks, dropped.cids.length + small.cids.length)
    assert.equal(result.removedBytes, dropped.root.dagSize + small.root.dagSize)
    assert.equal((await readSmallFile(blocks, kept.root.cid)).length, 2 * CHUNK_SIZE + 100)
  })

  it('keeps a directory DAG and the files it links to', async () => {
    const file = await storeFile(blocks, randomBytes(CHUNK_SIZE + 1))
    const other = await storeFile(blocks, randomBytes(10))
    const inner = await buildDirectory([{ name: 'f', node: file.root }], blocks)
    const top = await buildDirectory([{ name: 'dir', node: inner }, { name: 'g', node: other.root }], blocks)
    const result = await collectOnce(fixedRoots(top.cid))
    assert.equal(result.removedBlocks, 0)
    assert.deepEqual(await present(blocks, [top.cid, inner.cid, ...file.cids, ...other.cids]), [true, true, ...file.cids.map(() => true), true])
  })

  it('walks only the blocks present: a remote blob with missing blocks keeps what is held', async () => {
    const remote = await storeFile(blocks, randomBytes(3 * CHUNK_SIZE))
    const [first, second] = remote.cids
    await blocks.delete(first as CID)
    const missingRoot = await storeFile(blocks, randomBytes(2 * CHUNK_SIZE))
    // Only its leaves arrived: the root (last written) is missing, so nothing reaches them.
    await blocks.delete(missingRoot.root.cid)

    const result = await collectOnce(fixedRoots(remote.root.cid, missingRoot.root.cid))

    assert.deepEqual(await present(blocks, [second as CID, remote.root.cid]), [true, true])
    assert.equal(result.removedBlocks, 2, 'the orphaned leaves of the DAG whose root is missing')
  })

  it('keeps the leaves of an open upload session, also once reloaded after a restart', async () => {
    const uploads = new UploadStore(join(dir, 'uploads'), blocks)
    await uploads.start()
    const content = randomBytes(2 * CHUNK_SIZE + 4321)
    const session = await uploads.create('repo')
    await session.writer.append((async function * () { yield content })())
    const roots = registryRoots({ metadata: { async * contentRoots () {} }, uploadsDir: join(dir, 'uploads') })

    const result = await collectOnce(roots)

    assert.equal(result.removedBlocks, 0)
    // A fresh store reads the session from disk, as after a restart, and completes it.
    const reloaded = await new UploadStore(join(dir, 'uploads'), blocks).get('repo', session.id)
    const finished = await reloaded.writer.finish()
    assert.ok((await readSmallFile(blocks, finished.root.cid)).equals(content))
  })

  it('keeps blocks written within the grace period, and the older blocks a recent one links to', async () => {
    const leaves = await storeFile(blocks, randomBytes(2 * CHUNK_SIZE))
    const old = await storeFile(blocks, randomBytes(100))
    await age(join(dir, 'blocks'), 2 * HOUR)
    // The root is written again now, as a finished upload writes it before its record exists.
    const rewritten = await buildFileDag(leaves.cids.slice(0, 2).map(cid => ({ cid, dagSize: CHUNK_SIZE, fileSize: CHUNK_SIZE })), blocks)
    assert.equal(rewritten.cid.toString(), leaves.root.cid.toString())
    const fresh = await storeFile(blocks, randomBytes(100))

    const result = await collectOnce(fixedRoots(), HOUR)

    assert.deepEqual(await present(blocks, [...leaves.cids, ...fresh.cids]), [...leaves.cids, ...fresh.cids].map(() => true))
    assert.deepEqual(await present(blocks, old.cids), [false])
    assert.equal(result.removedBlocks, 1)
  })

  it('keeps what helia pins, and removes nothing when pins cannot be read', async () => {
    const pinned = await storeFile(blocks, randomBytes(64))
    const loose = await storeFile(blocks, randomBytes(64))
    const pinnedKey = blocks.keyOf(pinned.root.cid)
    const withPins = registryRoots({
      metadata: { async * contentRoots () {} },
      uploadsDir: join(dir, 'uploads'),
      pins: () => ({ isPinned: async cid => blocks.keyOf(cid) === pinnedKey })
    })
    const unreadable = registryRoots({
      metadata: { async * contentRoots () {} },
      uploadsDir: join(dir, 'uploads'),
      pins: () => { throw new GcUnavailableError('mesh not open') }
    })

    await assert.rejects(collectOnce(unreadable), GcUnavailableError)
    assert.deepEqual(await present(blocks, [pinned.root.cid, loose.root.cid]), [true, true])
    await collectOnce(withPins)
    assert.deepEqual(await present(blocks, [pinned.root.cid, loose.root.cid]), [true, false])
  })

  it('removes temp files of failed writes once they are an hour old', async () => {
    const shard = join(dir, 'blocks', 'aa')
    const abandoned = join(shard, 'aaaa.0000.tmp')
    const recent = join(shard, 'aaaa.1111.tmp')
    await writeFile(abandoned, '')
    await writeFile(recent, 'partial')
    const old = new Date(Date.now() - 2 * HOUR)
    await utimes(abandoned, old, old)
    const result = await collectOnce(fixedRoots())
    assert.equal(result.removedTempFiles, 1)
    await assert.rejects(stat(abandoned), { code: 'ENOENT' })
    await stat(recent)
  })

  it('never loses a block put while the collection removes it', async () => {
    // Puts are spread over about as long as the last collection took, so they land in every phase.
    let spreadMs = (await collectOnce(fixedRoots())).durationMs * 2
    let removed = 0
    for (let round = 0; round < 10; round++) {
      const contents = Array.from({ length: 100 }, () => randomBytes(1 + Math.floor(Math.random() * 2000)))
      const stored = await Promise.all(contents.map(async bytes => await putSmallFile(bytes, blocks)))
      await age(join(dir, 'blocks'), 2 * HOUR)
      const gc = new GarbageCollector({ blockstore: blocks, roots: fixedRoots(), graceMs: HOUR })
      gc.start()
      const collecting = gc.collect()
      // Writers put the same blocks again at random moments while the collection runs.
      await Promise.all(stored.map(async ({ cid }, i) => {
        await sleep(Math.random() * spreadMs)
        await blocks.put(cid, contents[i] as Buffer)
      }))
      const { removedBlocks, durationMs } = await collecting
      spreadMs = durationMs * 2
      removed += removedBlocks
      await gc.stop()
      for (const [i, { cid }] of stored.entries()) {
        assert.ok(Buffer.from(await blocks.getBytes(cid)).equals(contents[i] as Buffer), `block ${i} of round ${round}`)
      }
      await collectOnce(fixedRoots())
    }
    assert.ok(removed > 0, 'the collections removed blocks the writers then put again')
  })

  it('runs one collection at a time: calls during one share the next', async () => {
    const outcomes: CollectionOutcome[] = []
    const gc = new GarbageCollector({ blockstore: blocks, roots: fixedRoots(), graceMs: 0, onCollected: outcome => outcomes.push(outcome) })
    await assert.rejects(gc.collect(), GarbageCollectorStoppedError)
    gc.start()
    await putSmallFile(randomBytes(10), blocks)
    await sleep(5)
    const first = gc.collect()
    const second = gc.collect()
    const third = gc.collect()
    const results = await Promise.all([first, second, third])
    assert.equal(outcomes.length, 2)
    assert.equal(results[0].removedBlocks, 1)
    assert.deepEqual(results[1], results[2])
    await gc.stop()
    await assert.rejects(gc.collect(), GarbageCollectorStoppedError)
  })

  it('never runs two collections at once, however calls interleave', async () => {
    let active = 0
    let most = 0
    const roots: GcRoots = { async * roots () { most = Math.max(most, ++active); yield * [] } }
    const gc = new GarbageCollector({ blockstore: blocks, roots, graceMs: 0, onCollected: () => { active-- } })
    gc.start()
    const first = gc.collect()
    const queued = gc.collect()
    const again = first.then(async () => await gc.collect())
    await Promise.all([first, queued, again])
    assert.equal(most, 1)
    await gc.stop()
  })

  it('a caller can stop waiting without ending the collection for others', async () => {
    const gc = new GarbageCollector({ blockstore: blocks, roots: fixedRoots(), graceMs: 0 })
    gc.start()
    const abandoned = new AbortController()
    const mine = gc.collect(abandoned.signal)
    const theirs = gc.collect()
    abandoned.abort(new Error('gave up'))
    await assert.rejects(mine, /gave up/)
    assert.equal((await theirs).removedBlocks, 0)
    await gc.stop()
  })
})
