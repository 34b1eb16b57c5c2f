// IPNS names and DNSLink (issue 14), assembled: keys, this node's publications and their
// republishing, records heard from members, resolution. Loaded and started by names.ts.
import { join } from 'node:path'
import type { PrivateKey } from '@libp2p/interface'
import { loadOrCreateIdentity } from '../mesh/identity.ts'
import { DnslinkResolver } from './dnslink.ts'
import { ImageNotFoundError, NameNotResolvedError } from './errors.ts'
import { IpnsKeys, SELF_KEY, type IpnsKeyInfo } from './ipns-keys.ts'
import { DEFAULT_LIFETIME_SECONDS, DEFAULT_TTL_SECONDS, type NamesOptions, type PublishOptions } from './names.ts'
import { ipnsNameOfRoutingKey, parseIpnsName } from './ipns-name.ts'
import { IpnsResolver, type ResolvedRecord } from './ipns-resolver.ts'
import { NameResolver, type ContentPath } from './name-resolver.ts'
import { Publications, type Publication } from './publications.ts'
import { NamePublisher, type Published } from './publisher.ts'
import { RecordCache } from './record-cache.ts'

export type NameServiceOptions = NamesOptions

export class NameService {
  private readonly options: NameServiceOptions
  private readonly keys: IpnsKeys
  private readonly publications: Publications
  private readonly cache = new RecordCache()
  private readonly publisher: NamePublisher
  private readonly ipns: IpnsResolver
  private readonly resolver: NameResolver
  private stopListening: (() => void) | undefined

  constructor (options: NameServiceOptions) {
    this.options = options
    const { routing, logger } = options
    // The node's libp2p key, read once (in a mesh the mesh made it; outside one it is made here, and
    // the node keeps its peer id when it later joins a mesh).
    let self: Promise<{ key: PrivateKey, file: string }> | undefined
    const selfKey = async (): Promise<{ key: PrivateKey, file: string }> => {
      self ??= loadOrCreateIdentity(options.identityFile).then(key => ({ key, file: options.identityFile }))
      return await self
    }
    this.keys = new IpnsKeys({ dir: join(options.dataDir, 'ipns-keys'), self: selfKey })
    this.publications = new Publications(join(options.dataDir, 'ipns', 'published.json'))
    this.publisher = new NamePublisher({ keys: this.keys, publications: this.publications, cache: this.cache, routing, logger })
    this.ipns = new IpnsResolver({ publications: this.publications, cache: this.cache, routing, logger })
    this.resolver = new NameResolver({ ipns: this.ipns, dnslink: new DnslinkResolver({ servers: options.dnsServers }) })
  }

  async start (): Promise<void> {
    await this.publications.load()
    // Listening first: a member that hears this node start sends its records, which must not be missed.
    this.stopListening = this.options.routing?.listen(
      (routingKey, record) => { void this.heard(routingKey, record) },
      () => { this.publisher.rebroadcastSoon() })
    this.publisher.start()
  }

  async stop (): Promise<void> {
    this.stopListening?.()
    this.stopListening = undefined
    await this.publisher.stop()
  }

  async listKeys (): Promise<IpnsKeyInfo[]> {
    return await this.keys.list()
  }

  published (): Publication[] {
    return this.publications.all()
  }

  async createKey (name: string): Promise<IpnsKeyInfo> {
    return await this.keys.create(name)
  }

  async publish (options: PublishOptions, signal: AbortSignal): Promise<Published> {
    const key = options.key === undefined ? SELF_KEY : IpnsKeys.checkKeyName(options.key)
    // The key first: an unknown key is refused before the image is looked up.
    await this.keys.privateKey(key)
    const imageCid = await this.options.imageCidOf(options.image, signal)
    if (imageCid === undefined) throw new ImageNotFoundError(`image: ${options.image} names no image this node or its fleet knows (repo:tag, repo@digest or an image CID)`)
    return await this.publisher.publish({
      key,
      value: `/ipfs/${imageCid}`,
      image: options.image,
      lifetimeSeconds: options.lifetimeSeconds ?? DEFAULT_LIFETIME_SECONDS,
      ttlSeconds: options.ttlSeconds ?? DEFAULT_TTL_SECONDS
    }, signal)
  }

  /** `/ipns/<name or domain>[/path]` or `/dnslink/<domain>[/path]` to content. */
  async resolvePath (path: string, signal: AbortSignal, field = 'name'): Promise<ContentPath> {
    return await this.resolver.resolve(path, signal, field)
  }

  /** The record an IPNS name resolves through now, checked, with where it came from. */
  async record (name: string, signal: AbortSignal, field = 'name'): Promise<ResolvedRecord> {
    return await this.ipns.record(parseIpnsName(name, field), signal)
  }

  /**
   * The image CID the /v2 repository `ipns/<name>` or `dnslink/<domain>` stands for now; refuses
   * a name that points inside a DAG (only an image directory's root is an image).
   */
  async imageCid (repository: string, signal: AbortSignal): Promise<string> {
    const slash = repository.indexOf('/')
    const namespace = repository.slice(0, slash)
    const name = repository.slice(slash + 1)
    const path = await this.resolvePath(namespace === 'dnslink' ? `/dnslink/${name}` : `/ipns/${name}`, signal, 'repository name')
    if (path.segments.length > 0) throw new NameNotResolvedError(`${repository} points at ${path.chain.at(-1) ?? ''}, a path inside a DAG: /v2 pulls an image CID, the root of an image directory`)
    return path.cid.toString()
  }

  /** A record a member broadcast: kept when it checks out and is newer (this node's own names are its own to say). */
  private async heard (routingKey: Uint8Array, record: Uint8Array): Promise<void> {
    let name
    try {
      name = ipnsNameOfRoutingKey(routingKey)
    } catch {
      return
    }
    if (this.publications.byName(name.text) !== undefined) return
    const kept = await this.cache.offer(name, record, 'broadcast')
    if (kept) this.options.logger.debug({ name: name.text }, 'IPNS record heard from a member')
  }
}
