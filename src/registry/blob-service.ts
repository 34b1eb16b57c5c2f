import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import type { PooledBytes } from '../content/chunk-pool.ts'
import { readFileChunks, readFileRange, type BlockSource } from '../content/dag-reader.ts'
import type { UploadSession, UploadStore } from '../content/upload-store.ts'
import type { DagNode } from '../content/unixfs-dag.ts'
import { parseDigest } from '../oci/digest.ts'
import { BlobUnknownError, DigestInvalidError, RangeNotSatisfiableError, SizeInvalidError, UploadRangeError } from '../oci/errors.ts'
import type { BlobRecord, Metadata } from './metadata.ts'
import type { RemoteBlocks } from './remote-blocks.ts'

/** An inclusive byte range of a blob, as asked for by a Range header. */
export interface ByteRange {
  start: number
  end: number
}

export interface BlobView {
  digest: string
  size: number
  cid: CID
  /**
   * The blob's bytes (or a range of them) in pooled buffers; release each once written.
   * `signal` (the request's) stops the read, and every fetch from peers it started.
   */
  chunks(range: ByteRange | undefined, signal: AbortSignal): AsyncIterable<PooledBytes>
}

export interface ChunkInfo {
  /** Where the client says this chunk starts (Content-Range), if it said. */
  start?: number
  /** How many bytes the client says it sends (Content-Length), if it said. */
  length?: number
}

/** Blob reads, uploads and links; the /v2 routes call it, it knows nothing of HTTP. */
export class BlobService {
  private readonly metadata: Metadata
  private readonly blocks: BlockSource
  private readonly uploads: UploadStore
  /** In a mesh: blobs known but not held are fetched from peers as they are read. */
  private readonly remote: RemoteBlocks | undefined

  constructor (metadata: Metadata, blocks: BlockSource, uploads: UploadStore, remote?: RemoteBlocks) {
    this.metadata = metadata
    this.blocks = blocks
    this.uploads = uploads
    this.remote = remote
  }

  async stat (repository: string, digest: string): Promise<BlobView> {
    parseDigest(digest)
    const record = await this.metadata.getBlob(digest)
    if (record === undefined || !(await this.metadata.hasBlobLink(repository, digest))) {
      throw new BlobUnknownError(`blob ${digest} is not in ${repository}`)
    }
    return this.view(digest, record)
  }

  view (digest: string, record: BlobRecord): BlobView {
    if (record.remote === true && this.remote !== undefined) return this.remoteView(digest, record, this.remote)
    const cid = CID.parse(record.cid)
    const remote = this.remote
    return {
      digest,
      size: record.size,
      cid,
      // Every block read is checked against its CID; in a mesh, one found corrupt (and moved to
      // the quarantine) is fetched again from the blob's other holders and the read goes on.
      chunks: (range, signal) => remote === undefined
        ? readFileChunks(this.blocks, cid, range?.start ?? 0, range?.end ?? record.size - 1, signal)
        : remote.fileChunks(cid, range?.start ?? 0, range?.end ?? record.size - 1, signal, async () => await this.imagesWith(digest))
    }
  }

  /**
   * A blob read through the mesh. A read of the whole blob that completes leaves it held here:
   * it is then recorded as such and announced, so this node serves it to others.
   */
  private remoteView (digest: string, record: BlobRecord, remote: RemoteBlocks): BlobView {
    const cid = CID.parse(record.cid)
    const metadata = this.metadata
    const from = record.from
    const imagesWith = from === undefined ? async () => await this.imagesWith(digest) : async () => [CID.parse(from)]
    return {
      digest,
      size: record.size,
      cid,
      chunks: (range, signal) => (async function * () {
        const whole = (range?.start ?? 0) === 0 && (range?.end ?? record.size - 1) === record.size - 1
        yield * remote.fileChunks(cid, range?.start ?? 0, range?.end ?? record.size - 1, signal, imagesWith)
        if (whole) {
          await metadata.markBlobHeld(digest)
          remote.blobsHeld([cid])
          const images = await metadata.completeAdopted(digest)
          if (images.length > 0) remote.announce(images.map(image => CID.parse(image)))
        }
      })()
    }
  }

  /** The images this node knows that hold the blob: where the fleet keeps it. */
  private async imagesWith (digest: string): Promise<CID[]> {
    return (await this.metadata.imagesWithBlob(digest)).map(cid => CID.parse(cid))
  }

