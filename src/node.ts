import { randomBytes, type KeyObject } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { createSecureContext, rootCertificates } from 'node:tls'
import { join, resolve } from 'node:path'
import { pino, type Logger } from 'pino'
import type { FastifyInstance } from 'fastify'
import { registerHealthRoutes } from './api/health-routes.ts'
import { registerApiRoutes, type MeshApi } from './api/routes.ts'
import { ConfigError, meshEnabled, parseListen, type Config } from './config.ts'
import { DataDirLock } from './content/data-dir-lock.ts'
import { FsBlockstore, type BlockCorruptError } from './content/fs-blockstore.ts'
import { GarbageCollector, GcUnavailableError, registryRoots, type PinSet } from './content/gc.ts'
import { Scrubber } from './content/scrub.ts'
import { UploadStore } from './content/upload-store.ts'
import { Lifecycle, NotReadyError, gateUntilReady } from './lifecycle.ts'
import type { BlockFetcher } from './mesh/block-fetcher.ts'
import type { Fleet } from './mesh/fleet.ts'
import type * as MeshParts from './mesh/parts.ts'
import { registerGatewayRoutes } from './mesh/gateway-routes.ts'
import type { RemoteContent } from './mesh/remote-content.ts'
import { TokenBucket } from './mesh/token-bucket.ts'
import { Metrics } from './metrics.ts'
import { Mirrors } from './mirror/mirrors.ts'
import { BlobService } from './registry/blob-service.ts'
import { IpfsImages } from './registry/ipfs-images.ts'
import { ImageHoldings, type ResolvedImage } from './registry/image-holdings.ts'
import { ManifestService } from './registry/manifest-service.ts'
import { Metadata } from './registry/metadata.ts'
import { listLocalImages, resolveImage, type ImageResolver } from './replication/images.ts'
import type { Reconciler } from './replication/reconciler.ts'
import { registerRegistryRoutes } from './registry/routes.ts'
import { createHttpServer, type TlsIdentity } from './server.ts'
import { INTERNAL_HEADER, TOKEN_PATH, registerAccessControl, type AccessControlOptions } from './access/guard.ts'
import { operatorPublicKey } from './access/certificates.ts'
import { Htpasswd } from './access/htpasswd.ts'
import { defaultAllowedHosts, registerHostCheck } from './access/host-check.ts'
import { registerLoginRoutes } from './access/login-routes.ts'
import { AccessPolicy } from './access/policy.ts'
import { Sessions } from './access/sessions.ts'
import { renderLoginPage } from './web/pages/login.ts'
import { TokenIssuer, TokenVerifier, jwkThumbprint } from './access/tokens.ts'
import { registerWebUi } from './web/routes.ts'
import { Names } from './names/names.ts'
import { registerNameGatewayRoutes } from './names/gateway-routes.ts'

const UPLOAD_PURGE_INTERVAL_MS = 3_600_000

/** Users, rights and tokens when the configuration turns authentication on (htpasswd, or an external token issuer). */
function buildAccessControl (config: Config, data: string, fleet: Fleet | undefined, repositoriesOfImage: (imageCid: string) => Promise<string[]>, mirrors: Mirrors | undefined, names: Names): AccessControlOptions | undefined {
  if (config.htpasswd === undefined && config.tokenPublicKey === undefined) return undefined
  const settings = { issuer: config.tokenIssuer, service: config.tokenService, ttlSeconds: config.tokenTtlSeconds }
  // In a fleet, a token any member issued counts here too (sign in once, use any node).
  const members = fleet === undefined ? undefined : async (keyId: string) => await fleet.memberTokenKey(keyId, jwkThumbprint)
  const issuer = config.tokenPublicKey === undefined ? TokenIssuer.open(join(data, 'auth', 'token-signing.key'), settings, members) : undefined
  const externalRealm = config.tokenRealm
  const users = config.htpasswd === undefined ? undefined : Htpasswd.load(config.htpasswd)
  return {
    policy: new AccessPolicy({ rules: config.accessRules, anonymousPull: config.anonymousPull, admins: config.admins }),
    users,
    tokens: issuer ?? TokenVerifier.external(config.tokenPublicKey as string, settings),
    issuer,
    service: config.tokenService,
    // As the client reached this node.
    realm: req => externalRealm ?? `${req.protocol}://${req.host}${TOKEN_PATH}`,
    internalKey: randomBytes(32).toString('base64url'),
    isMember: peer => fleet?.isMember(peer) ?? false,
    sessions: users === undefined ? undefined : new Sessions(),
    repositoriesOfImage,
    // A name is read with the rights on the image it names now; one that names nothing guards nothing.
    imageOfName: async (repository, signal) => await names.imageCid(repository, signal).catch(() => undefined),
    ...(mirrors === undefined ? {} : { localName: (name: string, ns: string | undefined) => mirrors.localName(name, ns) })
  }
}

