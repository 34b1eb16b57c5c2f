// A client of one registry's /v2 API: what a tag points at, manifests and blobs (a mirror's
// upstream, issue 13; the CLI's transfers, issue 14), and pushes. It goes through the Docker token
// flow when the registry asks (anonymous, or with credentials), and waits out 429s. Manifests are
// checked against their digests here; blobs are streamed to the caller, who checks them.
import { Readable } from 'node:stream'
import type * as Undici from 'undici'
import type { Dispatcher } from 'undici'
import { undici } from '../undici.ts'
import { digestOf, parseDigest } from './digest.ts'
import { MANIFEST_MEDIA_TYPES } from './media-types.ts'
import { ShoalError, type ErrorDescriptor } from './errors.ts'

/** The registry could not be reached, or answered with a failure (a 5xx, a refused token). */
export class RegistryUnavailableError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'UNAVAILABLE', status: 503, message: 'the registry is unavailable' }
}

/** The registry has no such manifest or blob. */
export class RegistryUnknownError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'MANIFEST_UNKNOWN', status: 404, message: 'the registry has no such manifest' }
}

/** The registry sent bytes that are not what their digest says. */
export class RegistryInvalidError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'MANIFEST_INVALID', status: 502, message: 'the registry sent content that does not match its digest' }
}

/** The registry refused a push (its own error message says why). */
export class RegistryRefusedError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'DENIED', status: 400, message: 'the registry refused the request' }
}

/** Retries of a request the upstream answered 429, each after its Retry-After (or a doubling wait). */
const MAX_RATE_LIMITED_TRIES = 4
const FIRST_BACKOFF_MS = 500
const MAX_BACKOFF_MS = 30_000
const TOKEN_LEEWAY_MS = 10_000
const ACCEPT = MANIFEST_MEDIA_TYPES.join(', ')

export interface RegistrySettings {
  /** The name clients use (docker.io). */
  registry: string
  /** Where it is fetched from (https://registry-1.docker.io). */
  url: string
  credentials?: { username: string, password: string }
}

export interface RegistryManifest {
  digest: string
  mediaType: string
  bytes: Buffer
}

/** What the registry's 429s did, for metrics and the log. */
export interface RateLimitListener {
  (registry: string, waitMs: number): void
}

export class RegistryClient {
  readonly registry: string
  private readonly base: URL
  private readonly credentials: RegistrySettings['credentials']
  private readonly dispatcher: Dispatcher.ComposedDispatcher
  private readonly request: typeof Undici.request
  /** Bearer tokens by scope, until shortly before they expire. */
  private readonly tokens = new Map<string, { token: string, until: number }>()
  private readonly onRateLimited: RateLimitListener

  private readonly extraHeaders: Record<string, string>

  /** Where credentials come from, for the error that says they are missing (a mirror's credentialsFile). */
  private readonly credentialsHint: string

  /** A token this node made for the repository (a fleet member's registry takes it); none: the challenge flow. */
  private readonly ownToken: ((repository: string) => Promise<string | undefined>) | undefined

  /**
   * `headers`: sent with every request (a fleet member asking another marks itself). `token`: a
   * bearer token for each repository, made by this node, sent in place of the challenge flow.
   */
  constructor (settings: RegistrySettings, options: { onRateLimited?: RateLimitListener, ca?: string[], headers?: Record<string, string>, token?: (repository: string) => Promise<string | undefined>, credentialsHint?: string } = {}) {
    this.extraHeaders = options.headers ?? {}
    this.credentialsHint = options.credentialsHint ?? 'none given'
    this.ownToken = options.token
    this.registry = settings.registry
    this.base = new URL(settings.url)
    this.credentials = settings.credentials
    this.onRateLimited = options.onRateLimited ?? (() => {})
    // undici is loaded with the first client (src/undici.ts).
    const { Agent, interceptors, request } = undici()
    this.request = request
    // Registries send blobs from elsewhere (Docker Hub: a 307 to its CDN).
    this.dispatcher = new Agent({ connections: 16, ...(options.ca === undefined ? {} : { connect: { ca: options.ca } }) })
      .compose(interceptors.redirect({ maxRedirections: 5 }))
  }

  /** Closes the connections once their requests are done; `abort`: at once, cutting any still running. */
  async close (abort = false): Promise<void> {
    if (abort) await this.dispatcher.destroy()
    else await this.dispatcher.close()
  }

