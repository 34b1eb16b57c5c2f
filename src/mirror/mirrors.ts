// Pull-through mirrors of upstream registries (issue 13): a repository under a mirrored registry's
// name (`docker.io/library/nginx`, or `library/nginx` with containerd's `?ns=docker.io`) is
// brought in from that upstream when a client asks for it: the tag resolved there (cached for
// `tagTtlMs`), and an image this node and its fleet lack fetched whole, checked against the
// upstream's digests, and recorded like a push, so it gets the same CIDs and its tag reaches the
// fleet. When the upstream cannot be reached, a tag fetched before still serves.
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { ConfigError, type MirrorSetting } from '../config.ts'
import { parseManifest } from '../oci/manifest.ts'
import { ManifestUnknownError } from '../oci/errors.ts'
import { parseReference } from '../oci/names.ts'
import { UpstreamRegistry, UpstreamUnavailableError, UpstreamUnknownError } from './upstream.ts'

/** What the mirrors need of the node's blob store. */
export interface MirrorBlobs {
  /** Whether the node can serve the blob in `repository`. */
  has(repository: string, digest: string): Promise<boolean>
  /** Links a blob the node already holds into `repository`; false when it holds none. */
  mount(repository: string, digest: string): Promise<boolean>
  /** Stores a blob from its bytes, checked against `digest`. */
  store(repository: string, digest: string, body: AsyncIterable<Uint8Array>, size: number | undefined): Promise<void>
}

/** What the mirrors need of the node's manifests and tags. */
export interface MirrorManifests {
  /** The digest a tag names (in a mesh, the fleet's catalogue), if any. */
  tagged(repository: string, tag: string): Promise<string | undefined>
  /** Whether the manifest is recorded in `repository` on this node. */
  has(repository: string, digest: string): Promise<boolean>
  /** Records a manifest as a push does (under `reference`: a tag or its digest). */
  put(repository: string, reference: string, body: Buffer, mediaType: string): Promise<unknown>
}

/** What the mirrors count (metrics.ts). */
export interface MirrorCounters {
  request(registry: string, outcome: 'hit' | 'miss' | 'stale'): void
  upstreamBytes(registry: string, bytes: number): void
  rateLimited(registry: string): void
}

export interface MirrorsOptions {
  settings: MirrorSetting[]
  counters?: MirrorCounters
  tagTtlMs: number
  blobs: MirrorBlobs
  manifests: MirrorManifests
  logger: Logger
  /** CAs upstream HTTPS certificates are checked against (none: the system's). */
  ca?: string[]
}

export class Mirrors {
  private readonly upstreams = new Map<string, UpstreamRegistry>()
  private readonly tagTtlMs: number
  private readonly blobs: MirrorBlobs
  private readonly manifests: MirrorManifests
  private readonly logger: Logger
  private readonly counters: MirrorCounters | undefined
  /** When each mirrored tag was last resolved upstream (`repository:tag`). */
  private readonly resolvedAt = new Map<string, number>()
  /** Images being fetched, by repository and digest: clients that miss the same image at once share one fetch. */
  private readonly fetching = new Map<string, Promise<void>>()
  /** Upstreams that failed, said once until they answer again. */
  private readonly unreachable = new Set<string>()

  constructor (options: MirrorsOptions) {
    this.tagTtlMs = options.tagTtlMs
    this.blobs = options.blobs
    this.manifests = options.manifests
    this.logger = options.logger
    this.counters = options.counters
    for (const setting of options.settings) {
      const upstream = new UpstreamRegistry({ registry: setting.registry, url: setting.url, ...(setting.credentialsFile === undefined ? {} : { credentials: readCredentials(setting.credentialsFile) }) }, {
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        onRateLimited: (registry, waitMs) => {
          this.counters?.rateLimited(registry)
          this.logger.warn({ registry, waitMs }, 'the upstream registry is limiting this node\'s requests (429): waiting')
        }
      })
      this.upstreams.set(setting.registry, upstream)
    }
  }

  async stop (): Promise<void> {
    await Promise.all([...this.upstreams.values()].map(async upstream => { await upstream.close() }))
  }

  /**
   * The repository a request names. containerd adds `?ns=<registry>` when a mirror serves another
   * registry's names: under a mirrored registry that puts the name in its namespace, so
   * `ghcr.io/library/foo` and `docker.io/library/foo` never meet. Otherwise the name is as given.
   */
  localName (name: string, ns: string | undefined): string {
    if (ns === undefined || !this.upstreams.has(ns) || name.startsWith(`${ns}/`)) return name
    return `${ns}/${name}`
  }

  /** Whether `repository` is under a mirrored registry's name (such repositories are read-only). */
  isMirrored (repository: string): boolean {
    return this.upstreamOf(repository) !== undefined
  }

  private upstreamOf (repository: string): { upstream: UpstreamRegistry, repository: string } | undefined {
    const slash = repository.indexOf('/')
    if (slash === -1) return undefined
    const upstream = this.upstreams.get(repository.slice(0, slash))
    return upstream === undefined ? undefined : { upstream, repository: repository.slice(slash + 1) }
  }