  async delete (repository: string, digest: string): Promise<void> {
    await this.stat(repository, digest)
    await this.metadata.unlinkBlob(repository, digest)
  }

  /**
   * Links a blob the node has a record of into another repository; false when it has none (the
   * client then uploads it).
   */
  /** Links a blob into `repository`: from `from` only, when given (a user's pull right there was checked). */
  async mount (repository: string, digest: string, from?: string): Promise<boolean> {
    parseDigest(digest)
    if (from !== undefined && !(await this.metadata.hasBlobLink(from, digest))) return false
    return await this.metadata.mountBlob(repository, digest)
  }

  startUpload (repository: string): Promise<UploadSession> {
    return this.uploads.create(repository)
  }

  async uploadSize (repository: string, id: string): Promise<number> {
    return (await this.uploads.get(repository, id)).writer.size
  }

  async appendChunk (repository: string, id: string, body: AsyncIterable<Uint8Array>, chunk: ChunkInfo): Promise<number> {
    return await this.uploads.with(repository, id, async (session, cancelled) => {
      const size = session.writer.size
      if (chunk.start !== undefined && chunk.start !== size) {
        throw new UploadRangeError(`chunk starts at ${chunk.start} but the upload holds ${size} bytes`, size)
      }
      await appendBody(session, body, chunk.length, cancelled)
      return session.writer.size
    })
  }

  /** Completes an upload (with an optional last chunk) and records the blob under `digest`. */
  async finishUpload (repository: string, id: string, digest: string, body?: AsyncIterable<Uint8Array>, length?: number): Promise<BlobView> {
    const expected = parseDigest(digest)
    return await this.uploads.with(repository, id, async (session, cancelled) => {
      if (body !== undefined) await appendBody(session, body, length, cancelled)
      // Past this point the upload completes: a cancel arriving now finds it gone.
      cancelled.throwIfAborted()
      const finished = await session.writer.finish()
      const actual = expected.algorithm === 'sha256' && finished.sha256 !== undefined
        ? finished.sha256
        : await this.digestOf(finished.root, finished.size, expected.algorithm)
      await this.uploads.delete(id)
      if (actual !== digest) throw new DigestInvalidError(`upload has digest ${actual}, not ${digest}`)
      const record = recordOf(finished.root)
      await this.metadata.linkBlob(repository, digest, record)
      this.remote?.blobsHeld([finished.root.cid])
      return this.view(digest, record)
    })
  }

  /** Cancels an upload; a request streaming into it is stopped (it gets BLOB_UPLOAD_UNKNOWN) first. */
  async cancelUpload (repository: string, id: string): Promise<void> {
    await this.uploads.cancel(repository, id)
  }

  private async digestOf (root: DagNode, size: number, algorithm: string): Promise<string> {
    const hash = createHash(algorithm)
    for await (const chunk of readFileRange(this.blocks, root.cid, 0, size - 1)) hash.update(chunk as Uint8Array)
    return `${algorithm}:${hash.digest('hex')}`
  }
}

export function recordOf (node: DagNode): BlobRecord {
  return { cid: node.cid.toString(), size: node.fileSize, dagSize: node.dagSize }
}

/** Parses a Range header against a blob size; undefined means the whole blob. */
export function parseRange (header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined || header === '') return undefined
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  if (match === null) return undefined // multiple or odd ranges: RFC 9110 lets us send the whole blob
  const [, first = '', last = ''] = match
  if (first === '' && last === '') return undefined
  let start: number
  let end: number
  if (first === '') {
    const suffix = Number(last)
    if (suffix === 0) throw new RangeNotSatisfiableError('empty suffix range', size)
    start = Math.max(0, size - suffix)
    end = size - 1
  } else {
    start = Number(first)
    end = last === '' ? size - 1 : Math.min(Number(last), size - 1)
    if (last !== '' && Number(last) < start) return undefined
  }
  if (start >= size) throw new RangeNotSatisfiableError(`range starts at ${start}, blob has ${size} bytes`, size)
  return { start, end }
}

/** Errors from the body (a client abort) or the writer (AppendLimitError) carry their own descriptors. */
async function appendBody (session: UploadSession, body: AsyncIterable<Uint8Array>, length: number | undefined, cancelled: AbortSignal): Promise<void> {
  const appended = await session.writer.append(body, length, cancelled)
  if (length !== undefined && appended !== length) {
    throw new SizeInvalidError(`chunk has ${appended} bytes but its Content-Length is ${length}`)
  }
}