  /** The digest and media type a tag (or digest) names upstream, by HEAD. */
  async resolve (repository: string, reference: string, signal?: AbortSignal): Promise<{ digest: string, mediaType: string }> {
    const response = await this.call({ method: 'HEAD', repository, path: `manifests/${reference}`, headers: { accept: ACCEPT }, signal })
    await response.body.dump()
    if (response.statusCode === 404) throw new RegistryUnknownError(`${this.registry} has no manifest ${repository}:${reference}`)
    const digest = header(response, 'docker-content-digest')
    if (response.statusCode !== 200 || digest === undefined) {
      // Some registries answer HEAD without the digest: the manifest itself says it.
      const manifest = await this.manifest(repository, reference, signal)
      return { digest: manifest.digest, mediaType: manifest.mediaType }
    }
    return { digest, mediaType: header(response, 'content-type') ?? '' }
  }

  /** A manifest by tag or digest, checked against its digest (the one asked for, or the one the upstream names). */
  async manifest (repository: string, reference: string, signal?: AbortSignal): Promise<RegistryManifest> {
    const response = await this.call({ method: 'GET', repository, path: `manifests/${reference}`, headers: { accept: ACCEPT }, signal })
    if (response.statusCode === 404) {
      await response.body.dump()
      throw new RegistryUnknownError(`${this.registry} has no manifest ${repository}:${reference}`)
    }
    await this.expectOk(response, `manifest ${repository}:${reference}`)
    const bytes = Buffer.from(await response.body.arrayBuffer())
    const named = reference.includes(':') ? reference : header(response, 'docker-content-digest')
    const digest = digestOf(bytes, named === undefined ? 'sha256' : parseDigest(named).algorithm)
    if (named !== undefined && named !== digest) throw new RegistryInvalidError(`${this.registry} sent ${repository}@${named} with digest ${digest}`)
    return { digest, mediaType: header(response, 'content-type') ?? '', bytes }
  }

  /** A blob's bytes as they arrive (the caller checks them against `digest`), from `offset` on, and their length. */
  async blob (repository: string, digest: string, signal?: AbortSignal, offset = 0): Promise<{ body: Readable, size: number | undefined }> {
    const response = await this.call({ method: 'GET', repository, path: `blobs/${digest}`, signal, ...(offset > 0 ? { headers: { range: `bytes=${offset}-` } } : {}) })
    if (response.statusCode === 404) {
      await response.body.dump()
      throw new RegistryUnknownError(`${this.registry} has no blob ${digest} in ${repository}`)
    }
    if (offset > 0 && response.statusCode !== 206) {
      await response.body.dump()
      throw new RegistryUnavailableError(`${this.registry} answered ${response.statusCode} to a range of blob ${digest}`)
    }
    if (offset === 0) await this.expectOk(response, `blob ${digest}`)
    const length = header(response, 'content-length')
    return { body: response.body, size: length === undefined ? undefined : Number(length) }
  }

  /** Whether the registry holds the blob in `repository` (a push skips what it has). */
  async hasBlob (repository: string, digest: string, signal?: AbortSignal): Promise<boolean> {
    const response = await this.call({ method: 'HEAD', repository, path: `blobs/${digest}`, push: true, signal })
    await response.body.dump()
    if (response.statusCode === 404) return false
    if (response.statusCode === 200) return true
    throw await this.refusal(response, `blob ${digest}`)
  }

  /** Opens an upload session; its URL (absolute). Signs in for pushing first, so the chunks that follow need no retry. */
  async startUpload (repository: string, signal?: AbortSignal): Promise<string> {
    const response = await this.call({ method: 'POST', repository, path: 'blobs/uploads/', push: true, signal, body: '' })
    if (response.statusCode !== 202) throw await this.refusal(response, `an upload to ${repository}`)
    await response.body.dump()
    return this.uploadUrl(response)
  }

  /**
   * Asks the registry to link a blob it holds elsewhere into `repository` (a mount without
   * `from`: the registry looks for it itself). Undefined when it did; else the upload session
   * it opened instead.
   */
  async mountBlob (repository: string, digest: string, signal?: AbortSignal): Promise<string | undefined> {
    const response = await this.call({ method: 'POST', repository, path: `blobs/uploads/?mount=${encodeURIComponent(digest)}`, push: true, signal, body: '' })
    if (response.statusCode === 201) {
      await response.body.dump()
      return undefined
    }
    if (response.statusCode !== 202) throw await this.refusal(response, `an upload to ${repository}`)
    await response.body.dump()
    return this.uploadUrl(response)
  }

