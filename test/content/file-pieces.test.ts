// writeInPieces: every byte written once and in order, whatever the size against the piece.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, open, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { FILE_WRITE_PIECE, writeInPieces } from '../../src/content/file-pieces.ts'

describe('writeInPieces', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-file-pieces-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  for (const size of [0, 1, FILE_WRITE_PIECE, FILE_WRITE_PIECE + 1, 8 * FILE_WRITE_PIECE, 8 * FILE_WRITE_PIECE - 3]) {
    it(`writes ${size} bytes after what the file holds`, async () => {
      const path = join(dir, `file-${size}`)
      const head = randomBytes(10)
      const bytes = randomBytes(size)
      const handle = await open(path, 'w')
      try {
        await handle.write(head)
        await writeInPieces(handle, bytes)
      } finally {
        await handle.close()
      }
      assert.deepEqual(await readFile(path), Buffer.concat([head, bytes]))
    })
  }
})
