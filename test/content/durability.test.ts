// Power-loss durability: a block or upload state is acknowledged only once the directory it was
// renamed into is synced (a file's own fsync does not make its new name durable), and the
// directory syncs of many writes are batched.
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, it } from 'node:test'
import { syncDirectory } from '../../src/content/directory-sync.ts'
import { FsBlockstore } from '../../src/content/fs-blockstore.ts'
import { rawCid } from '../../src/content/unixfs-dag.ts'
import { UploadStore } from '../../src/content/upload-store.ts'

/** Every directory sync, with the entries the directory had when it was synced. */
function watchSyncs (): { syncs: Array<{ dir: string, entries: Set<string> }>, sync: (dir: string) => Promise<void> } {
  const syncs: Array<{ dir: string, entries: Set<string> }> = []
  return {
    syncs,
    sync: async dir => {
      const entries = new Set(await readdir(dir))
      await syncDirectory(dir)
      syncs.push({ dir, entries })
    }
  }
}

async function * bytes (...chunks: Buffer[]): AsyncGenerator<Uint8Array> {
  yield * chunks
}

describe('durability on power loss: directories are synced before a write is acknowledged', () => {
  let dir: string
  beforeEach(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-durability-')) })
  afterEach(async () => { await rm(dir, { recursive: true, force: true }) })

  it('a put resolves only once its block\'s directory entry is synced; concurrent puts share the syncs', async () => {
    const watch = watchSyncs()
    const store = new FsBlockstore(join(dir, 'blocks'), { syncDirectory: watch.sync })
    await store.start()
    // Blocks that all land in one shard directory, as many blocks of one request often do.
    const blocks: Buffer[] = []
    const shardOf = (block: Buffer): string => basename(join(store.pathOf(rawCid(block)), '..'))
    const wanted = shardOf(Buffer.from('block 0'))
    for (let i = 0; blocks.length < 24; i++) {
      const block = Buffer.from(`block ${i}`)
      if (shardOf(block) === wanted) blocks.push(block)
    }
    watch.syncs.length = 0
    await Promise.all(blocks.map(async block => {
      const cid = rawCid(block)
      await store.put(cid, block)
      const name = store.keyOf(cid)
      const shard = join(store.pathOf(cid), '..')
      assert.ok(watch.syncs.some(s => s.dir === shard && s.entries.has(name)), `block ${name} acknowledged before its directory entry was synced`)
    }))
    const shardSyncs = watch.syncs.filter(s => basename(s.dir) === wanted).length
    assert.ok(shardSyncs < blocks.length / 2, `${blocks.length} puts into one directory took ${shardSyncs} syncs of it: not batched`)
  })

  it('an upload\'s session directory and its saved state are synced before the request is answered', async () => {
    const watch = watchSyncs()
    const store = new FsBlockstore(join(dir, 'blocks'), { syncDirectory: watch.sync })
    await store.start()
    const uploads = new UploadStore(join(dir, 'uploads'), store, { syncDirectory: watch.sync })
    await uploads.start()
    const session = await uploads.create('repo')
    assert.ok(watch.syncs.some(s => s.dir === join(dir, 'uploads') && s.entries.has(session.id)), 'the new session\'s directory entry is synced')
    watch.syncs.length = 0
    await uploads.with('repo', session.id, async s => { await s.writer.append(bytes(randomBytes(1024 * 1024 + 10))) })
    const sessionDir = join(dir, 'uploads', session.id)
    assert.ok(watch.syncs.some(s => s.dir === sessionDir && s.entries.has('state.json') && s.entries.has('tail.1')), 'state and tail renames are synced')
    const leafShard = join(store.pathOf(session.writer.leafCids()[0] as never), '..')
    const leafSync = watch.syncs.findIndex(s => s.dir === leafShard)
    const stateSync = watch.syncs.findIndex(s => s.dir === sessionDir)
    assert.ok(leafSync >= 0 && leafSync < stateSync, 'the leaf\'s directory is synced before the state that names it')
  })
})