function isLoopback (host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host)
}

/** The CAs peers' HTTPS certificates are checked against: the system's and `tlsCa`'s; none set: undefined (the system's). */
function readPeerCa (config: Config): string[] | undefined {
  if (config.tlsCa === undefined) return undefined
  let pem: string
  try {
    pem = readFileSync(config.tlsCa, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read tlsCa ${config.tlsCa}: ${(err as Error).message}`)
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new ConfigError(`tlsCa ${config.tlsCa} holds no PEM certificate`)
  return [...rootCertificates, pem]
}

/** The fleet operator's public key the configuration names, read once at construction. */
function readOperatorKey (config: Config): KeyObject | undefined {
  if (config.operatorKey === undefined) return undefined
  try {
    return operatorPublicKey(readFileSync(config.operatorKey, 'utf8'))
  } catch (err) {
    throw new ConfigError(`operatorKey ${config.operatorKey} is not a usable operator public key: ${(err as Error).message}`)
  }
}

/** The certificate and key the configuration names, read once at construction; none: plain HTTP. */
function readTlsIdentity (config: Config): TlsIdentity | undefined {
  if (config.tlsCert === undefined || config.tlsKey === undefined) return undefined
  const read = (setting: 'tlsCert' | 'tlsKey', file: string): Buffer => {
    try {
      return readFileSync(file)
    } catch (err) {
      throw new ConfigError(`cannot read ${setting} ${file}: ${(err as Error).message}`)
    }
  }
  const identity = { cert: read('tlsCert', config.tlsCert), key: read('tlsKey', config.tlsKey) }
  // Checked now, so that a wrong pair is one line at start rather than a failed handshake per client.
  try {
    createSecureContext(identity)
  } catch (err) {
    throw new ConfigError(`tlsCert ${config.tlsCert} and tlsKey ${config.tlsKey} are not a usable certificate and key: ${(err as Error).message}`)
  }
  return identity
}

export interface NodeOptions {
  config: Config
  logger?: Logger
}

/**
 * Composition root: builds every part of a node once, in the constructor, and starts them in
 * order and stops them in reverse. A node configured for a mesh builds its mesh-facing parts
 * (the fleet, the fetcher, the fleet's content) with the rest and hands them to the services
 * that use them; `create` loads their classes first (mesh/parts.ts), so a node on its own never
 * does, and libp2p, helia and OrbitDB themselves load only when the fleet starts. Nothing is
 * rewired while the node runs.
 */
export class ShoalNode {
  /** Builds a node; the mesh's classes are loaded only when the configuration puts it in a mesh. */
  static async create (options: NodeOptions): Promise<ShoalNode> {
    return new ShoalNode(options, meshEnabled(options.config) ? await import('./mesh/parts.ts') : undefined)
  }

  readonly config: Config
  readonly logger: Logger
  readonly blockstore: FsBlockstore
  readonly metadata: Metadata
  readonly uploads: UploadStore
  readonly metrics: Metrics
  readonly http: FastifyInstance
  readonly manifests: ManifestService
  readonly blobs: BlobService
  readonly ipfsImages: IpfsImages
  /** Holds whole images on this node and lets them go (the reconciler's hands). */
  readonly holdings: ImageHoldings
  /** Checks every block against its CID now and then (`scrubIntervalHours`; off by default). */
  readonly scrubber: Scrubber
  /** Removes blocks no record, upload or pin reaches; runs beside pushes and pulls. */
  readonly gc: GarbageCollector
  /** Storage open, mesh joined: what /readyz reports and what the API serves from. */
  readonly lifecycle: Lifecycle<MeshApi>
  /** This node as a fleet member, when the configuration puts it in a mesh. */
  readonly fleet: Fleet | undefined
  /** Holds what the fleet's strategies place on this node (in a mesh only). */
  readonly reconciler: Reconciler | undefined
  /** The fleet's content (in a mesh): what remote reads go through, and where a corrupt block is fetched again. */
  private readonly remote: RemoteContent | undefined
  /** Fetches blocks from peers (in a mesh); its connections close at stop. */
  private readonly fetcher: BlockFetcher | undefined
  private stopWatchingCatalogue: (() => void) | undefined
  private collectLater: NodeJS.Timeout | undefined
  private address: string | undefined
  /** Pull-through mirrors of upstream registries (issue 13); undefined: none configured. */
  readonly mirrors: Mirrors | undefined
  /** Users, rights and tokens (issue 12); undefined: no authentication, a local registry as before. */
  readonly access: AccessControlOptions | undefined
  /** IPNS names and DNSLink (issue 14): keys, publishing, resolving. */
  readonly names: Names
  private purgeTimer: NodeJS.Timeout | undefined
  private dataDirLock: DataDirLock | undefined

  private constructor ({ config, logger }: NodeOptions, mesh: typeof MeshParts | undefined) {
    this.config = config
    this.logger = logger ?? pino({ level: config.logLevel, base: { node: 'shoal' } })
    this.lifecycle = new Lifecycle({ meshEnabled: meshEnabled(config) })
    const data = resolve(config.data)
    this.blockstore = new FsBlockstore(join(data, 'blocks'), { onCorrupt: found => { this.blockCorrupted(found) } })
    this.metadata = new Metadata(join(data, 'metadata'))
    this.uploads = new UploadStore(join(data, 'uploads'), this.blockstore, { maxSessions: config.maxUploadSessions })
    this.metrics = new Metrics({
      storedBlobs: () => this.metadata.countBlobs(),
      openUploads: () => this.uploads.count()
    })

    const peerCa = readPeerCa(config)
    // The mesh-facing parts: built now, started in start().
    const meshParts = mesh === undefined ? undefined : this.buildMeshParts(mesh, peerCa)
    const fleet = meshParts?.fleet
    this.fleet = fleet
    this.fetcher = meshParts?.fetcher
    const remote = meshParts?.remote
    this.remote = remote

    this.gc = new GarbageCollector({
      blockstore: this.blockstore,
      roots: registryRoots({ metadata: this.metadata, uploadsDir: join(data, 'uploads'), liveLeaves: () => this.uploads.liveLeaves(), pins: this.pinsOf(fleet) }),
      intervalMs: config.gcIntervalMinutes * 60_000,
      graceMs: config.gcGraceSeconds * 1000,
      logger: this.logger.child({ part: 'gc' }),
      onCollected: ({ result }) => {
        this.metrics.gcRuns.inc({ outcome: result === undefined ? 'failed' : 'completed' })
        this.metrics.gcBlocksRemoved.inc(result?.removedBlocks ?? 0)
        this.metrics.gcBytesRemoved.inc(result?.removedBytes ?? 0)
      }
    })
    this.scrubber = new Scrubber({
      blockstore: this.blockstore,
      intervalMs: config.scrubIntervalHours * 3_600_000,
      bytesPerSecond: config.scrubMbps * 125_000,
      logger: this.logger.child({ part: 'scrub' }),
      onChecked: () => { this.metrics.blocksVerified.inc() }
    })
    this.manifests = new ManifestService({ metadata: this.metadata, blocks: this.blockstore, shared: fleet?.sharedTags(), remote })
    this.blobs = new BlobService(this.metadata, this.blockstore, this.uploads, remote)
    this.ipfsImages = new IpfsImages(this.blockstore, remote)
    this.holdings = new ImageHoldings({ metadata: this.metadata, manifests: this.manifests, blobs: this.blobs, remote })
    this.reconciler = mesh === undefined || fleet === undefined ? undefined : this.buildReconciler(mesh, fleet, this.holdings)
    this.names = new Names({
      dataDir: data,
      // The mesh's identity file (mesh/mesh.ts): the node's own name is its peer id.
      identityFile: join(data, 'mesh', 'identity.key'),
      routing: fleet?.nameRouting(),
      dnsServers: config.dnsServers,
      imageCidOf: async (image, signal) => (await this.resolveImageReference(image, signal))?.imageCid,
      logger: this.logger.child({ part: 'names' })
    })

    this.http = createHttpServer(this.logger.child({ part: 'http' }), this.metrics, readTlsIdentity(config))
    // Before the routes, with or without authentication: DNS rebinding and cross-site changes.
    registerHostCheck(this.http, config.allowedHosts.length > 0 ? config.allowedHosts : defaultAllowedHosts(parseListen(config.listen).host, config.advertiseUrl))
    this.mirrors = this.buildMirrors(config, peerCa)
    this.access = buildAccessControl(config, data, fleet, async imageCid => await this.repositoriesOfImage(imageCid), this.mirrors, this.names)
    // Before the routes: every /v2 request is checked before a handler sees it.
    if (this.access !== undefined) registerAccessControl(this.http, this.access)
    if (this.access?.users !== undefined && this.access.sessions !== undefined) {
      registerLoginRoutes(this.http, { users: this.access.users, sessions: this.access.sessions, secure: config.tlsCert !== undefined, renderLogin: renderLoginPage })
    }
    registerRegistryRoutes(this.http, {
      blobs: this.blobs,
      manifests: this.manifests,
      ipfsImages: this.ipfsImages,
      metrics: this.metrics,
      mirrors: this.mirrors,
      names: this.names,
      bodyPace: { idleMs: config.bodyIdleSeconds * 1000, minBytesPerSecond: config.bodyMinBytesPerSecond, windowMs: config.bodyRateWindowSeconds * 1000 }
    })
    registerGatewayRoutes(this.http, {
      blocks: this.blockstore,
      metrics: this.metrics,
      uploadLimiter: config.uploadLimitMbps > 0 ? new TokenBucket({ bytesPerSecond: config.uploadLimitMbps * 125_000 }) : undefined,
      remote: config.gatewayFetch ? remote : undefined,
      relay: remote === undefined ? undefined : async (cid, root, peer, signal) => await remote.relay(cid, root, peer, signal)
    })
    registerNameGatewayRoutes(this.http, { names: this.names })
    registerApiRoutes(this.http, { membership: this.lifecycle, local: this.metadata, tagChanges: fleet ?? this.metadata, mirrors: config.mirrors, names: this.names })
    registerHealthRoutes(this.http, this.lifecycle)
    gateUntilReady(this.http, this.lifecycle)
    const issuer = this.access?.issuer
    registerWebUi(this.http, peerCa, this.access === undefined ? undefined : { [INTERNAL_HEADER]: this.access.internalKey },
      issuer === undefined ? undefined : async grants => (await issuer.issue(undefined, grants)).token)
  }

  /** The base URL the node answers on, once started. */
  get url (): string {
    if (this.address === undefined) throw new Error('node is not started')
    return this.address
  }

  async start (): Promise<void> {
    // First, before anything reads or writes the directory (the blockstore's start removes temp
    // files, which would be another node's writes in flight): one node per data directory.
    const lock = await DataDirLock.acquire(this.config.data)
    this.dataDirLock = lock
    try {
      await this.startParts()
    } catch (err) {
      // A failed start leaves nothing running, and no data directory it created.
      await this.stop().catch(() => {})
      await lock.abandon()
      throw err
    }
  }

  private async startParts (): Promise<void> {
    await this.blockstore.start()
    await this.metadata.start()
    await this.uploads.start()
    this.lifecycle.storageOpened()
    await this.purgeIdleUploads()
    this.purgeTimer = setInterval(() => { void this.purgeIdleUploads() }, UPLOAD_PURGE_INTERVAL_MS).unref()
    const { host, port } = parseListen(this.config.listen)
    await this.http.listen({ host, port })
    const bound = this.http.server.address()
    const boundPort = typeof bound === 'object' && bound !== null ? bound.port : port
    this.address = `${this.config.tlsCert === undefined ? 'http' : 'https'}://${host.includes(':') ? `[${host}]` : host}:${boundPort}`
    this.logger.info({ url: this.address, data: resolve(this.config.data) }, 'listening')
    if (this.access !== undefined && this.fleet !== undefined && this.config.swarmKeyFile === undefined) this.logger.warn('authentication is on but the mesh has no swarm key: any machine that reaches the libp2p port joins the fleet and may fetch every block (set swarmKeyFile)')
    if (this.access === undefined && !isLoopback(host)) this.logger.warn({ listen: this.config.listen }, 'no authentication: anyone who reaches this address may push, pull and delete (set auth.htpasswd, see "Securing a fleet" in the README)')
    // The fleet's first heartbeat names this node's URL, so it starts once the node listens.
    if (this.fleet !== undefined) await this.joinFleet(this.fleet)
    else await this.names.start()
    this.gc.start()
    this.scrubber.start()
    this.reconciler?.start()
  }

  /** Starts the mesh and the catalogue, then serves what needs them (the API's mesh parts). */
  private async joinFleet (fleet: Fleet): Promise<void> {
    await fleet.start()
    // Before the node says it has joined: the node's own name is the mesh's identity, and
    // records travel over the mesh, so names start once it runs.
    await this.names.start()
    const reconciler = this.reconciler
    if (reconciler !== undefined) this.stopWatchingCatalogue = fleet.onChange(() => { reconciler.poke() })
    this.lifecycle.meshJoined(await this.meshApi(fleet))
  }

  /** The repositories with a tag on an image (the fleet's tags in a mesh, this node's outside one). */
  private async repositoriesOfImage (imageCid: string): Promise<string[]> {
    const tags = this.fleet !== undefined && this.lifecycle.mesh.state === 'joined'
      ? await this.fleet.allTags()
      : this.fleet === undefined ? await listLocalImages(this.metadata) : []
    return [...new Set(tags.filter(tag => tag.imageCid === imageCid).map(tag => tag.repository))]
  }

  /** Where an image reference (`repo:tag`, `repo@digest`, image CID) points now: the fleet's tags in a mesh, this node's outside one. */
  private async resolveImageReference (image: string, signal: AbortSignal): Promise<ResolvedImage | undefined> {
    if (this.fleet !== undefined) {
      if (this.lifecycle.mesh.state !== 'joined') throw new NotReadyError('the node is joining its mesh: try again in a moment')
      return await resolveImage(image, this.fleet, this.metadata, signal)
    }
    // A single node's tags, in the catalogue's shape (what resolveImage reads of them).
    const local = { allTags: async () => (await listLocalImages(this.metadata, signal)).map(listing => ({ ...listing, mediaType: '', node: '', pushedAt: '' })) }
    return await resolveImage(image, local, this.metadata, signal)
  }

  /** A strategy's image under a mirrored registry is brought in from its upstream before it is looked up (pre-warming a fleet). */
  private mirroredImages (images: ImageResolver): ImageResolver {
    const mirrors = this.mirrors
    if (mirrors === undefined) return images
    return {
      exists: async (image, signal) => {
        await mirrors.ensureImage(image, signal).catch((err: unknown) => { this.logger.debug({ err, image }, 'a strategy\'s mirrored image could not be brought in') })
        return await images.exists(image, signal)
      }
    }
  }

  /** Pull-through mirrors of the upstream registries the configuration names (none: undefined). */
  private buildMirrors (config: Config, ca: string[] | undefined): Mirrors | undefined {
    if (config.mirrors.length === 0) return undefined
    const blobs = this.blobs
    const manifests = this.manifests
    const metadata = this.metadata
    const fleet = this.fleet
    // With users on, a node asks another member's /v2 with a pull token it issues itself (members
    // take each other's tokens); with an external issuer it has none, and each node goes to the upstream.
    const externalIssuer = config.tokenPublicKey !== undefined
    return new Mirrors({
      settings: config.mirrors,
      tagTtlMs: config.mirrorTagTtlSeconds * 1000,
      ...(fleet === undefined || externalIssuer
        ? {}
        : {
            fleet: {
              get self () { return fleet.peerId },
              liveMembers: async () => (await fleet.members()).filter(node => node.standing === 'live').map(node => ({ id: node.id, url: node.url })),
              // Read when a fetch starts: the access control is built after the mirrors (it maps names through them).
              tokenFor: async (repository: string) => (await this.access?.issuer?.issue(undefined, [{ type: 'repository', name: repository, actions: ['pull'] }]))?.token
            }
          }),
      ...(ca === undefined ? {} : { ca }),
      logger: this.logger.child({ part: 'mirror' }),
      counters: {
        request: (registry, outcome) => { this.metrics.mirrorRequests.inc({ registry, outcome }) },
        fetchedBytes: (registry, from, bytes) => { (from === 'upstream' ? this.metrics.mirrorUpstreamBytes : this.metrics.mirrorMemberBytes).inc({ registry }, bytes) },
        rateLimited: registry => { this.metrics.mirrorRateLimited.inc({ registry }) }
      },
      blobs: {
        has: async (repository, digest) => await blobs.stat(repository, digest).then(() => true, () => false),
        mount: async (repository, digest) => await blobs.mount(repository, digest),
        store: async (repository, digest, body, size) => {
          const session = await blobs.startUpload(repository)
          try {
            await blobs.finishUpload(repository, session.id, digest, body, size)
          } catch (err) {
            // A fetch stopped or refused leaves no upload behind.
            await blobs.cancelUpload(repository, session.id).catch(() => {})
            throw err
          }
        }
      },
      manifests: {
        tagged: async (repository, tag) => await manifests.tagged(repository, tag),
        has: async (repository, digest) => await metadata.hasManifestLink(repository, digest) || await manifests.fleetTagOf(repository, digest) !== undefined,
        put: async (repository, reference, body, mediaType) => await manifests.put(repository, reference, body, mediaType)
      }
    })
  }

  /** The fleet, its fetcher and its content, for a node its configuration puts in a mesh. */
  private buildMeshParts (mesh: typeof MeshParts, ca: string[] | undefined): { fleet: Fleet, fetcher: BlockFetcher, remote: RemoteContent } {
    const fleet = this.buildFleet(mesh)
    const fetcher = this.buildFetcher(mesh, fleet, ca)
    return { fleet, fetcher, remote: this.buildRemote(mesh, fleet, fetcher) }
  }

  /** The fleet: the mesh, the catalogue and this node's inventory record. */
  private buildFleet (mesh: typeof MeshParts): Fleet {
    return new mesh.Fleet({
      config: this.config,
      operatorKey: readOperatorKey(this.config),
      dataDir: resolve(this.config.data),
      blockstore: this.blockstore,
      logger: this.logger,
      facts: {
        url: () => this.config.advertiseUrl ?? this.url,
        usedBytes: async () => (await this.metadata.countBlobs()).bytes,
        heldImages: () => this.metadata.listImages(),
        replication: () => this.reconciler?.states() ?? {},
        tokenKey: () => this.access?.issuer?.publicJwk
      },
      collectGarbage: async () => await this.collectAfterDrop()
    })
  }

  /** The fleet's content as the registry reads it: blocks fetched from peers, verified, kept. */
  private buildRemote (mesh: typeof MeshParts, fleet: Fleet, fetcher: BlockFetcher): RemoteContent {
    return new mesh.RemoteContent({
      fetcher,
      blockstore: this.blockstore,
      finder: fleet,
      logger: this.logger.child({ part: 'remote' })
    })
  }

  /** Verified block fetches from peers: a provider pool, block requests, the DAG and file reads. */
  private buildFetcher (mesh: typeof MeshParts, fleet: Fleet, ca: string[] | undefined): BlockFetcher {
    return new mesh.BlockFetcher({
      ca,
      sign: async (method, target) => await fleet.mesh.signRequest(method, target),
      blockstore: this.blockstore,
      onBadBlock: (provider) => this.metrics.meshBadBlocks.inc({ provider: provider.id }),
      onBlockFetched: (provider, size) => {
        this.metrics.meshBlocksFetched.inc({ provider: provider.id })
        this.metrics.meshBytesFetched.inc({ provider: provider.id }, size)
      },
      peerId: () => fleet.peerId,
      // Content no member holds over HTTP: from any connected peer over bitswap (a plain IPFS node).
      fallback: new mesh.BitswapSource({
        blocks: () => fleet.mesh.helia.blockstore,
        outsiders: () => fleet.mesh.helia.libp2p.getPeers().some(peer => !fleet.isMember(peer.toString()))
      }),
      logger: this.logger.child({ part: 'fetch' })
    })
  }

  private buildReconciler (mesh: typeof MeshParts, fleet: Fleet, holder: ImageHoldings): Reconciler {
    return new mesh.Reconciler({
      selfId: () => fleet.peerId,
      strategies: async () => await fleet.strategies(),
      members: async () => (await fleet.members()).map(node => ({ id: node.id, name: node.name, labels: node.labels, gone: node.gone })),
      resolve: async image => await resolveImage(image, fleet, this.metadata),
      holder,
      placements: this.metadata.placements,
      onStatesChanged: () => { fleet.heldChanged() },
      collectGarbage: async () => await this.collectAfterDrop(),
      logger: this.logger.child({ part: 'reconciler' })
    })
  }

  /**
   * helia's pins, for garbage collection: OrbitDB pins every catalogue block it puts in the
   * shared blockstore. They can be read only while the mesh runs, so a node that has a mesh
   * datastore but has not joined (or runs outside its mesh) collects nothing.
   */
  private pinsOf (fleet: Fleet | undefined): () => PinSet | undefined {
    const meshData = existsSync(join(resolve(this.config.data), 'mesh', 'datastore'))
    return () => {
      if (fleet !== undefined && this.lifecycle.mesh.state === 'joined') return fleet.pins()
      if (fleet !== undefined || meshData) throw new GcUnavailableError('the catalogue\'s blocks are pinned in the mesh datastore, which is not open: collect while the node runs in its mesh')
      return undefined
    }
  }

  /** What the management API serves from the joined mesh. */
  private async meshApi (fleet: Fleet): Promise<MeshApi> {
    const [{ StrategyService }, { fleetImageResolver }] = await Promise.all([
      import('./replication/strategy-service.ts'), import('./replication/images.ts')
    ])
    return {
      fleet: {
        self: () => ({ id: fleet.peerId, addresses: fleet.addresses }),
        peers: async signal => await fleet.peers(signal),
        nodes: async () => await fleet.nodes(),
        forget: async id => { await fleet.forget(id) },
        allTags: async () => await fleet.allTags(),
        databases: async () => await fleet.databases(),
        trust: () => fleet.trustStatus(),
        addStatement: async value => await fleet.addStatement(value)
      },
      strategies: new StrategyService({ store: fleet.strategyStore(), nodes: fleet, tags: fleet, images: this.mirroredImages(fleetImageResolver(fleet, this.metadata)) })
    }
  }

  /**
   * Collects at once, and again just after the grace period: blocks fetched moments before a
   * drop are younger than the grace and survive the first collection.
   */
  private async collectAfterDrop (): Promise<unknown> {
    clearTimeout(this.collectLater)
    if (this.config.gcGraceSeconds > 0) {
      this.collectLater = setTimeout(() => {
        this.gc.collect().catch((err: unknown) => { this.logger.warn({ err }, 'garbage collection after a drop failed') })
      }, this.config.gcGraceSeconds * 1000 + 1000).unref()
    }
    return await this.gc.collect()
  }

  /**
   * A block on disk did not match its CID and was moved to the quarantine: counted, logged, and
   * in a mesh asked of the fleet again (a blob's leaves are also fetched again when it is read).
   */
  private blockCorrupted (found: BlockCorruptError): void {
    this.metrics.corruptBlocks.inc()
    this.logger.error({ cid: found.cid.toString(), path: found.path, quarantinedAt: found.quarantinedAt, actual: found.actual }, 'a block on disk does not match its CID: moved to the quarantine')
    const remote = this.remote
    if (remote === undefined) return
    remote.source(found.cid).getBytes(found.cid).then(
      () => { this.logger.warn({ cid: found.cid.toString() }, 'corrupt block fetched again from a peer') },
      (err: unknown) => { this.logger.debug({ err, cid: found.cid.toString() }, 'no peer has the corrupt block on its own (a blob\'s leaves come back when it is read)') })
  }

  private async purgeIdleUploads (): Promise<void> {
    try {
      const purged = await this.uploads.purgeIdle(this.config.uploadExpiryHours * 3_600_000)
      if (purged > 0) this.logger.info({ purged }, 'removed abandoned uploads')
    } catch (err) {
      this.logger.warn({ err }, 'could not purge abandoned uploads')
    }
  }

  async stop (): Promise<void> {
    this.lifecycle.stopped()
    this.stopWatchingCatalogue?.()
    this.stopWatchingCatalogue = undefined
    await this.reconciler?.stop()
    clearTimeout(this.collectLater)
    await this.gc.stop()
    await this.scrubber.stop()
    clearInterval(this.purgeTimer)
    await this.http.close()
    await this.names.stop()
    await this.mirrors?.stop()
    await this.fetcher?.close()
    await this.fleet?.stop()
    await this.uploads.stop()
    await this.metadata.stop()
    await this.blockstore.stop()
    await this.dataDirLock?.release()
    this.dataDirLock = undefined
    this.logger.info('stopped')
  }
}
