// /v2/<name>/manifests/<reference>: read, push and delete manifests by tag or digest.
import type { BodyPace, Handler, ResourceHandlers } from './http.ts'
import { untilClientLeaves } from '../../http-request.ts'
import { IMAGE_CID_HEADER, readLimited, requestBody, writable } from './http.ts'
import { isIpfsRepository, type IpfsImages } from '../ipfs-images.ts'
import { DigestInvalidError, ManifestUnknownError, NameUnknownError, TagInvalidError } from '../../oci/errors.ts'
import { parseReference } from '../../oci/names.ts'
import { MAX_MANIFEST_BYTES, type ManifestService, type StoredManifest } from '../manifest-service.ts'
import { pullableFor, userOf } from '../request-access.ts'

export interface ManifestHandlersOptions {
  manifests: ManifestService
  ipfsImages: IpfsImages
  bodyPace: BodyPace
  /** Pull-through mirrors: a mirrored manifest the node lacks is brought in (and served while its image is fetched). */
  mirrors?: {
    ensureManifest(repository: string, reference: string, signal?: AbortSignal, options?: { forPeer?: boolean }): Promise<{ digest: string, mediaType: string, bytes: Buffer } | undefined>
    /** The docker.io mirror's name for a name the node lacks (Docker's registry-mirrors sends Hub names bare). */
    dockerHubName(name: string): string | undefined
  }
}

export function manifestHandlers ({ manifests, ipfsImages, bodyPace, mirrors }: ManifestHandlersOptions): ResourceHandlers {
  const manifestOf = async (repository: string, reference: string, signal: AbortSignal): Promise<StoredManifest> =>
    isIpfsRepository(repository) ? await ipfsImages.manifest(repository, reference, signal) : await manifests.get(repository, reference, signal)

  const send: Handler = async (req, reply, [name = '', reference = '']) => {
    // spec.md, "Pulling manifests": a reference is a tag or a digest, and a manifest not found is
    // a 404. Anything else names no manifest; only a PUT, which would create one, refuses it as TAG_INVALID.
    if (!isReference(reference)) throw new ManifestUnknownError(`no manifest ${JSON.stringify(reference)} in ${name}: it is neither a tag nor a digest`)
    // Reading may adopt the image from peers: a client that leaves stops that.
    const signal = untilClientLeaves(reply)
    // A fleet member that asked this node to fetch a mirrored image marks its request (mirror/mirrors.ts).
    const forPeer = req.headers['x-shoal-mirror-peer'] !== undefined
    const fetching = await mirrors?.ensureManifest(name, reference, signal, { forPeer })
    let manifest: Omit<StoredManifest, 'imageCid'> & { imageCid?: string }
    try {
      manifest = fetching ?? await manifestOf(name, reference, signal)
    } catch (err) {
      // Docker's registry-mirrors: a Hub name the node lacks is the docker.io mirror's, for a client that may pull that.
      const hubName = mirrors?.dockerHubName(name)
      if (hubName === undefined || !(err instanceof ManifestUnknownError || err instanceof NameUnknownError) || !pullableFor(req)(hubName)) throw err
      manifest = await mirrors?.ensureManifest(hubName, reference, signal, { forPeer }) ?? await manifests.get(hubName, reference, signal)
    }
    reply.header('docker-content-digest', manifest.digest).header('content-type', manifest.mediaType).header('content-length', manifest.bytes.length)
    // An image still being fetched from its upstream has no CID yet.
    if (manifest.imageCid !== undefined) reply.header(IMAGE_CID_HEADER, manifest.imageCid)
    return await reply.send(req.method === 'HEAD' ? undefined : manifest.bytes)
  }

  return {
    GET: send,
    HEAD: send,
    PUT: async (req, reply, [name = '', reference = '']) => {
      const repository = writable(name)
      const body = await readLimited(requestBody(req, bodyPace), MAX_MANIFEST_BYTES, 'manifest')
      const pushed = await manifests.put(repository, reference, body, req.headers['content-type'] ?? '', userOf(req))
      reply.code(201).header('location', `/v2/${repository}/manifests/${pushed.digest}`)
        .header('docker-content-digest', pushed.digest).header(IMAGE_CID_HEADER, pushed.imageCid).header('content-length', 0)
      if (pushed.subject !== undefined) reply.header('oci-subject', pushed.subject)
      return await reply.send()
    },
    DELETE: async (_req, reply, [name = '', reference = '']) => {
      await manifests.delete(writable(name), reference)
      return await reply.code(202).header('content-length', 0).send()
    }
  }
}

function isReference (text: string): boolean {
  try {
    parseReference(text)
    return true
  } catch (err) {
    if (err instanceof TagInvalidError || err instanceof DigestInvalidError) return false
    throw err
  }
}
