import { Agent, fetch, type Dispatcher } from 'undici'
// What the Images page shows beyond the API's listing: size, platforms and referrers, read from the
// registry of a node that holds the image whole. Asking a node that lacks it would make that node
// fetch (and record) the image's manifests from its peers just because a page was open.
import type { FastifyInstance } from 'fastify'
import type { ImageAnswer } from '../api/schemas.ts'
import { describeRecipients, isEncrypted, recipientsOf } from '../crypt/ocicrypt.ts'
import type { ApiNode } from './api.ts'

export interface Referrer {
  digest: string
  artifactType?: string
}

export interface ImageDetails {
  /** Bytes a pull of every platform moves: manifests, configs and layers as stored. */
  sizeBytes?: number
  /** `os/architecture[/variant]` of each image; empty for an artifact or when unknown. */
  platforms: string[]
  /** An artifact's type, for a manifest that is not a container image. */
  artifactType?: string
  /** Manifests whose subject is this image (undefined: could not be read). */
  referrers?: Referrer[]
  /** Who can decrypt its encrypted layers (ocicrypt recipients: scheme, algorithm, key id); undefined: none is encrypted. */
  encryptedFor?: string[]
}

/** Reads one registry path (`/v2/…`) from one node. */
type RegistryRead = (path: string, accept: string) => Promise<{ status: number, body: Buffer }>

const MANIFEST_ACCEPT = [
  'application/vnd.oci.image.index.v1+json',
  'application/vnd.oci.image.manifest.v1+json',
  'application/vnd.docker.distribution.manifest.list.v2+json',
  'application/vnd.docker.distribution.manifest.v2+json'
].join(', ')
const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json'])
const IMAGE_CONFIG_TYPES = new Set(['application/vnd.oci.image.config.v1+json', 'application/vnd.docker.container.image.v1+json'])
const READ_TIMEOUT_MS = 3_000
/** Manifests and configs larger than this are not read for the page. */
const MAX_DOCUMENT_BYTES = 4 * 1024 * 1024
/** An index's children read for its size; larger indexes show the size of these only. */
const MAX_CHILDREN = 32
/** Referrers can be pushed at any time; a manifest's content never changes. */
const REFERRERS_TTL_MS = 10_000
const FAILED_RETRY_MS = 10_000
const CACHE_LIMIT = 1_000

interface Descriptor { mediaType?: string, digest?: string, size?: number, artifactType?: string, annotations?: Record<string, string>, platform?: { os?: string, architecture?: string, variant?: string } }
interface ManifestDocument { mediaType?: string, artifactType?: string, config?: Descriptor, layers?: Descriptor[], manifests?: Descriptor[] }

interface Cached<T> {
  /** The last value read, if any read succeeded. */
  last?: { value: T }
  running?: Promise<void>
  /** When the last read ended. */
  at: number
  failed: boolean
}

/** A registry token of this node's for these grants, which the fleet's other nodes take (access/tokens.ts). */
export type PeerToken = (grants: Array<{ type: string, name: string, actions: string[] }>) => Promise<string>

/** Size, platforms and referrers of the fleet's images, cached: content by digest, referrers briefly. */
export class ImageDetailsReader {
  private readonly app: FastifyInstance
  private readonly content = new Map<string, Cached<Omit<ImageDetails, 'referrers'>>>()
  private readonly referrers = new Map<string, Cached<Referrer[]>>()

  private readonly readOver: (baseUrl: string, authorization: string | undefined) => RegistryRead
  private readonly peerToken: PeerToken | undefined

  private readonly internalRead: Record<string, string>

  /**
   * `ca`: CA certificates (PEM) other nodes' HTTPS certificates are checked against; default the
   * system's. `internalRead`: headers for this node's own /v2 reads (through its access guard).
   */
  constructor (app: FastifyInstance, ca?: string[], internalRead: Record<string, string> = {}, peerToken?: PeerToken) {
    this.app = app
    this.internalRead = internalRead
    this.peerToken = peerToken
    const dispatcher = ca === undefined ? undefined : new Agent({ connect: { ca } })
    this.readOver = (baseUrl, authorization) => readOver(baseUrl, dispatcher, authorization)
  }

