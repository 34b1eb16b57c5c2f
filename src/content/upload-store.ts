import { randomUUID } from 'node:crypto'
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { BlobUploadInvalidError, BlobUploadUnknownError, TooManyUploadsError } from '../oci/errors.ts'
import { writeFileAtomic } from './atomic-file.ts'
import { syncDirectory, type SyncDirectory } from './directory-sync.ts'
import { ChunkedBlobWriter } from './chunked-blob-writer.ts'
import type { CID } from 'multiformats/cid'
import type { BlockSink } from './unixfs-dag.ts'

/** When a session last changed: its newest file. */
async function lastTouched (dir: string): Promise<number | undefined> {
  let newest: number | undefined
  // state.json is rewritten at the end of every request that touched the session.
  for (const name of ['meta.json', 'state.json']) {
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

export interface UploadStoreOptions {
  /** How a directory is synced (tests watch it); default fsync. */
  syncDirectory?: SyncDirectory
  /** Sessions open at once (on disk, finished or abandoned ones not counted); default no cap. */
  maxSessions?: number
}

const UPLOAD_ID = /^[0-9a-f-]{36}$/

/** The request working on a session: how to stop it, and when it is done. */
interface Holder {
  cancel: AbortController
  done: Promise<void>
}

/**
 * Upload sessions as directories under `<data>/uploads`, so they survive restarts.
 * One request at a time may work on a session; a cancel stops that request and waits for it
 * before the session's files go, so the request never writes into a removed session.
 */
export class UploadStore {
  private readonly root: string
  private readonly sink: BlockSink
  private readonly open = new Map<string, UploadSession>()
  private readonly busy = new Map<string, Holder>()
  /** Sessions being cancelled: no new request may take them. */
  private readonly cancelling = new Set<string>()
  private readonly syncDirectory: SyncDirectory
  private readonly maxSessions: number
  /** Ids of the sessions on disk (the cap counts them). */
  private readonly sessions = new Set<string>()

  constructor (root: string, sink: BlockSink, options: UploadStoreOptions = {}) {
    this.root = root
    this.sink = sink
    this.syncDirectory = options.syncDirectory ?? syncDirectory
    this.maxSessions = options.maxSessions ?? Number.POSITIVE_INFINITY
  }

  async start (): Promise<void> {
    await mkdir(this.root, { recursive: true })
    for (const name of await readdir(this.root)) if (UPLOAD_ID.test(name)) this.sessions.add(name)
  }

  async stop (): Promise<void> {
    this.open.clear()
  }

  async create (repository: string): Promise<UploadSession> {
    if (this.sessions.size >= this.maxSessions) {
      throw new TooManyUploadsError(`this node has ${this.sessions.size} uploads open, as many as it takes (maxUploadSessions): finish or cancel one, or try again once abandoned ones expire`)
    }
    const id = randomUUID()
    const dir = join(this.root, id)
    // Counted from now, so concurrent creates cannot overshoot the cap.
    this.sessions.add(id)
    try {
      await mkdir(dir)
      await writeFileAtomic(join(dir, 'meta.json'), JSON.stringify({ repository, createdAt: new Date().toISOString() }), this.syncDirectory)
      // The session's directory is an entry of the root: durable before its Location is given out.
      await this.syncDirectory(this.root)
    } catch (err) {
      this.sessions.delete(id)
      await rm(dir, { recursive: true, force: true })
      throw err
    }
    const session = { id, repository, writer: ChunkedBlobWriter.create(dir, this.sink, this.syncDirectory) }
    this.open.set(id, session)
    return session
  }

  /**
   * Runs `work` with the session held exclusively. `signal` aborts when the session is
   * cancelled meanwhile; the work then fails with BlobUploadUnknownError whatever it threw.
   */
  async with<T> (repository: string, id: string, work: (session: UploadSession, signal: AbortSignal) => Promise<T>): Promise<T> {
    const session = await this.get(repository, id)
    if (this.cancelling.has(id)) throw new BlobUploadUnknownError(`upload ${id} was cancelled`)
    if (this.busy.has(id)) throw new BlobUploadInvalidError(`upload ${id} is in use by another request`)
    const cancel = new AbortController()
    const { promise: done, resolve: release } = Promise.withResolvers<void>()
    this.busy.set(id, { cancel, done })
    try {
      return await work(session, cancel.signal)
    } catch (err) {
      if (cancel.signal.aborted) throw new BlobUploadUnknownError(`upload ${id} was cancelled`)
      throw err
    } finally {
      // A writer whose memory went past its disk state is read again from disk next time.
      if (session.writer.needsReload && this.open.get(id) === session) this.open.delete(id)
      this.busy.delete(id)
      release()
    }
  }

  /**
   * Cancels a session: a request working on it is stopped (it fails with BlobUploadUnknownError)
   * and waited for, then the session's files go. A session that request completed meanwhile, or
   * that another cancel took, is unknown.
   */
  async cancel (repository: string, id: string): Promise<void> {
    await this.get(repository, id)
    if (this.cancelling.has(id)) throw new BlobUploadUnknownError(`upload ${id} was cancelled`)
    this.cancelling.add(id)
    try {
      const holder = this.busy.get(id)
      if (holder !== undefined) {
        holder.cancel.abort()
        await holder.done
        if (!this.open.has(id)) throw new BlobUploadUnknownError(`upload ${id} was completed`)
      }
      await this.delete(id)
    } finally {
      this.cancelling.delete(id)
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
      writer = await ChunkedBlobWriter.load(dir, this.sink, this.syncDirectory)
    } catch {
      // Created but no byte recorded yet.
      writer = ChunkedBlobWriter.create(dir, this.sink, this.syncDirectory)
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
    this.sessions.delete(id)
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
    return this.sessions.size
  }
}
