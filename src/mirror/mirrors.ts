// Pull-through mirrors of upstream registries (issue 13): a repository under a mirrored registry's
// name (`docker.io/library/nginx`, or `library/nginx` with containerd's `?ns=docker.io`) is
// brought in from that upstream when a client asks for it: the tag resolved there (cached for
// `tagTtlMs`), and an image this node and its fleet lack fetched whole, checked against the
// upstream's digests, and recorded like a push, so it gets the same CIDs and its tag reaches the
// fleet. When the upstream cannot be reached, a tag fetched before still serves.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { ConfigError, type MirrorSetting } from '../config.ts'
import { parseManifest } from '../oci/manifest.ts'
import { BlobUnknownError, ManifestUnknownError } from '../oci/errors.ts'
import { parseDigest } from '../oci/digest.ts'
import { untilAborted } from '../until-aborted.ts'
import { parseReference } from '../oci/names.ts'
import { RegistryClient, RegistryUnavailableError, RegistryUnknownError, type RegistryManifest } from '../oci/registry-client.ts'

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
  /** Whether the manifest is recorded in `repository` on this node, or (in a mesh) a tag of the fleet names it. */
  has(repository: string, digest: string): Promise<boolean>
  /** Records a manifest as a push does (under `reference`: a tag or its digest). */
  put(repository: string, reference: string, body: Buffer, mediaType: string): Promise<unknown>
}

/** What the mirrors count (metrics.ts). */
export interface MirrorCounters {
  request(registry: string, outcome: 'hit' | 'miss' | 'stale'): void
  /** Blob bytes of a mirrored image, from its upstream or from the member that fetched it from there. */
  fetchedBytes(registry: string, from: 'upstream' | 'member', bytes: number): void
  rateLimited(registry: string): void
}

/**
 * Marks a fleet member's request for a mirrored image it asked this node to fetch: this node then
 * goes to the upstream itself, whoever it thinks should (two members that each thought the other
 * should fetch would otherwise ask each other in a loop).
 */
export const MIRROR_PEER_HEADER = 'x-shoal-mirror-peer'

/** The registry Docker's daemon-wide `registry-mirrors` setting is for. */
const DOCKER_HUB = 'docker.io'

/** Where a mirrored image's bytes came from, as the metrics count them. */
interface BytesSource { registry: string, from: 'upstream' | 'member' }

/** The fleet, as the mirrors ask it who fetches a missed image from its upstream. */
export interface MirrorFleet {
  /** This node's peer id. */
  readonly self: string
  /** The fleet's live members (this node among them), with the URLs their registries answer on. */
  liveMembers(): Promise<Array<{ id: string, url: string }>>
  /** With users on: a pull token for `repository` that the fleet's members take (this node's own). */
  tokenFor?(repository: string): Promise<string | undefined>
}

export interface MirrorsOptions {
  settings: MirrorSetting[]
  /** In a mesh: one member fetches each missed image from the upstream, the others from that member. */
  fleet?: MirrorFleet
  counters?: MirrorCounters
  tagTtlMs: number
  blobs: MirrorBlobs
  manifests: MirrorManifests
  logger: Logger
  /** CAs upstream HTTPS certificates are checked against (none: the system's). */
  ca?: string[]
}

export class Mirrors {
  private readonly upstreams = new Map<string, RegistryClient>()
  private readonly tagTtlMs: number
  private readonly blobs: MirrorBlobs
  private readonly manifests: MirrorManifests
  private readonly logger: Logger
  private readonly counters: MirrorCounters | undefined
  private readonly fleet: MirrorFleet | undefined
  /** Other members' registries, as upstreams of mirrored images they fetch for the fleet, by URL. */
  private readonly peerUpstreams = new Map<string, RegistryClient>()
  private readonly ca: string[] | undefined
  /** When each mirrored tag was last resolved upstream (`repository:tag`). */
  private readonly resolvedAt = new Map<string, number>()
  /** Images being fetched, by repository and digest: clients that miss the same image at once share one fetch. */
  private readonly fetching = new Map<string, Promise<void>>()
  /** Manifests of images being fetched (an index's children too), served while the fetch runs. */
  private readonly pending = new Map<string, RegistryManifest>()
  /** Tags to write once an image being fetched is recorded. */
  private readonly tagsAfter = new Map<string, Set<string>>()
  /** Blobs being fetched, by repository and digest. */
  private readonly blobFetches = new Map<string, Promise<void>>()
  /** Upstreams that failed, said once until they answer again. */
  private readonly unreachable = new Set<string>()
  /** Stops the fetches that serve every client (no one client's signal may): aborted by stop(). */
  private readonly stopping = new AbortController()