  /**
   * The details of `image` as far as they can be read within `waitMs`; what takes longer goes on
   * in the background and shows at the page's next update.
   */
  async details (image: ImageAnswer, nodes: readonly ApiNode[], waitMs: number): Promise<ImageDetails> {
    // Outside a mesh an image has no pusher: it is this node's own.
    const standalone = image.node === undefined
    // Other nodes with authentication on read for this node with a token for this image alone
    // (the API listed it for the user): its repository and its CID, pull only.
    const authorization = this.peerToken === undefined || standalone
      ? undefined
      : `Bearer ${await this.peerToken([{ type: 'repository', name: image.repository, actions: ['pull'] }, { type: 'repository', name: `ipfs/${image.imageCid}`, actions: ['pull'] }])}`
    const holders = this.readersOf(nodes.filter(node => image.heldBy.includes(node.id)), standalone, authorization)
    const pusher = nodes.find(node => node.id === image.node)
    // Referrers are indexed where they were pushed, which is most often where the image was.
    const indexers = this.readersOf(pusher === undefined ? nodes.filter(node => node.self) : [pusher, ...nodes.filter(node => node.self && node !== pusher)], standalone, authorization)
    const deadline = new Promise<undefined>(resolve => { setTimeout(() => { resolve(undefined) }, waitMs).unref() })
    const content = cached(this.content, `${image.imageCid} ${image.digest}`, Infinity, async () => await firstAnswer(holders, read => readContent(read, image.imageCid, image.digest)))
    const referrers = cached(this.referrers, `${image.repository}@${image.digest}`, REFERRERS_TTL_MS, async () => await firstAnswer(indexers, read => readReferrers(read, image.repository, image.digest)))
    const [contentDetails, referrerList] = await Promise.all([Promise.race([content, deadline]), Promise.race([referrers, deadline])])
    return { platforms: [], ...contentDetails, ...(referrerList === undefined ? {} : { referrers: referrerList }) }
  }

  /** This node through fastify itself (also when it is in no fleet), others over HTTP; live nodes only, this one first. */
  private readersOf (nodes: readonly ApiNode[], standalone: boolean, authorization: string | undefined): RegistryRead[] {
    const readers: RegistryRead[] = []
    if (standalone || nodes.some(node => node.self)) readers.push(this.readSelf)
    for (const node of nodes) if (!node.self && !node.silent) readers.push(this.readOver(node.url, authorization))
    return readers
  }

  private readonly readSelf: RegistryRead = async (path, accept) => {
    const response = await this.app.inject({ method: 'GET', url: path, headers: { ...this.internalRead, accept } })
    return { status: response.statusCode, body: response.rawPayload }
  }
}

function readOver (baseUrl: string, dispatcher: Dispatcher | undefined, authorization: string | undefined): RegistryRead {
  return async (path, accept) => {
    const response = await fetch(new URL(path, baseUrl), { headers: { accept, ...(authorization === undefined ? {} : { authorization }) }, signal: AbortSignal.timeout(READ_TIMEOUT_MS), ...(dispatcher === undefined ? {} : { dispatcher }) })
    const length = Number(response.headers.get('content-length') ?? 0)
    if (length > MAX_DOCUMENT_BYTES) {
      await response.body?.cancel()
      throw new Error(`${path} is too large to show`)
    }
    return { status: response.status, body: Buffer.from(await response.arrayBuffer()) }
  }
}

/**
 * The value under `key`: computed once, again after `ttlMs` (a failure after FAILED_RETRY_MS);
 * while it is computed again the last value is answered at once.
 */
async function cached<T> (cache: Map<string, Cached<T>>, key: string, ttlMs: number, compute: () => Promise<T>): Promise<T | undefined> {
  let entry = cache.get(key)
  if (entry === undefined) {
    entry = { at: 0, failed: false }
    cache.set(key, entry)
    if (cache.size > CACHE_LIMIT) cache.delete(cache.keys().next().value as string)
  }
  const current = entry
  const due = current.at === 0 || Date.now() - current.at >= (current.failed ? FAILED_RETRY_MS : ttlMs)
  if (current.running === undefined && due) {
    current.running = compute().then(value => {
      current.last = { value }
      current.failed = false
    }, () => {
      current.failed = true
    }).finally(() => {
      current.at = Date.now()
      current.running = undefined
    })
  }
  // A value read before is answered while it is read again.
  if (current.last === undefined) await current.running
  return current.last?.value
}

async function firstAnswer<T> (readers: readonly RegistryRead[], work: (read: RegistryRead) => Promise<T>): Promise<T> {
  let last: unknown = new Error('no node that holds the image is live')
  for (const read of readers) {
    try {
      return await work(read)
    } catch (err) {
      last = err
    }
  }
  throw last
}

async function readJson<T> (read: RegistryRead, path: string, accept: string): Promise<{ document: T, bytes: number }> {
  const { status, body } = await read(path, accept)
  if (status !== 200) throw new Error(`${path}: HTTP ${status}`)
  if (body.length > MAX_DOCUMENT_BYTES) throw new Error(`${path} is too large to show`)
  return { document: JSON.parse(body.toString('utf8')) as T, bytes: body.length }
}

