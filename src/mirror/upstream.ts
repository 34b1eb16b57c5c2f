// One upstream registry a node mirrors (issue 13): what it says a tag points at, its manifests and
// its blobs, through the Docker token flow when it asks for one (anonymous, or with the
// configured credentials). Manifests are checked against their digests here; blobs are streamed
// to the caller, whose store checks them.
import { Agent, interceptors, request, type Dispatcher } from 'undici'
import type { Readable } from 'node:stream'
import { digestOf, parseDigest } from '../oci/digest.ts'
import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'

/** The upstream could not be reached, or answered with a failure (a 5xx, a refused token). */
export class UpstreamUnavailableError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'UNAVAILABLE', status: 503, message: 'the upstream registry is unavailable' }
}

/** The upstream has no such manifest or blob. */
export class UpstreamUnknownError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'MANIFEST_UNKNOWN', status: 404, message: 'the upstream registry has no such manifest' }
}

/** The upstream sent bytes that are not what their digest says. */
export class UpstreamInvalidError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'MANIFEST_INVALID', status: 502, message: 'the upstream registry sent content that does not match its digest' }
}

/** Retries of a request the upstream answered 429, each after its Retry-After (or a doubling wait). */
const MAX_RATE_LIMITED_TRIES = 4
const FIRST_BACKOFF_MS = 500
const MAX_BACKOFF_MS = 30_000
const TOKEN_LEEWAY_MS = 10_000
const ACCEPT = MANIFEST_MEDIA_TYPES.join(', ')

export interface UpstreamSettings {
  /** The name clients use (docker.io). */
  registry: string
  /** Where it is fetched from (https://registry-1.docker.io). */
  url: string
  credentials?: { username: string, password: string }
}

export interface UpstreamManifest {
  digest: string
  mediaType: string
  bytes: Buffer
}

/** What the upstream's 429s did, for metrics and the log. */
export interface RateLimitListener {
  (registry: string, waitMs: number): void
}

export class UpstreamRegistry {
  readonly registry: string
  private readonly base: URL
  private readonly credentials: UpstreamSettings['credentials']
  private readonly dispatcher: Dispatcher.ComposedDispatcher
  /** Bearer tokens by scope, until shortly before they expire. */
  private readonly tokens = new Map<string, { token: string, until: number }>()
  private readonly onRateLimited: RateLimitListener

  private readonly extraHeaders: Record<string, string>

  /** A token this node made for the repository (a fleet member's registry takes it); none: the challenge flow. */
  private readonly ownToken: ((repository: string) => Promise<string | undefined>) | undefined

  /**
   * `headers`: sent with every request (a fleet member asking another marks itself). `token`: a
   * bearer token for each repository, made by this node, sent in place of the challenge flow.
   */
  constructor (settings: UpstreamSettings, options: { onRateLimited?: RateLimitListener, ca?: string[], headers?: Record<string, string>, token?: (repository: string) => Promise<string | undefined> } = {}) {
    this.extraHeaders = options.headers ?? {}
    this.ownToken = options.token
    this.registry = settings.registry
    this.base = new URL(settings.url)
    this.credentials = settings.credentials
    this.onRateLimited = options.onRateLimited ?? (() => {})
    // Registries send blobs from elsewhere (Docker Hub: a 307 to its CDN).
    this.dispatcher = new Agent({ connections: 16, ...(options.ca === undefined ? {} : { connect: { ca: options.ca } }) })
      .compose(interceptors.redirect({ maxRedirections: 5 }))
  }

  async close (): Promise<void> {
    await this.dispatcher.close()
  }

  /** The digest and media type a tag (or digest) names upstream, by HEAD. */
  async resolve (repository: string, reference: string, signal?: AbortSignal): Promise<{ digest: string, mediaType: string }> {
    const response = await this.call('HEAD', repository, `manifests/${reference}`, { accept: ACCEPT }, signal)
    await response.body.dump()
    if (response.statusCode === 404) throw new UpstreamUnknownError(`${this.registry} has no manifest ${repository}:${reference}`)
    const digest = header(response, 'docker-content-digest')
    if (response.statusCode !== 200 || digest === undefined) {
      // Some registries answer HEAD without the digest: the manifest itself says it.
      const manifest = await this.manifest(repository, reference, signal)
      return { digest: manifest.digest, mediaType: manifest.mediaType }
    }
    return { digest, mediaType: header(response, 'content-type') ?? '' }
  }

  /** A manifest by tag or digest, checked against its digest (the one asked for, or the one the upstream names). */
  async manifest (repository: string, reference: string, signal?: AbortSignal): Promise<UpstreamManifest> {
    const response = await this.call('GET', repository, `manifests/${reference}`, { accept: ACCEPT }, signal)
    if (response.statusCode === 404) {
      await response.body.dump()
      throw new UpstreamUnknownError(`${this.registry} has no manifest ${repository}:${reference}`)
    }
    await this.expectOk(response, `manifest ${repository}:${reference}`)
    const bytes = Buffer.from(await response.body.arrayBuffer())
    const named = reference.includes(':') ? reference : header(response, 'docker-content-digest')
    const digest = digestOf(bytes, named === undefined ? 'sha256' : parseDigest(named).algorithm)
    if (named !== undefined && named !== digest) throw new UpstreamInvalidError(`${this.registry} sent ${repository}@${named} with digest ${digest}`)
    return { digest, mediaType: header(response, 'content-type') ?? '', bytes }
  }

