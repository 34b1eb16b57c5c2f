// /v2/<name>/blobs/uploads/ and /v2/<name>/blobs/uploads/<id>: start (or mount, or push in one
// request), continue, finish, inspect and cancel an upload session.
import type { FastifyReply } from 'fastify'
import type { Metrics } from '../../metrics.ts'
import { DigestInvalidError, SizeInvalidError } from '../../oci/errors.ts'
import type { BlobService } from '../blob-service.ts'
import { mountAllowed } from '../request-access.ts'
import { contentLength, contentRange, countIn, writable, type BodyPace, type ResourceHandlers } from './http.ts'

export interface UploadHandlersOptions {
  blobs: BlobService
  metrics: Metrics
  bodyPace: BodyPace
}

const uploadLocation = (name: string, id: string): string => `/v2/${name}/blobs/uploads/${id}`

function uploadAccepted (reply: FastifyReply, name: string, id: string, size: number): FastifyReply {
  return reply.code(202).header('location', uploadLocation(name, id)).header('docker-upload-uuid', id)
    .header('range', `0-${Math.max(0, size - 1)}`).header('content-length', 0)
}

function blobCreated (reply: FastifyReply, name: string, digest: string): FastifyReply {
  return reply.code(201).header('location', `/v2/${name}/blobs/${digest}`).header('docker-content-digest', digest).header('content-length', 0)
}

/** The upload collection: POST starts a session, mounts a blob, or takes a whole blob at once. */
export function uploadStartHandlers ({ blobs, metrics, bodyPace }: UploadHandlersOptions): ResourceHandlers {
  return {
    POST: async (req, reply, [name = '']) => {
      const repository = writable(name)
      const query = req.query as Record<string, string | undefined>
      if (query.mount !== undefined && mountAllowed(req) && await blobs.mount(repository, query.mount, query.from)) {
        return await blobCreated(reply, repository, query.mount).send()
      }
      const session = await blobs.startUpload(repository)
      if (query.digest !== undefined) {
        const blob = await blobs.finishUpload(repository, session.id, query.digest, countIn(req, metrics, bodyPace), contentLength(req))
        return await blobCreated(reply, repository, blob.digest).send()
      }
      return await uploadAccepted(reply, repository, session.id, 0).send()
    }
  }
}

/** One upload session. */
export function uploadSessionHandlers ({ blobs, metrics, bodyPace }: UploadHandlersOptions): ResourceHandlers {
  return {
    GET: async (_req, reply, [name = '', id = '']) => {
      const size = await blobs.uploadSize(name, id)
      return await uploadAccepted(reply, name, id, size).code(204).send()
    },
    PATCH: async (req, reply, [name = '', id = '']) => {
      const range = contentRange(req)
      const length = contentLength(req)
      if (range !== undefined && length !== undefined && range.end - range.start + 1 !== length) {
        throw new SizeInvalidError(`Content-Range ${range.start}-${range.end} does not match Content-Length ${length}`)
      }
      const size = await blobs.appendChunk(writable(name), id, countIn(req, metrics, bodyPace), { start: range?.start, length })
      return await uploadAccepted(reply, name, id, size).send()
    },
    PUT: async (req, reply, [name = '', id = '']) => {
      const digest = (req.query as Record<string, string | undefined>).digest
      if (digest === undefined) throw new DigestInvalidError('the digest query parameter is required')
      const length = contentLength(req)
      const hasBody = (length ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined
      const blob = await blobs.finishUpload(writable(name), id, digest, hasBody ? countIn(req, metrics, bodyPace) : undefined, hasBody ? length : undefined)
      return await blobCreated(reply, name, blob.digest).send()
    },
    DELETE: async (_req, reply, [name = '', id = '']) => {
      await blobs.cancelUpload(name, id)
      return await reply.code(204).send()
    }
  }
}