async function readContent (read: RegistryRead, imageCid: string, digest: string): Promise<Omit<ImageDetails, 'referrers'>> {
  const repository = `/v2/ipfs/${imageCid}`
  const { document: top, bytes } = await readJson<ManifestDocument>(read, `${repository}/manifests/${digest}`, MANIFEST_ACCEPT)
  if (Array.isArray(top.manifests) && (top.mediaType === undefined || INDEX_TYPES.has(top.mediaType))) {
    const platforms = top.manifests.map(child => child.platform).filter(isRealPlatform).map(formatPlatform)
    let sizeBytes = bytes
    const recipients = new Set<string>()
    for (const child of top.manifests.slice(0, MAX_CHILDREN)) {
      if (typeof child.digest !== 'string') continue
      const { document, bytes: childBytes } = await readJson<ManifestDocument>(read, `${repository}/manifests/${child.digest}`, MANIFEST_ACCEPT)
      sizeBytes += childBytes + blobBytes(document)
      for (const recipient of encryptedFor(document) ?? []) recipients.add(recipient)
    }
    return { sizeBytes, platforms: [...new Set(platforms)], ...(recipients.size === 0 ? {} : { encryptedFor: [...recipients] }) }
  }
  const sizeBytes = bytes + blobBytes(top)
  const encrypted = encryptedFor(top)
  if (encrypted !== undefined) return { ...await readPlain(read, repository, top, sizeBytes), encryptedFor: encrypted }
  return await readPlain(read, repository, top, sizeBytes)
}

/** An image manifest's size, platform or artifact type. */
async function readPlain (read: RegistryRead, repository: string, top: ManifestDocument, sizeBytes: number): Promise<Omit<ImageDetails, 'referrers'>> {
  const config = top.config
  if (config?.mediaType === undefined || !IMAGE_CONFIG_TYPES.has(config.mediaType) || typeof config.digest !== 'string') {
    return { sizeBytes, platforms: [], artifactType: top.artifactType ?? config?.mediaType }
  }
  const { document: settings } = await readJson<{ os?: string, architecture?: string, variant?: string }>(read, `${repository}/blobs/${config.digest}`, '*/*')
  const platform = { os: settings.os, architecture: settings.architecture, variant: settings.variant }
  return { sizeBytes, platforms: isRealPlatform(platform) ? [formatPlatform(platform)] : [] }
}

async function readReferrers (read: RegistryRead, repository: string, digest: string): Promise<Referrer[]> {
  const { document } = await readJson<ManifestDocument>(read, `/v2/${repository}/referrers/${digest}`, 'application/vnd.oci.image.index.v1+json')
  return (document.manifests ?? []).filter(m => typeof m.digest === 'string')
    .map(m => ({ digest: m.digest as string, ...(m.artifactType === undefined ? {} : { artifactType: m.artifactType }) }))
}

/** The recipients of a manifest's encrypted layers, each once (undefined: no layer is encrypted). */
function encryptedFor (manifest: ManifestDocument): string[] | undefined {
  const encrypted = (manifest.layers ?? []).filter(layer => typeof layer.mediaType === 'string' && isEncrypted({ mediaType: layer.mediaType }))
  if (encrypted.length === 0) return undefined
  const recipients = new Set<string>()
  for (const layer of encrypted) {
    try {
      for (const recipient of recipientsOf({ mediaType: layer.mediaType ?? '', digest: layer.digest ?? '', size: layer.size ?? 0, ...(layer.annotations === undefined ? {} : { annotations: layer.annotations }) })) recipients.add(describeRecipients([recipient]))
    } catch {
      recipients.add('unreadable recipients')
    }
  }
  return [...recipients]
}

function blobBytes (manifest: ManifestDocument): number {
  return [manifest.config, ...(manifest.layers ?? [])].reduce((sum, blob) => sum + (typeof blob?.size === 'number' ? blob.size : 0), 0)
}

/** Attestation manifests in an index carry `unknown/unknown`: they are no platform to pull. */
function isRealPlatform (platform: Descriptor['platform']): platform is { os: string, architecture: string, variant?: string } {
  return typeof platform?.os === 'string' && typeof platform.architecture === 'string' && platform.os !== 'unknown'
}

function formatPlatform (platform: { os: string, architecture: string, variant?: string }): string {
  return [platform.os, platform.architecture, platform.variant].filter(part => typeof part === 'string' && part !== '').join('/')
}