  /** A blob's bytes as they arrive (the caller checks them against `digest`), and its length. */
  async blob (repository: string, digest: string, signal?: AbortSignal): Promise<{ body: Readable, size: number | undefined }> {
    const response = await this.call('GET', repository, `blobs/${digest}`, {}, signal)
    if (response.statusCode === 404) {
      await response.body.dump()
      throw new UpstreamUnknownError(`${this.registry} has no blob ${digest} in ${repository}`)
    }
    await this.expectOk(response, `blob ${digest}`)
    const length = header(response, 'content-length')
    return { body: response.body, size: length === undefined ? undefined : Number(length) }
  }

  /** A request with the token its scope needs, waiting out 429s; redirects (blob storage) followed. */
  private async call (method: 'GET' | 'HEAD', repository: string, path: string, headers: Record<string, string>, signal?: AbortSignal): Promise<Dispatcher.ResponseData> {
    const url = new URL(`/v2/${repository}/${path}`, this.base)
    const scope = `repository:${repository}:pull`
    let backoff = FIRST_BACKOFF_MS
    const own = await this.ownToken?.(repository)
    for (let attempt = 1; ; attempt++) {
      const token = own ?? this.tokenFor(scope)
      let response: Dispatcher.ResponseData
      try {
        response = await request(url, {
          method,
          dispatcher: this.dispatcher,
          headers: { ...this.extraHeaders, ...headers, ...(token === undefined ? this.basicHeader() : { authorization: `Bearer ${token}` }) },
          signal
        })
      } catch (err) {
        signal?.throwIfAborted()
        throw new UpstreamUnavailableError(`${this.registry} (${this.base.origin}) cannot be reached: ${(err as Error).message}`, { cause: err })
      }
      if (response.statusCode === 401 && attempt === 1) {
        const challenge = header(response, 'www-authenticate')
        await response.body.dump()
        if (challenge === undefined || !/^bearer /i.test(challenge)) {
          if (this.credentials === undefined) throw new UpstreamUnavailableError(`${this.registry} wants credentials and none are configured`)
          throw new UpstreamUnavailableError(`${this.registry} refused the configured credentials`)
        }
        await this.fetchToken(challenge, scope, signal)
        continue
      }
      if (response.statusCode === 401 || response.statusCode === 403) {
        await response.body.dump()
        throw new UpstreamUnavailableError(`${this.registry} refused access to ${repository} (${response.statusCode})${this.credentials === undefined ? ': it needs credentials (the mirror\'s credentialsFile)' : ' with the configured credentials'}`)
      }
      if (response.statusCode === 429 && attempt < MAX_RATE_LIMITED_TRIES) {
        await response.body.dump()
        const wait = Math.min(MAX_BACKOFF_MS, retryAfterMs(header(response, 'retry-after')) ?? backoff)
        backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)
        this.onRateLimited(this.registry, wait)
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(resolve, wait)
          signal?.addEventListener('abort', () => { clearTimeout(timer); reject(signal.reason) }, { once: true })
        })
        continue
      }
      return response
    }
  }

  private basicHeader (): Record<string, string> {
    if (this.credentials === undefined) return {}
    return { authorization: `Basic ${Buffer.from(`${this.credentials.username}:${this.credentials.password}`).toString('base64')}` }
  }

  private tokenFor (scope: string): string | undefined {
    const known = this.tokens.get(scope)
    return known !== undefined && known.until > Date.now() ? known.token : undefined
  }

  /** The Docker token flow: the realm the challenge names, with its service and this scope. */
  private async fetchToken (challenge: string, scope: string, signal?: AbortSignal): Promise<void> {
    const params = challengeParams(challenge)
    if (params.realm === undefined) throw new UpstreamUnavailableError(`${this.registry} sent a Bearer challenge without a realm`)
    const realm = new URL(params.realm)
    if (params.service !== undefined) realm.searchParams.set('service', params.service)
    realm.searchParams.set('scope', scope)
    let response: Dispatcher.ResponseData
    try {
      response = await request(realm, { dispatcher: this.dispatcher, headers: this.basicHeader(), signal })
    } catch (err) {
      signal?.throwIfAborted()
      throw new UpstreamUnavailableError(`${this.registry}'s token service ${realm.origin} cannot be reached: ${(err as Error).message}`, { cause: err })
    }
    if (response.statusCode !== 200) {
      await response.body.dump()
      throw new UpstreamUnavailableError(`${this.registry}'s token service answered ${response.statusCode}${this.credentials === undefined ? '' : ' to the configured credentials'}`)
    }
    const answer = await response.body.json() as { token?: unknown, access_token?: unknown, expires_in?: unknown }
    const token = typeof answer.token === 'string' ? answer.token : typeof answer.access_token === 'string' ? answer.access_token : undefined
    if (token === undefined) throw new UpstreamUnavailableError(`${this.registry}'s token service sent no token`)
    const lifetime = typeof answer.expires_in === 'number' ? answer.expires_in * 1000 : 60_000
    this.tokens.set(scope, { token, until: Date.now() + Math.max(0, lifetime - TOKEN_LEEWAY_MS) })
  }

  private async expectOk (response: Dispatcher.ResponseData, what: string): Promise<void> {
    if (response.statusCode === 200) return
    await response.body.dump()
    throw new UpstreamUnavailableError(`${this.registry} answered ${response.statusCode} for ${what}`)
  }
}

function header (response: Dispatcher.ResponseData, name: string): string | undefined {
  const value = response.headers[name]
  return Array.isArray(value) ? value[0] : value
}

/** `Bearer realm="…",service="…",scope="…"` as its parameters. */
export function challengeParams (challenge: string): Record<string, string> {
  const params: Record<string, string> = {}
  for (const match of challenge.replace(/^bearer\s+/i, '').matchAll(/([a-z_]+)="([^"]*)"/gi)) params[match[1]!.toLowerCase()] = match[2]!
  return params
}

/** Retry-After in seconds or as an HTTP date, as milliseconds from now. */
function retryAfterMs (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}