  /**
   * Makes `reference` of a mirrored repository servable here: a tag resolved upstream (at most
   * every tagTtlMs), and an image neither this node nor its fleet has fetched from there.
   * Nothing for a repository no mirror names.
   */
  async ensureManifest (repository: string, reference: string, signal?: AbortSignal): Promise<void> {
    const mirrored = this.upstreamOf(repository)
    if (mirrored === undefined) return
    const ref = parseReference(reference)
    const registry = mirrored.upstream.registry
    if (ref.kind === 'digest') {
      if (await this.manifests.has(repository, ref.digest)) {
        this.counters?.request(registry, 'hit')
        return
      }
      this.counters?.request(registry, 'miss')
      await this.fetchImage(mirrored.upstream, repository, mirrored.repository, ref.digest, undefined, signal)
      return
    }
    const key = `${repository}:${ref.tag}`
    if (Date.now() - (this.resolvedAt.get(key) ?? -Infinity) < this.tagTtlMs) {
      this.counters?.request(registry, 'hit')
      return
    }
    let digest: string
    try {
      digest = (await mirrored.upstream.resolve(mirrored.repository, ref.tag, signal)).digest
      if (this.unreachable.delete(mirrored.upstream.registry)) this.logger.warn({ registry: mirrored.upstream.registry }, 'the upstream registry answers again')
    } catch (err) {
      if (err instanceof UpstreamUnknownError) throw new ManifestUnknownError(`no tag ${ref.tag} in ${repository}: ${err.message}`)
      if (!(err instanceof UpstreamUnavailableError)) throw err
      // Stale if error: a tag fetched before still serves.
      if (await this.manifests.tagged(repository, ref.tag) === undefined) throw err
      this.counters?.request(registry, 'stale')
      if (!this.unreachable.has(registry)) {
        this.unreachable.add(registry)
        this.logger.warn({ registry, err: err.message }, 'the upstream registry is unavailable: serving the tags fetched from it before')
      }
      return
    }
    // The fleet has it when its catalogue's tag names that digest (a node adopts it from peers).
    if (await this.manifests.tagged(repository, ref.tag) !== digest) {
      this.counters?.request(registry, 'miss')
      await this.fetchImage(mirrored.upstream, repository, mirrored.repository, digest, ref.tag, signal)
    } else {
      this.counters?.request(registry, 'hit')
    }
    this.resolvedAt.set(key, Date.now())
  }

  /**
   * An image as a strategy names it (`repo:tag`, `repo@digest`): a mirrored one is brought in, so
   * that `shoal strategy add docker.io/library/nginx:1.27 --all` pre-warms the fleet. Anything
   * else is left to the strategy's own resolution.
   */
  async ensureImage (image: string, signal?: AbortSignal): Promise<void> {
    const at = image.lastIndexOf('@')
    const colon = image.lastIndexOf(':')
    const [repository, reference] = at > 0
      ? [image.slice(0, at), image.slice(at + 1)]
      : colon > image.lastIndexOf('/') ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest']
    if (!this.isMirrored(repository)) return
    await this.ensureManifest(repository, reference, signal)
  }

  /** One fetch per image at a time: a second client that misses it waits for the first. */
  private async fetchImage (upstream: UpstreamRegistry, repository: string, upstreamRepository: string, digest: string, tag: string | undefined, signal?: AbortSignal): Promise<void> {
    const key = `${repository}@${digest}`
    let fetching = this.fetching.get(key)
    if (fetching === undefined) {
      // Not the first client's signal: the fetch serves every client waiting for it.
      fetching = this.fetchWhole(upstream, repository, upstreamRepository, digest).finally(() => this.fetching.delete(key))
      this.fetching.set(key, fetching)
    }
    await abortable(fetching, signal)
    if (tag !== undefined) {
      const { bytes, mediaType } = await upstream.manifest(upstreamRepository, digest, signal)
      await this.manifests.put(repository, tag, bytes, mediaType)
    }
  }

  /** The manifest, every manifest it lists and every blob, from the upstream into the node. */
  private async fetchWhole (upstream: UpstreamRegistry, repository: string, upstreamRepository: string, digest: string): Promise<void> {
    if (await this.manifests.has(repository, digest)) return
    const started = performance.now()
    const manifest = await upstream.manifest(upstreamRepository, digest)
    const parsed = parseManifest(manifest.bytes, manifest.mediaType)
    for (const child of parsed.manifests) await this.fetchWhole(upstream, repository, upstreamRepository, child.digest)
    await Promise.all(parsed.blobs.map(async blob => {
      if (await this.blobs.has(repository, blob.digest) || await this.blobs.mount(repository, blob.digest)) return
      const { body } = await upstream.blob(upstreamRepository, blob.digest)
      await this.blobs.store(repository, blob.digest, body, blob.size)
      this.counters?.upstreamBytes(upstream.registry, blob.size)
    }))
    await this.manifests.put(repository, digest, manifest.bytes, manifest.mediaType)
    this.logger.info({ registry: upstream.registry, repository, digest, ms: Math.round(performance.now() - started) }, 'mirrored an image from its upstream')
  }
}

/** `{"username": …, "password": …}` from a file, checked at start. */
function readCredentials (file: string): { username: string, password: string } {
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ConfigError(`mirror credentialsFile ${file} is not readable JSON: ${(err as Error).message}`)
  }
  const { username, password } = (parsed ?? {}) as Record<string, unknown>
  if (typeof username !== 'string' || typeof password !== 'string') throw new ConfigError(`mirror credentialsFile ${file} must hold {"username": "…", "password": "…"}`)
  return { username, password }
}

/** Waits for `work`, or rejects when `signal` aborts (the work goes on for others). */
async function abortable<T> (work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return await work
  signal.throwIfAborted()
  return await new Promise<T>((resolve, reject) => {
    const onAbort = (): void => { reject(signal.reason) }
    signal.addEventListener('abort', onAbort, { once: true })
    work.then(resolve, reject).finally(() => { signal.removeEventListener('abort', onAbort) })
  })
}
