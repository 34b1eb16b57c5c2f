// IPNS names and DNSLink (issue 14) as the node's faces use them: keys, publishing, resolving.
// Built with the node and started once the mesh has joined (the node's own key is the mesh's
// identity, and records travel over it); until then every call answers 503. The machinery
// (the ipns package, libp2p's keys: some 30 MB) loads only when needed: at start with names to
// republish, else at the first call. In a mesh, loading is also what joins the names' gossip topic:
// a fleet that never uses names carries neither the code nor the topic, and a member that starts
// using them hears every current record at once (publishers rebroadcast to a new listener).
import { access } from 'node:fs/promises'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { NotReadyError } from '../lifecycle.ts'
import type { IpnsKeyInfo } from './ipns-keys.ts'
import type { Publication } from './publications.ts'
import type { ResolvedRecord } from './ipns-resolver.ts'
import type { NameRouting } from './name-routing.ts'
import type { ContentPath } from './name-resolver.ts'
import type { NameService } from './name-service.ts'
import type { Published } from './publisher.ts'

export type { IpnsKeyInfo } from './ipns-keys.ts'
export type { ContentPath } from './name-resolver.ts'
export type { ResolvedRecord } from './ipns-resolver.ts'
export type { Published } from './publisher.ts'

/** /v2 repositories that stand for what a name points at: `ipns/<name>` and `dnslink/<domain>`. */
export const NAME_REPOSITORY_PREFIXES = ['ipns/', 'dnslink/'] as const

export function isNameRepository (repository: string): boolean {
  return NAME_REPOSITORY_PREFIXES.some(prefix => repository.startsWith(prefix))
}

export const DEFAULT_LIFETIME_SECONDS = 24 * 3600
export const DEFAULT_TTL_SECONDS = 300

export interface PublishOptions {
  /** `repo:tag`, `repo@digest` or an image CID. */
  image: string
  /** Default: `self`, the node's own key. */
  key?: string
  lifetimeSeconds?: number
  ttlSeconds?: number
}

export interface NamesOptions {
  /** The data directory: keys in `ipns-keys/`, this node's publications in `ipns/`. */
  dataDir: string
  /** The node's libp2p key (its IPNS name is its peer id): the mesh's identity file. */
  identityFile: string
  /** The mesh; none: names are this node's alone (published and resolved here only). */
  routing: NameRouting | undefined
  /** DNS servers for DNSLink (`host:port`); none: the system's. */
  dnsServers: readonly string[]
  /** The image CID an image reference names now, or undefined. */
  imageCidOf: (image: string, signal: AbortSignal) => Promise<string | undefined>
  logger: Logger
}

export class Names {
  private readonly options: NamesOptions
  private state: 'stopped' | 'started' = 'stopped'
  private loading: Promise<NameService> | undefined

  constructor (options: NamesOptions) {
    this.options = options
  }

  async start (): Promise<void> {
    this.state = 'started'
    // Loaded now if it has work at once: names to republish.
    if (await exists(join(this.options.dataDir, 'ipns', 'published.json'))) await this.service()
  }

  async stop (): Promise<void> {
    this.state = 'stopped'
    const loading = this.loading
    this.loading = undefined
    await (await loading?.catch(() => undefined))?.stop()
  }

  async listKeys (): Promise<IpnsKeyInfo[]> {
    return await (await this.service()).listKeys()
  }

  /** The names this node publishes; none without loading the names' code when it never published. */
  async published (): Promise<Publication[]> {
    if (this.loading === undefined && !await exists(join(this.options.dataDir, 'ipns', 'published.json'))) return []
    return (await this.service()).published()
  }

  async createKey (name: string): Promise<IpnsKeyInfo> {
    return await (await this.service()).createKey(name)
  }

  async publish (options: PublishOptions, signal: AbortSignal): Promise<Published> {
    return await (await this.service()).publish(options, signal)
  }

  /** What `name` (an IPNS name or a domain) points at now, hop by hop; `field` names it in a refusal. */
  async resolve (name: string, signal: AbortSignal, field = 'name'): Promise<ContentPath> {
    return await (await this.service()).resolvePath(`/ipns/${name}`, signal, field)
  }

  /** `/ipns/<name or domain>[/path]` or `/dnslink/<domain>[/path]` to content. */
  async resolvePath (path: string, signal: AbortSignal, field = 'name'): Promise<ContentPath> {
    return await (await this.service()).resolvePath(path, signal, field)
  }

  /** The record an IPNS name resolves through now, checked, with where it came from. */
  async record (name: string, signal: AbortSignal, field = 'name'): Promise<ResolvedRecord> {
    return await (await this.service()).record(name, signal, field)
  }

  /** The image CID the /v2 repository `ipns/<name>` or `dnslink/<domain>` stands for now. */
  async imageCid (repository: string, signal: AbortSignal): Promise<string> {
    return await (await this.service()).imageCid(repository, signal)
  }

  private async service (): Promise<NameService> {
    if (this.state !== 'started') throw new NotReadyError('IPNS names are not ready yet: the node is joining its mesh')
    if (this.loading === undefined) {
      const loading = import('./name-service.ts').then(async ({ NameService }) => {
        const service = new NameService(this.options)
        await service.start()
        return service
      })
      this.loading = loading
      // A failed start is tried again at the next call.
      loading.catch(() => { if (this.loading === loading) this.loading = undefined })
    }
    return await this.loading
  }
}

async function exists (path: string): Promise<boolean> {
  return await access(path).then(() => true, () => false)
}
