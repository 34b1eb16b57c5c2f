// /v2/<name>/blobs/<digest>: read a blob (whole or a range), or unlink it from the repository.
import type { Metrics } from '../../metrics.ts'
import { parseRange, type BlobService, type BlobView } from '../blob-service.ts'
import { isIpfsRepository, type IpfsImages } from '../ipfs-images.ts'
import { untilClientLeaves } from '../../http-request.ts'
import { writable, writeChunks, type Handler, type ResourceHandlers } from './http.ts'

export interface BlobHandlersOptions {
  blobs: BlobService
  ipfsImages: IpfsImages
  metrics: Metrics
  /** Pull-through mirrors: a mirrored blob being fetched is waited for. */
  mirrors?: { ensureBlob(repository: string, digest: string, signal?: AbortSignal): Promise<void> }
}

export function blobHandlers ({ blobs, ipfsImages, metrics, mirrors }: BlobHandlersOptions): ResourceHandlers {
  const blobOf = async (repository: string, digest: string, signal: AbortSignal): Promise<BlobView> =>
    isIpfsRepository(repository) ? await ipfsImages.blob(repository, digest, signal) : await blobs.stat(repository, digest)

  const send: Handler = async (req, reply, [name = '', digest = '']) => {
    const gone = untilClientLeaves(reply)
    await mirrors?.ensureBlob(name, digest, gone)
    const blob = await blobOf(name, digest, gone)
    reply.header('docker-content-digest', blob.digest).header('accept-ranges', 'bytes').header('content-type', 'application/octet-stream')
    const range = parseRange(req.headers.range, blob.size)
    const length = range === undefined ? blob.size : range.end - range.start + 1
    reply.header('content-length', length)
    if (range !== undefined) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${blob.size}`)
    if (req.method === 'HEAD') return await reply.send()
    await writeChunks(reply, blob.chunks(range, gone), metrics, gone)
    return reply
  }

  return {
    GET: send,
    HEAD: send,
    DELETE: async (_req, reply, [name = '', digest = '']) => {
      await blobs.delete(writable(name), digest)
      return await reply.code(202).header('content-length', 0).send()
    }
  }
}