  constructor (options: MirrorsOptions) {
    this.tagTtlMs = options.tagTtlMs
    this.blobs = options.blobs
    this.manifests = options.manifests
    this.logger = options.logger
    this.counters = options.counters
    this.fleet = options.fleet
    this.ca = options.ca
    for (const setting of options.settings) {
      const upstream = new RegistryClient({ registry: setting.registry, url: setting.url, ...(setting.credentialsFile === undefined ? {} : { credentials: readCredentials(setting.credentialsFile) }) }, {
        ...(options.ca === undefined ? {} : { ca: options.ca }),
        credentialsHint: 'the mirror\'s credentialsFile',
        onRateLimited: (registry, waitMs) => {
          this.counters?.rateLimited(registry)
          this.logger.warn({ registry, waitMs }, 'the upstream registry is limiting this node\'s requests (429): waiting')
        }
      })
      this.upstreams.set(setting.registry, upstream)
    }
  }

  /** Stops the running fetches and waits for them (none may still write once the node's stores close), then the upstreams' connections. */
  async stop (): Promise<void> {
    this.stopping.abort()
    await Promise.allSettled([...this.fetching.values(), ...this.blobFetches.values()])
    await Promise.all([...this.upstreams.values(), ...this.peerUpstreams.values()].map(async upstream => { await upstream.close() }))
  }

