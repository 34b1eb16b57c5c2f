// The router of the OCI Distribution 1.1 API under /v2/: which resource a path names, and which
// handler (registry/handlers/*) answers each method of it.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { CID } from 'multiformats/cid'
import type { Metrics } from '../metrics.ts'
import { EndpointUnknownError, MethodUnsupportedError, NameInvalidError, NameUnknownError, UnsupportedError } from '../oci/errors.ts'
import { untilClientLeaves } from '../http-request.ts'
import { isNameRepository } from '../names/names.ts'
import { imageOfNameFor } from './request-access.ts'
import { assertRepositoryName } from '../oci/names.ts'
import type { BlobService } from './blob-service.ts'
import { blobHandlers } from './handlers/blobs.ts'
import { NO_BODY_PACE, type BodyPace, type ResourceHandlers } from './handlers/http.ts'
import { catalogHandler, referrerHandlers, tagListHandlers } from './handlers/lists.ts'
import { manifestHandlers } from './handlers/manifests.ts'
import { uploadSessionHandlers, uploadStartHandlers } from './handlers/uploads.ts'
import { IPFS_REPOSITORY_PREFIX, isIpfsRepository, type IpfsImages } from './ipfs-images.ts'
import type { ManifestService } from './manifest-service.ts'

export { IMAGE_CID_HEADER } from './handlers/http.ts'

/** Pull-through mirrors (mirror/mirrors.ts), as the router and the manifest reads use them. */
export interface RegistryMirrors {
  /** The repository a request names, given containerd's `ns` query parameter. */
  localName(name: string, ns: string | undefined): string
  /** Whether a repository is under a mirrored registry's name (read-only). */
  isMirrored(repository: string): boolean
  /**
   * Brings a mirrored manifest (and its image) in from its upstream when the node and its fleet
   * lack it; answers the manifest to serve while the image is fetched (undefined: the node serves it).
   */
  ensureManifest(repository: string, reference: string, signal?: AbortSignal, options?: { forPeer?: boolean }): Promise<{ digest: string, mediaType: string, bytes: Buffer } | undefined>
  /** Waits until a mirrored blob being fetched is stored (or fetches it). */
  ensureBlob(repository: string, digest: string, signal?: AbortSignal): Promise<void>
  /** The docker.io mirror's name for a name the node lacks (Docker's registry-mirrors sends Hub names bare). */
  dockerHubName(name: string): string | undefined
}

/** IPNS names and DNSLink (names/names.ts): `ipns/<name>` and `dnslink/<domain>` stand for the image CID they name now. */
export interface RegistryNames {
  imageCid(repository: string, signal: AbortSignal): Promise<string>
}

export interface RegistryRoutesOptions {
  blobs: BlobService
  manifests: ManifestService
  ipfsImages: IpfsImages
  metrics: Metrics
  /** How slow a request body may be before it is cut (none given: no limit). */
  bodyPace?: BodyPace
  mirrors?: RegistryMirrors
  names?: RegistryNames
}

/** A resource: the path after /v2/ that names it (the repository first), a label for metrics, its handlers. */
interface Route { pattern: RegExp, label: string, handlers: ResourceHandlers }

/** The registry route each request matched, for metrics. */
export const routeLabels = new WeakMap<FastifyRequest, string>()

