// /v2/<name>/blobs/<digest>: read a blob (whole or a range), or unlink it from the repository.
import type { Metrics } from '../../metrics.ts'
import { parseRange, type BlobService, type BlobView } from '../blob-service.ts'
import { isIpfsRepository, type IpfsImages } from '../ipfs-images.ts'
import { untilClientLeaves } from '../../http-request.ts'
import { BlobUnknownError } from '../../oci/errors.ts'
import { pullableFor } from '../request-access.ts'
import { writable, writeChunks, type Handler, type ResourceHandlers } from './http.ts'

export interface BlobHandlersOptions {
  blobs: BlobService
  ipfsImages: IpfsImages
  metrics: Metrics
  /** Pull-through mirrors: a mirrored blob being fetched is waited for. */
  mirrors?: {
    ensureBlob(repository: string, digest: string, signal?: AbortSignal): Promise<void>
    /** The docker.io mirror's name for a name the node lacks (Docker's registry-mirrors sends Hub names bare). */
    dockerHubName(name: string): string | undefined
  }
}

export function blobHandlers ({ blobs, ipfsImages, metrics, mirrors }: BlobHandlersOptions): ResourceHandlers {
  const blobOf = async (repository: string, digest: string, signal: AbortSignal): Promise<BlobView> =>
    isIpfsRepository(repository) ? await ipfsImages.blob(repository, digest, signal) : await blobs.stat(repository, digest)

  const send: Handler = async (req, reply, [name = '', digest = '']) => {
    const gone = untilClientLeaves(reply)
    await mirrors?.ensureBlob(name, digest, gone)
    let blob: BlobView
    try {
      blob = await blobOf(name, digest, gone)
    } catch (err) {
      // Docker's registry-mirrors: a Hub name the node lacks is the docker.io mirror's, for a client that may pull that.
      const hubName = mirrors?.dockerHubName(name)
      if (hubName === undefined || !(err instanceof BlobUnknownError) || !pullableFor(req)(hubName)) throw err
      await mirrors?.ensureBlob(hubName, digest, gone)
      blob = await blobs.stat(hubName, digest)
    }
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