  /**
   * Where this node fetches a missed image from: in a fleet, the member that the image's name and
   * digest pick among the live ones (rendezvous hashing: every node picks the same one, and only
   * that one asks the upstream, so eight nodes that miss at once cost the upstream one image);
   * that member's own registry is then this node's upstream, under the mirrored name. Itself, or
   * outside a fleet: the upstream.
   */
  private async sourceFor (upstream: RegistryClient, repository: string, upstreamRepository: string, digest: string): Promise<{ source: RegistryClient, repository: string, viaPeer: boolean }> {
    const direct = { source: upstream, repository: upstreamRepository, viaPeer: false }
    if (this.fleet === undefined) return direct
    let members: Array<{ id: string, url: string }>
    try {
      members = await this.fleet.liveMembers()
    } catch {
      return direct
    }
    const owner = members.filter(member => member.url !== '' || member.id === this.fleet?.self)
      .map(member => ({ member, rank: createHash('sha256').update(`${repository}@${digest}\n${member.id}`).digest('hex') }))
      .sort((a, b) => (a.rank < b.rank ? 1 : a.rank > b.rank ? -1 : 0))[0]?.member
    if (owner === undefined || owner.id === this.fleet.self) return direct
    let peer = this.peerUpstreams.get(owner.url)
    if (peer === undefined) {
      const fleet = this.fleet
      peer = new RegistryClient({ registry: upstream.registry, url: owner.url }, {
        headers: { [MIRROR_PEER_HEADER]: '1' },
        ...(fleet.tokenFor === undefined ? {} : { token: async (name: string) => await fleet.tokenFor?.(name) }),
        ...(this.ca === undefined ? {} : { ca: this.ca })
      })
      this.peerUpstreams.set(owner.url, peer)
    }
    return { source: peer, repository, viaPeer: true }
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

  /**
   * Docker's `registry-mirrors` asks a mirror for Docker Hub's names as they are (`library/nginx`,
   * no registry, no `ns`): where the node has no such repository of its own, the docker.io
   * mirror's (`docker.io/library/nginx`). Undefined when no docker.io mirror is configured, or the
   * name is already a mirrored one.
   */
  dockerHubName (name: string): string | undefined {
    if (!this.upstreams.has(DOCKER_HUB) || this.isMirrored(name) || name.startsWith('ipfs/')) return undefined
    return `${DOCKER_HUB}/${name}`
  }

  /** Whether `repository` is under a mirrored registry's name (such repositories are read-only). */
  isMirrored (repository: string): boolean {
    return this.upstreamOf(repository) !== undefined
  }

  private upstreamOf (repository: string): { upstream: RegistryClient, repository: string } | undefined {
    const slash = repository.indexOf('/')
    if (slash === -1) return undefined
    const upstream = this.upstreams.get(repository.slice(0, slash))
    return upstream === undefined ? undefined : { upstream, repository: repository.slice(slash + 1) }
  }

  /**
   * Makes `reference` of a mirrored repository servable: a tag is resolved upstream (at most
   * every tagTtlMs); an image neither this node nor its fleet has is fetched from there. Answers
   * the manifest to serve while that fetch runs (the client reads it at once, and each blob as
   * soon as it is stored: `ensureBlob`); undefined when the node serves it itself. Nothing for a
   * repository no mirror names.
   */
  async ensureManifest (repository: string, reference: string, signal?: AbortSignal, options: { forPeer?: boolean } = {}): Promise<RegistryManifest | undefined> {
    const mirrored = this.upstreamOf(repository)
    if (mirrored === undefined) return undefined
    const ref = parseReference(reference)
    const registry = mirrored.upstream.registry
    if (ref.kind === 'digest') {
      if (await this.manifests.has(repository, ref.digest)) {
        this.counters?.request(registry, 'hit')
        return undefined
      }
      const pending = this.pending.get(`${repository}@${ref.digest}`)
      if (pending !== undefined) return pending
      this.counters?.request(registry, 'miss')
      return await this.startImage(mirrored.upstream, repository, mirrored.repository, ref.digest, undefined, signal, options.forPeer === true)
    }
    const key = `${repository}:${ref.tag}`
    if (Date.now() - (this.resolvedAt.get(key) ?? -Infinity) < this.tagTtlMs) {
      this.counters?.request(registry, 'hit')
      return undefined
    }
    let digest: string
    try {
      digest = (await mirrored.upstream.resolve(mirrored.repository, ref.tag, signal)).digest
      if (this.unreachable.delete(registry)) this.logger.warn({ registry }, 'the upstream registry answers again')
    } catch (err) {
      if (err instanceof RegistryUnknownError) throw new ManifestUnknownError(`no tag ${ref.tag} in ${repository}: ${err.message}`)
      if (!(err instanceof RegistryUnavailableError)) throw err
      // Stale if error: a tag fetched before still serves.
      if (await this.manifests.tagged(repository, ref.tag) === undefined) throw err
      this.counters?.request(registry, 'stale')
      if (!this.unreachable.has(registry)) {
        this.unreachable.add(registry)
        this.logger.warn({ registry, err: err.message }, 'the upstream registry is unavailable: serving the tags fetched from it before')
      }
      return undefined
    }
    // The fleet has it when its catalogue's tag names that digest (a node adopts it from peers).
    if (await this.manifests.tagged(repository, ref.tag) === digest) {
      this.counters?.request(registry, 'hit')
      this.resolvedAt.set(key, Date.now())
      return undefined
    }
    this.counters?.request(registry, 'miss')
    return await this.startImage(mirrored.upstream, repository, mirrored.repository, digest, ref.tag, signal, options.forPeer === true)
  }

  /**
   * A blob of a mirrored repository, stored before it is read: it waits for the running fetch of
   * that blob, or fetches it alone (a client that asks for a blob of an image not fetched whole).
   */
  async ensureBlob (repository: string, digest: string, signal?: AbortSignal): Promise<void> {
    const mirrored = this.upstreamOf(repository)
    if (mirrored === undefined) return
    parseDigest(digest)
    if (await this.blobs.has(repository, digest)) return
    try {
      await untilAborted(this.fetchBlob(mirrored.upstream, repository, mirrored.repository, digest, undefined, { registry: mirrored.upstream.registry, from: 'upstream' }), signal)
    } catch (err) {
      if (err instanceof RegistryUnknownError) throw new BlobUnknownError(`no blob ${digest} in ${repository}: ${err.message}`)
      throw err
    }
  }

  /**
   * An image as a strategy names it (`repo:tag`, `repo@digest`): a mirrored one is brought in
   * whole, so that `shoal strategy add docker.io/library/nginx:1.27 --all` pre-warms the fleet.
   * Anything else is left to the strategy's own resolution.
   */
  async ensureImage (image: string, signal?: AbortSignal): Promise<void> {
    const at = image.lastIndexOf('@')
    const colon = image.lastIndexOf(':')
    const [repository, reference] = at > 0
      ? [image.slice(0, at), image.slice(at + 1)]
      : colon > image.lastIndexOf('/') ? [image.slice(0, colon), image.slice(colon + 1)] : [image, 'latest']
    if (!this.isMirrored(repository)) return
    const pending = await this.ensureManifest(repository, reference, signal)
    if (pending !== undefined) await untilAborted(this.fetching.get(`${repository}@${pending.digest}`) ?? Promise.resolve(), signal)
  }

  /**
   * Starts fetching an image whole (once: a second client that misses it shares the fetch) and
   * answers its manifest at once. The tag is written when every manifest is recorded.
   */
  private async startImage (upstream: RegistryClient, repository: string, upstreamRepository: string, digest: string, tag: string | undefined, signal: AbortSignal | undefined, forPeer: boolean): Promise<RegistryManifest> {
    const key = `${repository}@${digest}`
    const known = this.pending.get(key)
    if (known !== undefined) {
      if (tag !== undefined) this.tagsAfter.get(key)?.add(tag)
      return known
    }
    const direct = { source: upstream, repository: upstreamRepository, viaPeer: false }
    let chosen = forPeer ? direct : await this.sourceFor(upstream, repository, upstreamRepository, digest)
    let manifest: RegistryManifest
    try {
      manifest = await chosen.source.manifest(chosen.repository, digest, signal)
    } catch (err) {
      if (!chosen.viaPeer) throw err
      // The member that should fetch it cannot: this node goes to the upstream itself.
      this.logger.debug({ err, repository, digest }, 'the member that fetches this mirrored image did not answer: fetching it from the upstream')
      chosen = direct
      manifest = await chosen.source.manifest(chosen.repository, digest, signal)
    }
    if (this.pending.has(key)) return await this.startImage(upstream, repository, upstreamRepository, digest, tag, signal, forPeer)
    this.pending.set(key, manifest)
    const tags = new Set(tag === undefined ? [] : [tag])
    this.tagsAfter.set(key, tags)
    const started = performance.now()
    // Not the first client's signal: the fetch serves every client of the image.
    const fetching = this.fetchWhole(chosen.source, repository, chosen.repository, manifest, { registry: upstream.registry, from: chosen.viaPeer ? 'member' : 'upstream' })
      .then(async () => {
        for (const each of tags) {
          await this.manifests.put(repository, each, manifest.bytes, manifest.mediaType)
          this.resolvedAt.set(`${repository}:${each}`, Date.now())
        }
        this.logger.info({ registry: upstream.registry, repository, digest, ms: Math.round(performance.now() - started) }, 'mirrored an image from its upstream')
      })
      .catch((err: unknown) => {
        if (this.stopping.signal.aborted) return
        this.logger.warn({ err, registry: upstream.registry, repository, digest }, 'could not mirror an image from its upstream')
      })
      .finally(() => {
        this.pending.delete(key)
        this.tagsAfter.delete(key)
        this.fetching.delete(key)
      })
    this.fetching.set(key, fetching)
    return manifest
  }

  /** Every manifest an index lists (each servable while it is fetched) and every blob, then the manifest recorded as a push records it. */
  private async fetchWhole (upstream: RegistryClient, repository: string, upstreamRepository: string, manifest: RegistryManifest, countedAs: BytesSource): Promise<void> {
    const parsed = parseManifest(manifest.bytes, manifest.mediaType)
    await Promise.all(parsed.manifests.map(async child => {
      if (await this.manifests.has(repository, child.digest)) return
      const key = `${repository}@${child.digest}`
      const fetched = this.pending.get(key) ?? await upstream.manifest(upstreamRepository, child.digest, this.stopping.signal)
      this.pending.set(key, fetched)
      try {
        await this.fetchWhole(upstream, repository, upstreamRepository, fetched, countedAs)
      } finally {
        this.pending.delete(key)
      }
    }))
    await Promise.all(parsed.blobs.map(async blob => { await this.fetchBlob(upstream, repository, upstreamRepository, blob.digest, blob.size, countedAs) }))
    this.stopping.signal.throwIfAborted()
    await this.manifests.put(repository, manifest.digest, manifest.bytes, manifest.mediaType)
  }

  /** One blob into the node (once at a time per blob): linked when the node holds it, else streamed from the upstream and checked. */
  /** `countedAs`: where the bytes count as coming from. */
  private fetchBlob (upstream: RegistryClient, repository: string, upstreamRepository: string, digest: string, size: number | undefined, countedAs: BytesSource): Promise<void> {
    const key = `${repository}@${digest}`
    const running = this.blobFetches.get(key)
    if (running !== undefined) return running
    const fetching = (async () => {
      if (await this.blobs.has(repository, digest) || await this.blobs.mount(repository, digest)) return
      const { body, size: sent } = await upstream.blob(upstreamRepository, digest, this.stopping.signal)
      await this.blobs.store(repository, digest, body, size ?? sent)
      this.counters?.fetchedBytes(countedAs.registry, countedAs.from, size ?? sent ?? 0)
    })().finally(() => { this.blobFetches.delete(key) })
    this.blobFetches.set(key, fetching)
    return fetching
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