export function registerRegistryRoutes (app: FastifyInstance, registryOptions: RegistryRoutesOptions): void {
  const options = { ...registryOptions, bodyPace: registryOptions.bodyPace ?? NO_BODY_PACE }
  // Repository names contain slashes, so fastify's router cannot split these paths: the first
  // pattern that matches wins, and the repository is whatever comes before the resource.
  const routes: Route[] = [
    { pattern: /^(.+)\/blobs\/uploads\/?$/, label: 'upload', handlers: uploadStartHandlers(options) },
    { pattern: /^(.+)\/blobs\/uploads\/([^/]+)$/, label: 'upload', handlers: uploadSessionHandlers(options) },
    { pattern: /^(.+)\/blobs\/([^/]+)$/, label: 'blob', handlers: blobHandlers(options) },
    { pattern: /^(.+)\/manifests\/([^/]+)$/, label: 'manifest', handlers: manifestHandlers(options) },
    { pattern: /^(.+)\/tags\/list$/, label: 'tags', handlers: tagListHandlers(options) },
    { pattern: /^(.+)\/referrers\/([^/]+)$/, label: 'referrers', handlers: referrerHandlers(options) }
  ]

  app.addHook('onSend', async (req, reply) => {
    if (req.url.startsWith('/v2')) reply.header('docker-distribution-api-version', 'registry/2.0')
  })

  app.get('/v2/', async (_req, reply) => reply.header('content-type', 'application/json').send('{}'))
  app.get('/v2', async (_req, reply) => reply.header('content-type', 'application/json').send('{}'))
  app.get('/v2/_catalog', catalogHandler(options))

  app.route({
    method: ['GET', 'HEAD', 'PUT', 'PATCH', 'POST', 'DELETE'],
    url: '/v2/*',
    exposeHeadRoute: false,
    handler: async (req, reply) => {
      const path = decodePath((req.url.split('?')[0] ?? '').slice('/v2/'.length))
      for (const route of routes) {
        const match = route.pattern.exec(path)
        if (match === null) continue
        const [, named = '', ...rest] = match
        routeLabels.set(req, route.label)
        const ns = (req.query as Record<string, unknown>).ns
        const local = options.mirrors?.localName(named, typeof ns === 'string' ? ns : undefined) ?? named
        // A name's repository is the image it names now, served as ipfs/<cid>: resolved here, or,
        // with authentication on, by the guard, whose answer (the image it checked) is served.
        const name = isNameRepository(local) ? await imageRepositoryOf(local, req.method, untilClientLeaves(reply), options.names, imageOfNameFor(req, local)) : local
        assertRepositoryName(name)
        if (req.method !== 'GET' && req.method !== 'HEAD' && options.mirrors?.isMirrored(name) === true) {
          throw new UnsupportedError(`${name} is mirrored from its upstream registry: it is read-only here`)
        }
        if (isIpfsRepository(name)) assertImageCid(name)
        const handler = route.handlers[req.method as keyof ResourceHandlers]
        if (handler === undefined) throw new MethodUnsupportedError(`${req.method} is not supported on ${route.label}`)
        return await handler(req, reply, [name, ...rest])
      }
      throw new EndpointUnknownError(`no registry endpoint at /v2/${path}`)
    }
  })
}

/** `ipns/<name>` or `dnslink/<domain>` as the repository `ipfs/<cid>` of the image it names now (read-only). */
async function imageRepositoryOf (name: string, method: string, signal: AbortSignal, names: RegistryNames | undefined, checked: string | undefined): Promise<string> {
  // Repository names are lowercase: a peer id (12D3Koo…) cannot be one, its k51… form can.
  if (/[A-Z]/.test(name)) throw new NameInvalidError(`invalid repository name: ${JSON.stringify(name)}: repository names are lowercase, so an IPNS name goes in its k51… form (shoal name key ls, shoal name inspect show it)`)
  assertRepositoryName(name)
  if (method !== 'GET' && method !== 'HEAD') throw new UnsupportedError(`${name} is a name for an image: it is read-only (shoal name publish points it elsewhere)`)
  if (names === undefined) throw new NameUnknownError(`${name}: this node resolves no names`)
  // With authentication on, the guard resolved it already, and checked the rights on that image.
  return IPFS_REPOSITORY_PREFIX + (checked ?? await names.imageCid(name, signal))
}

/** `ipfs/<cid>` names an image directory by its CID; anything else under ipfs/ is a bad name, on every route. */
function assertImageCid (name: string): void {
  const text = name.slice(IPFS_REPOSITORY_PREFIX.length)
  try {
    CID.parse(text)
  } catch {
    throw new NameInvalidError(`invalid repository name: ${JSON.stringify(name)}: ${JSON.stringify(text)} is not a CID`)
  }
}

function decodePath (path: string): string {
  try {
    return decodeURIComponent(path)
  } catch {
    throw new EndpointUnknownError(`malformed URL path: ${path}`)
  }
}
