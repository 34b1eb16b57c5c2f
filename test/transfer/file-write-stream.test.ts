// The transfers' file write stream: whatever the chunks (one large, many queued behind a write,
// empty ones), the file holds exactly what was written, in order; a failure still reaches the writer.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, it } from 'node:test'
import { FILE_WRITE_PIECE, createFileWriteStream } from '../../src/transfer/file-write-stream.ts'

const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex')

describe('createFileWriteStream', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-file-write-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('writes chunks larger than a piece whole and in order, through a pipeline', async () => {
    const chunks = [randomBytes(3 * FILE_WRITE_PIECE + 17), randomBytes(1), Buffer.alloc(0), randomBytes(FILE_WRITE_PIECE), randomBytes(FILE_WRITE_PIECE + 1)]
    const path = join(dir, 'piped')
    await pipeline(Readable.from(chunks), createFileWriteStream(path))
    assert.equal(sha256(await readFile(path)), sha256(Buffer.concat(chunks)))
  })

  it('writes chunks queued behind a write (the writev path) in order', async () => {
    const chunks = Array.from({ length: 12 }, (_, i) => randomBytes(i % 3 === 0 ? 2 * FILE_WRITE_PIECE + i : 1000 + i))
    const path = join(dir, 'queued')
    const stream = createFileWriteStream(path)
    // Written without waiting: all but the first queue up while it is under way.
    for (const chunk of chunks) stream.write(chunk)
    stream.end()
    await new Promise<void>((resolve, reject) => { stream.on('finish', resolve).on('error', reject) })
    await new Promise<void>(resolve => { stream.on('close', resolve) })
    assert.equal(sha256(await readFile(path)), sha256(Buffer.concat(chunks)))
  })

  it('fails the pipeline when the file cannot be opened', async () => {
    await assert.rejects(pipeline(Readable.from([randomBytes(10)]), createFileWriteStream(join(dir, 'missing', 'file'))), { code: 'ENOENT' })
  })
})