  /** How many bytes an upload session holds (to resume it after an interruption). */
  async uploadOffset (repository: string, location: string, signal?: AbortSignal): Promise<number> {
    const response = await this.call({ method: 'GET', repository, url: new URL(location), push: true, signal })
    await response.body.dump()
    if (response.statusCode !== 204 && response.statusCode !== 200) throw new RegistryRefusedError(`${this.registry} has no upload at ${new URL(location).pathname} (${response.statusCode})`)
    return rangeEnd(header(response, 'range'))
  }

  /** Sends bytes into an upload from `offset`; the session's next URL and how many bytes it then holds. */
  async appendUpload (repository: string, location: string, body: AsyncIterable<Uint8Array>, offset: number, length: number | undefined, signal?: AbortSignal): Promise<{ location: string, offset: number }> {
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' }
    if (length !== undefined) {
      headers['content-length'] = String(length)
      if (length > 0) headers['content-range'] = `${offset}-${offset + length - 1}`
    }
    const response = await this.call({ method: 'PATCH', repository, url: new URL(location), headers, push: true, signal, body })
    if (response.statusCode !== 202) throw await this.refusal(response, `an upload to ${repository}`)
    await response.body.dump()
    return { location: this.uploadUrl(response), offset: rangeEnd(header(response, 'range')) }
  }

  /** Completes an upload as `digest` (the registry checks it). */
  async finishUpload (repository: string, location: string, digest: string, signal?: AbortSignal): Promise<void> {
    const url = new URL(location)
    url.searchParams.set('digest', digest)
    const response = await this.call({ method: 'PUT', repository, url, headers: { 'content-length': '0' }, push: true, signal, body: '' })
    if (response.statusCode !== 201) throw await this.refusal(response, `blob ${digest}`)
    await response.body.dump()
  }

  /** Pushes a manifest under a tag or its digest; the digest the registry gives it. */
  async putManifest (repository: string, reference: string, bytes: Uint8Array, mediaType: string, signal?: AbortSignal): Promise<string> {
    const response = await this.call({ method: 'PUT', repository, path: `manifests/${reference}`, headers: { 'content-type': mediaType }, push: true, signal, body: Buffer.from(bytes) })
    if (response.statusCode !== 201) throw await this.refusal(response, `manifest ${repository}:${reference}`)
    await response.body.dump()
    return header(response, 'docker-content-digest') ?? digestOf(bytes)
  }

  /** Where an upload continues: the Location the registry answered, made absolute. */
  private uploadUrl (response: Dispatcher.ResponseData): string {
    const location = header(response, 'location')
    if (location === undefined) throw new RegistryRefusedError(`${this.registry} answered an upload without its Location`)
    return new URL(location, this.base).toString()
  }

  /** A refusal in one line, with the registry's own OCI error message when it sent one. */
  private async refusal (response: Dispatcher.ResponseData, what: string): Promise<Error> {
    const text = await response.body.text().catch(() => '')
    let message = ''
    try {
      const errors = (JSON.parse(text) as { errors?: Array<{ code?: string, message?: string }> }).errors ?? []
      message = errors.map(error => `${error.code ?? ''}: ${error.message ?? ''}`).join('; ')
    } catch {
      // Not an OCI error body: the status says it.
    }
    const detail = message === '' ? String(response.statusCode) : `${response.statusCode} ${message}`
    if (response.statusCode === 401 || response.statusCode === 403) return new RegistryUnavailableError(`${this.registry} refused ${what}${this.credentials === undefined ? `: it needs credentials (${this.credentialsHint})` : ' with the given credentials'} (${detail})`)
    if (response.statusCode >= 500) return new RegistryUnavailableError(`${this.registry} failed on ${what} (${detail})`)
    return new RegistryRefusedError(`${this.registry} refused ${what} (${detail})`)
  }

