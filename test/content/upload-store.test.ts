import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { FsBlockstore } from '../../src/content/fs-blockstore.ts'
import { UploadStore } from '../../src/content/upload-store.ts'

async function* bytes (text: string): AsyncGenerator<Uint8Array> {
  yield Buffer.from(text)
}

describe('upload sessions on disk', () => {
  it('removes sessions left idle longer than the expiry, never one in use', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-uploads-'))
    try {
      const blocks = new FsBlockstore(join(dir, 'blocks'))
      await blocks.start()
      const uploads = new UploadStore(join(dir, 'uploads'), blocks)
      await uploads.start()
      const idle = await uploads.create('repo')
      await uploads.with('repo', idle.id, async session => { await session.writer.append(bytes('abandoned')) })
      const recent = await uploads.create('repo')

      assert.equal(await uploads.purgeIdle(60_000), 0, 'nothing is an hour old yet')
      const inAnHour = Date.now() + 3_600_000
      let purgedWhileBusy = -1
      await uploads.with('repo', recent.id, async () => {
        purgedWhileBusy = await uploads.purgeIdle(60_000, inAnHour)
      })
      assert.equal(purgedWhileBusy, 1, 'the idle one goes, the busy one stays')
      await assert.rejects(uploads.get('repo', idle.id), { name: 'BlobUploadUnknownError' })
      assert.equal((await uploads.get('repo', recent.id)).writer.size, 0)
      assert.equal(await uploads.count(), 1)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
