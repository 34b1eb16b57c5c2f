import { randomUUID } from 'node:crypto'
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobUploadInvalidError, BlobUploadUnknownError } from '../oci/errors.ts'
import { writeFileAtomic } from './atomic-file.ts'
import { ChunkedBlobWriter } from './chunked-blob-writer.ts'
import type { CID } from 'multiformats/cid'
import type { BlockSink } from './unixfs-dag.ts'

/** When a session last changed: its newest file. */
async function lastTouched (dir: string): Promise<number | undefined> {
  let newest: number | undefined
  for (const name of ['meta.json', 'state.json', 'tail']) {
    try {
      const { mtimeMs } = await stat(join(dir, name))
      newest = Math.max(newest ?? 0, mtimeMs)
    } catch { /* not written yet */ }
  }
  return newest
}

export interface UploadSession {
  id: string
  repository: string
  writer: ChunkedBlobWriter
}

const UPLOAD_ID = /^[0-9a-f-]{36}$/

/**
 * Upload sessions as directories under `<data>/uploads`, so they survive restarts.
 * One request at a time may work on a session.
 */
export class UploadStore {
  private readonly root: string
  private readonly sink: BlockSink
  private readonly open = new Map<string, UploadSession>()
  private readonly busy = new Set<string>()

  constructor (root: string, sink: BlockSink) {
    this.root = root
    this.sink = sink
  }

  async start (): Promise<void> {
    await mkdir(this.root, { recursive: true })
  }

  async stop (): Promise<void> {
    this.open.clear()
  }

  async create (repository: string): Promise<UploadSession> {
    const id = randomUUID()
    const dir = join(this.root, id)
    await mkdir(dir)
    await writeFileAtomic(join(dir, 'meta.json'), JSON.stringify({ repository, createdAt: new Date().toISOString() }))
    const session = { id, repository, writer: ChunkedBlobWriter.create(dir, this.sink) }
    this.open.set(id, session)
    return session
  }

  /** Runs `work` with the session held exclusively. */
  async with<T> (repository: string, id: string, work: (session: UploadSession) => Promise<T>): Promise<T> {
    const session = await this.get(repository, id)
    if (this.busy.has(id)) throw new BlobUploadInvalidError(`upload ${id} is in use by another request`)
    this.busy.add(id)
    try {
      return await work(session)
    } finally {
      this.busy.delete(id)
    }
  }

  async get (repository: string, id: string): Promise<UploadSession> {
    const cached = this.open.get(id)
    if (cached !== undefined) {
      if (cached.repository !== repository) throw new BlobUploadUnknownError(`no upload ${id} in ${repository}`)
      return cached
    }
    if (!UPLOAD_ID.test(id)) throw new BlobUploadUnknownError(`no upload ${id}`)
    const dir = join(this.root, id)
    let meta: { repository: string }
    try {
      meta = JSON.parse(await readFile(join(dir, 'meta.json'), 'utf8')) as { repository: string }
    } catch {
      throw new BlobUploadUnknownError(`no upload ${id}`)
    }
    if (meta.repository !== repository) throw new BlobUploadUnknownError(`no upload ${id} in ${repository}`)
    let writer: ChunkedBlobWriter
    try {
      writer = await ChunkedBlobWriter.load(dir, this.sink)
    } catch {
      // Created but no byte recorded yet.
      writer = ChunkedBlobWriter.create(dir, this.sink)
    }
    const session = { id, repository, writer }
    this.open.set(id, session)
    return session
  }

  /** The leaves of every upload open in this process, checkpointed or not. */
  liveLeaves (): CID[] {
    return [...this.open.values()].flatMap(session => session.writer.leafCids())
  }

  async delete (id: string): Promise<void> {
    this.open.delete(id)
    await rm(join(this.root, id), { recursive: true, force: true })
  }

  /**
   * Removes sessions nobody touched for `maxIdleMs` (a client that gave up), except one a
   * request is working on. Returns how many went.
   */
  async purgeIdle (maxIdleMs: number, now = Date.now()): Promise<number> {
    let purged = 0
    for (const id of await readdir(this.root)) {
      if (!UPLOAD_ID.test(id) || this.busy.has(id)) continue
      const dir = join(this.root, id)
      const touched = await lastTouched(dir)
      if (touched !== undefined && now - touched > maxIdleMs) {
        await this.delete(id)
        purged++
      }
    }
    return purged
  }

  async count (): Promise<number> {
    return (await readdir(this.root)).filter(name => UPLOAD_ID.test(name)).length
  }
}