  /**
   * A request with the token its scope needs, waiting out 429s; redirects (blob storage)
   * followed. A request with a streamed body cannot be sent twice: it is sent once, after a
   * bodiless request of the same scope signed in.
   */
  private async call (options: { method: Dispatcher.HttpMethod, repository: string, path?: string, url?: URL, headers?: Record<string, string>, push?: boolean, body?: string | Buffer | AsyncIterable<Uint8Array>, signal?: AbortSignal | undefined }): Promise<Dispatcher.ResponseData> {
    const { method, repository, signal, body } = options
    const url = options.url ?? new URL(`/v2/${repository}/${options.path ?? ''}`, this.base)
    const scope = `repository:${repository}:${options.push === true ? 'pull,push' : 'pull'}`
    const replayable = body === undefined || typeof body === 'string' || Buffer.isBuffer(body)
    let backoff = FIRST_BACKOFF_MS
    const own = await this.ownToken?.(repository)
    for (let attempt = 1; ; attempt++) {
      const token = own ?? this.tokenFor(scope)
      let response: Dispatcher.ResponseData
      try {
        response = await this.request(url, {
          method,
          dispatcher: this.dispatcher,
          headers: { ...this.extraHeaders, ...options.headers, ...(token === undefined ? this.basicHeader() : { authorization: `Bearer ${token}` }) },
          ...(body === undefined ? {} : { body: replayable ? body : Readable.from(body) }),
          signal
        })
      } catch (err) {
        signal?.throwIfAborted()
        throw new RegistryUnavailableError(`${this.registry} (${this.base.origin}) cannot be reached: ${(err as Error).message}`, { cause: err })
      }
      if (response.statusCode === 401 && attempt === 1 && replayable) {
        const challenge = header(response, 'www-authenticate')
        await response.body.dump()
        if (challenge === undefined || !/^bearer /i.test(challenge)) {
          if (this.credentials === undefined) throw new RegistryUnavailableError(`${this.registry} wants credentials and none are given (${this.credentialsHint})`)
          throw new RegistryUnavailableError(`${this.registry} refused the given credentials`)
        }
        await this.fetchToken(challenge, scope, signal)
        continue
      }
      if ((response.statusCode === 401 || response.statusCode === 403) && (method === 'GET' || method === 'HEAD')) {
        await response.body.dump()
        throw new RegistryUnavailableError(`${this.registry} refused access to ${repository} (${response.statusCode})${this.credentials === undefined ? `: it needs credentials (${this.credentialsHint})` : ' with the given credentials'}`)
      }
      if (response.statusCode === 429 && attempt < MAX_RATE_LIMITED_TRIES && replayable) {
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
    if (params.realm === undefined) throw new RegistryUnavailableError(`${this.registry} sent a Bearer challenge without a realm`)
    const realm = new URL(params.realm)
    if (params.service !== undefined) realm.searchParams.set('service', params.service)
    realm.searchParams.set('scope', scope)
    let response: Dispatcher.ResponseData
    try {
      response = await this.request(realm, { dispatcher: this.dispatcher, headers: this.basicHeader(), signal })
    } catch (err) {
      signal?.throwIfAborted()
      throw new RegistryUnavailableError(`${this.registry}'s token service ${realm.origin} cannot be reached: ${(err as Error).message}`, { cause: err })
    }
    if (response.statusCode !== 200) {
      await response.body.dump()
      throw new RegistryUnavailableError(`${this.registry}'s token service answered ${response.statusCode}${this.credentials === undefined ? '' : ' to the given credentials'}`)
    }
    const answer = await response.body.json() as { token?: unknown, access_token?: unknown, expires_in?: unknown }
    const token = typeof answer.token === 'string' ? answer.token : typeof answer.access_token === 'string' ? answer.access_token : undefined
    if (token === undefined) throw new RegistryUnavailableError(`${this.registry}'s token service sent no token`)
    const lifetime = typeof answer.expires_in === 'number' ? answer.expires_in * 1000 : 60_000
    this.tokens.set(scope, { token, until: Date.now() + Math.max(0, lifetime - TOKEN_LEEWAY_MS) })
  }

  private async expectOk (response: Dispatcher.ResponseData, what: string): Promise<void> {
    if (response.statusCode === 200) return
    await response.body.dump()
    throw new RegistryUnavailableError(`${this.registry} answered ${response.statusCode} for ${what}`)
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

/** The end of an upload's `Range: 0-<last>` as the number of bytes it holds. */
function rangeEnd (range: string | undefined): number {
  const match = /^(?:bytes=)?0-(\d+)$/.exec(range ?? '')
  return match === null ? 0 : Number(match[1]) + 1
}

/** Retry-After in seconds or as an HTTP date, as milliseconds from now. */
function retryAfterMs (value: string | undefined): number | undefined {
  if (value === undefined) return undefined
  const seconds = Number(value)
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000)
  const date = Date.parse(value)
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now())
}
