// Authentication and rights at the HTTP edge (issue 12): every /v2 request is checked against the
// access policy before a handler sees it, and the node issues Docker registry tokens at
// /auth/token, so docker, podman, skopeo and containerd sign in through their usual flow.
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { isUnder } from '../http-request.ts'
import { timingSafeEqual } from 'node:crypto'
import { CID } from 'multiformats/cid'
import { DeniedError, EndpointUnknownError, UnauthorizedError, UnsupportedError } from '../oci/errors.ts'
import { setRequestAccess } from '../registry/request-access.ts'
import { IPFS_REPOSITORY_PREFIX } from '../registry/ipfs-images.ts'
import { isNameRepository } from '../names/names.ts'
import { API_PREFIX } from '../api/scope.ts'
import { ASSETS_PREFIX } from '../web/layout.ts'
import { LOGIN_PATH, LOGOUT_PATH, sessionIdOf } from './login-routes.ts'
import { CSRF_HEADER, csrfMatches, type Sessions } from './sessions.ts'
import { PEER_HEADER } from '../mesh/block-request.ts'
import { PEER_SIGNATURE_HEADER, PEER_TIME_HEADER, verifyRequest } from '../mesh/peer-signature.ts'
import { acceptForms, formOf } from './form-body.ts'
import type { Htpasswd } from './htpasswd.ts'
import type { AccessPolicy, Action } from './policy.ts'
import { parseScopes, requirementOf, scopeText, type Requirement, type Scope } from './requirement.ts'
import type { ResourceAccess, TokenIssuer, TokenVerifier } from './tokens.ts'

export const TOKEN_PATH = '/auth/token'
/** Scopes one token may cover: each may cost a look through the tags (images by CID). */
const MAX_SCOPES = 50

export interface AccessControlOptions {
  policy: AccessPolicy
  /** Users who sign in with a password (Basic, and at the token endpoint); none: tokens only. */
  users: Htpasswd | undefined
  /** Checks bearer tokens. */
  tokens: TokenVerifier
  /** Issues tokens at /auth/token; none when an external issuer does. */
  issuer: TokenIssuer | undefined
  /** The service named in challenges and tokens. */
  service: string
  /** The token endpoint's URL, for the challenge: an external issuer's, else this node's as the client reached it. */
  realm: (req: FastifyRequest) => string
  /**
   * A secret made at start that never leaves the process: the web UI's in-process reads of this
   * node's /v2 carry it in `INTERNAL_HEADER` (they describe images the API listed for the user).
   */
  internalKey: string
  /** Whether a peer id is a member of this node's fleet (its blocks are theirs to fetch). */
  isMember: (peer: string) => boolean
  /** Signed-in browsers (the UI's login); none: the UI signs in with Basic only (an external token issuer and no htpasswd). */
  sessions: Sessions | undefined
  /** The repositories with a tag on the image whose CID this is: a user who may pull one of them may pull the image by CID. */
  repositoriesOfImage: (imageCid: string) => Promise<string[]>
  /** The repository a /v2 path's name stands for, given containerd's `ns` (the router's own mapping: pull-through mirrors); none: the name. */
  localName?: (name: string, ns: string | undefined) => string
  /** The image CID a name's repository (`ipns/<name>`, `dnslink/<domain>`) points at now; undefined when it points at none. */
  imageOfName?: (repository: string, signal: AbortSignal) => Promise<string | undefined>
}

/** How long the guard waits for a name to resolve (resolution bounds itself well within this). */
const NAME_RESOLUTION_MS = 15_000

/**
 * What `user` may do to `repository`: the policy's answer, and for an image by CID
 * (`ipfs/<cid>`) also pull when the user may pull a repository tagged with that image. Knowing a
 * CID is then not enough to read a private image, and a rule for `ipfs/*` is not needed to pull
 * by CID what one may pull by tag.
 */
async function rightsOn (user: string | undefined, repository: string, options: AccessControlOptions): Promise<Set<Action>> {
  if (isNameRepository(repository)) return await rightsOnName(user, repository, options)
  const actions = options.policy.actionsOn(user, repository)
  if (actions.has('pull') || !repository.startsWith(IPFS_REPOSITORY_PREFIX)) return actions
  const cid = repository.slice(IPFS_REPOSITORY_PREFIX.length)
  // Only a real CID is looked up (the lookup reads every tag).
  try {
    CID.parse(cid)
  } catch {
    return actions
  }
  const tagged = await options.repositoriesOfImage(cid)
  if (tagged.some(name => options.policy.actionsOn(user, name).has('pull'))) actions.add('pull')
  return actions
}

/**
 * What `user` may do to a name's repository (`ipns/<name>`, `dnslink/<domain>`): pull it when
 * the user may pull the image it names now by CID (the same rule as `ipfs/<cid>`), nothing else
 * (names are read-only). A name that names nothing guards nothing: a signed-in user (anyone with
 * anonymousPull) is let through to hear why it does not resolve; anyone else is asked to sign in.
 */
async function rightsOnName (user: string | undefined, repository: string, options: AccessControlOptions): Promise<Set<Action>> {
  const cid = await options.imageOfName?.(repository, AbortSignal.timeout(NAME_RESOLUTION_MS)).catch(() => undefined)
  if (cid === undefined) return new Set(user !== undefined || options.policy.actionsOn(undefined, '').has('pull') ? ['pull'] : [])
  return new Set((await rightsOn(user, IPFS_REPOSITORY_PREFIX + cid, options)).has('pull') ? ['pull'] : [])
}

export const INTERNAL_HEADER = 'x-shoal-internal'

/** Who a request comes from. */
interface Caller {
  /** Signed in as; undefined: anonymous. */
  user: string | undefined
  /** A bearer token's grants: they, not the policy, say what the request may do. */
  grants?: ResourceAccess[]
}

/** Open to anyone whatever the configuration: probes, metrics, the token endpoint and the sign-in itself, the UI's static assets and the API's description. */
const PUBLIC = ['/healthz', '/readyz', '/metrics', TOKEN_PATH, LOGIN_PATH, LOGOUT_PATH, ASSETS_PREFIX, '/favicon.ico', '/openapi.json', '/swagger']

export function registerAccessControl (app: FastifyInstance, options: AccessControlOptions): void {
  const internalKey = Buffer.from(options.internalKey)
  app.addHook('onRequest', async (req, reply) => {
    // The face is read from the path as it is written; the router decodes it. An encoded first
    // segment (`/v%32/`, `/%69pfs/`) would be checked as one face and served as another.
    if (/^\/[^/?]*%/.test(req.url)) throw new EndpointUnknownError('an encoded first path segment is not served')
    if (isInternalRead(req, internalKey)) return
    if (isUnder(req.url, '/v2')) await guardRegistry(req, options)
    else if (isUnder(req.url, '/ipfs')) await guardBlocks(req, options)
    else if (isUnder(req.url, '/ipns') || isUnder(req.url, NAME_ROUTING_PREFIX)) await guardNames(req, options)
    else if (!PUBLIC.some(prefix => isUnder(req.url, prefix))) {
      // A browser asking for a page is sent to the sign-in page rather than challenged.
      if (!(await guardManagement(req, options))) return await reply.code(303).header('location', `${LOGIN_PATH}?next=${encodeURIComponent(req.url)}`).header('cache-control', 'no-store').send()
    }
  })
  if (options.issuer !== undefined) registerTokenEndpoint(app, options, options.issuer)
}

/**
 * `options` whose name resolution runs once per name for one request, and what each name resolved
 * to: the guard may ask twice (its rights, then a denial's rights check), and the router serves
 * the image the rights were checked on.
 */
function resolvingNamesOnce (options: AccessControlOptions): { options: AccessControlOptions, imageOfName: (repository: string) => string | undefined } {
  const resolving = new Map<string, Promise<string | undefined>>()
  const resolved = new Map<string, string>()
  const resolve = options.imageOfName
  if (resolve === undefined) return { options, imageOfName: () => undefined }
  return {
    options: {
      ...options,
      imageOfName: async (repository, signal) => {
        let cid = resolving.get(repository)
        if (cid === undefined) {
          cid = resolve(repository, signal).catch(() => undefined)
          resolving.set(repository, cid)
        }
        const target = await cid
        if (target !== undefined) resolved.set(repository, target)
        return target
      }
    },
    imageOfName: repository => resolved.get(repository)
  }
}

/** The web UI's own reads of this node's registry (GET and HEAD under /v2 only), by the secret made at start. */
function isInternalRead (req: FastifyRequest, key: Buffer): boolean {
  const given = req.headers[INTERNAL_HEADER]
  if (typeof given !== 'string' || (req.method !== 'GET' && req.method !== 'HEAD') || !isUnder(req.url, '/v2')) return false
  const bytes = Buffer.from(given)
  return bytes.length === key.length && timingSafeEqual(bytes, key)
}

async function guardRegistry (req: FastifyRequest, configured: AccessControlOptions): Promise<void> {
  const requirement = requirementOf(req.method, req.url, configured.localName)
  // Only a name's repository has a name to resolve: other requests go without the per-request memo.
  const names = requirement.kind === 'repository' && isNameRepository(requirement.name) ? resolvingNamesOnce(configured) : undefined
  const options = names?.options ?? configured
  const caller = await identify(req, options, requirement)
  // The path's repository with its image-by-CID rights, read once; others (a mount's source, the catalogue's entries) by the policy.
  const own = requirement.kind === 'repository' && caller.grants === undefined ? await rightsOn(caller.user, requirement.name, options) : undefined
  const may = (repository: string, action: Action): boolean => caller.grants !== undefined
    ? caller.grants.some(grant => grant.type === 'repository' && grant.name === repository && grant.actions.includes(action))
    : (own !== undefined && requirement.kind === 'repository' && repository === requirement.name ? own : options.policy.actionsOn(caller.user, repository)).has(action)
  // The catalogue is listed by the user's rights when the token grants it (registry:catalog:*), not by the token's repository grants.
  const listsByPolicy = requirement.kind === 'catalog' && caller.grants?.some(grant => grant.type === 'registry' && grant.name === 'catalog') === true
  setRequestAccess(req, { user: caller.user, pullable: repository => listsByPolicy ? options.policy.actionsOn(caller.user, repository).has('pull') : may(repository, 'pull'), ...(names === undefined ? {} : { imageOfName: names.imageOfName }) })
  switch (requirement.kind) {
    case 'base':
    case 'catalog':
      // A password or a valid token, an anonymous one included (with anonymousPull the token
      // endpoint gives one to anyone). Never nothing: a client that meets no challenge here
      // decides the registry has no authentication, and its pushes then fail without asking
      // for credentials (skopeo does). The catalogue lists only what may be pulled.
      if (caller.user !== undefined || caller.grants !== undefined) return
      throw unauthorized(req, options, requirement, 'authentication required')
    case 'repository': {
      if (may(requirement.name, requirement.action)) return
      const userMay = (await rightsOn(caller.user, requirement.name, options)).has(requirement.action)
      // A token without the scope, for a user who has the right: the client fetches one with it.
      if (caller.user === undefined || (caller.grants !== undefined && userMay)) {
        throw unauthorized(req, options, requirement, caller.user === undefined ? 'authentication required' : 'the token does not grant this', caller.user !== undefined)
      }
      throw new DeniedError(`${caller.user} may not ${requirement.action} ${requirement.name}`)
    }
  }
}

/**
 * The management API and the web UI: a signed-in user reads (the images and tag events it sees
 * are those it may pull); only an admin changes anything or reads the raw catalogue. Answers false
 * for a browser that should be sent to the sign-in page; other callers without credentials get
 * the 401 challenge.
 */
async function guardManagement (req: FastifyRequest, options: AccessControlOptions): Promise<boolean> {
  const challenge = { 'www-authenticate': `Basic realm="shoal", charset="UTF-8", Bearer realm="${options.realm(req)}",service="${options.service}"` }
  let caller = await identifyBeyondRegistry(req, options, challenge)
  const changes = req.method !== 'GET' && req.method !== 'HEAD'
  // No Authorization header: a browser's session, whose changes carry its CSRF token.
  const session = caller.user === undefined && req.headers.authorization === undefined ? options.sessions?.get(sessionIdOf(req)) : undefined
  if (session !== undefined) {
    if (changes && !csrfMatches(session, req.headers[CSRF_HEADER])) throw new DeniedError(`a change made with the session cookie needs its CSRF token (${CSRF_HEADER})`)
    caller = { user: session.user }
  }
  if (caller.user === undefined) {
    if (options.sessions !== undefined && req.method === 'GET' && !isUnder(req.url, API_PREFIX) && (req.headers.accept ?? '').includes('text/html')) return false
    throw new UnauthorizedError('sign in to use this node', undefined, { headers: challenge })
  }
  const user = caller.user
  setRequestAccess(req, { user, pullable: repository => options.policy.actionsOn(user, repository).has('pull'), ...(session === undefined ? {} : { csrf: session.csrf }) })
  if ((changes || req.routeOptions.url === `${API_PREFIX}/datastore`) && !options.policy.isAdmin(user)) {
    throw new DeniedError(`${user} is not an admin: ${changes ? 'strategies and the fleet are managed by admins' : 'the raw catalogue is for admins'}`)
  }
  return true
}

/**
 * Blocks by CID (`/ipfs/`): to fleet members, whose requests are signed with their libp2p key
 * (mesh/peer-signature.ts), and to admins; to anyone when anonymous pulls are allowed. A CID says
 * nothing of the repositories that hold it, so knowing one is not enough to read a private image.
 */
async function guardBlocks (req: FastifyRequest, options: AccessControlOptions): Promise<void> {
  const peer = req.headers[PEER_HEADER]
  const signature = req.headers[PEER_SIGNATURE_HEADER]
  const time = req.headers[PEER_TIME_HEADER]
  if (typeof peer === 'string' && typeof signature === 'string' && typeof time === 'string') {
    const signer = await verifyRequest(peer, req.method, `${req.headers.host ?? ''}${req.url}`, time, signature)
    if (signer === undefined) throw new UnauthorizedError('the peer signature does not hold (another key, node, path or time)')
    if (!options.isMember(signer)) throw new DeniedError(`peer ${signer} is not a member of this fleet`)
    // Members fetch raw blocks, one at a time: a signature is never a whole image (a CAR, a tar)
    // nor a file's bytes (the gateway's answer to a request that names no format).
    if (!asksForRawBlock(req)) throw new DeniedError('a signed request gets raw blocks, not a CAR, a tar or a file\'s bytes')
    return
  }
  if (options.policy.actionsOn(undefined, '').has('pull')) return
  const challenge = { 'www-authenticate': 'Basic realm="shoal", charset="UTF-8"' }
  const caller = await identifyBeyondRegistry(req, options, challenge)
  if (caller.user === undefined) throw new UnauthorizedError('sign in, or sign the request as a fleet member', undefined, { headers: challenge })
  // An image by its CID, for a user who may pull it by a tag.
  const cid = /^\/ipfs\/([^/?]+)/.exec(req.url)?.[1]
  if (cid !== undefined && (await rightsOn(caller.user, IPFS_REPOSITORY_PREFIX + cid, options)).has('pull')) return
  if (!options.policy.isAdmin(caller.user)) throw new DeniedError(`${caller.user} may not read blocks by CID: fleet members and admins may (pull images through /v2)`)
}

const NAME_ROUTING_PREFIX = '/routing/v1/ipns'

/**
 * Names (`/ipns/<name>`, `/routing/v1/ipns/<name>`): to anyone when anonymous pulls are allowed;
 * else to admins, and to a signed-in user who may pull the image the name points at now (as
 * through /v2). What a name leads to under /ipfs is guarded there again.
 */
async function guardNames (req: FastifyRequest, options: AccessControlOptions): Promise<void> {
  if (options.policy.actionsOn(undefined, '').has('pull')) return
  const challenge = { 'www-authenticate': 'Basic realm="shoal", charset="UTF-8"' }
  const caller = await identifyBeyondRegistry(req, options, challenge)
  if (caller.user === undefined) throw new UnauthorizedError('sign in to resolve names', undefined, { headers: challenge })
  if (options.policy.isAdmin(caller.user)) return
  const path = req.url.split('?', 1)[0] ?? ''
  const encoded = (isUnder(path, NAME_ROUTING_PREFIX) ? path.slice(NAME_ROUTING_PREFIX.length) : path.slice('/ipns'.length)).split('/')[1] ?? ''
  let name: string
  try {
    name = decodeURIComponent(encoded)
  } catch {
    return // the route refuses it
  }
  if ((await rightsOnName(caller.user, `ipns/${name}`, options)).has('pull')) return
  throw new DeniedError(`${caller.user} may not pull what ${name} names`)
}

/** Whether a gateway request asks for a raw block, as mesh/gateway-routes.ts reads it: `?format=raw`, or no format and Accept raw. */
function asksForRawBlock (req: FastifyRequest): boolean {
  const format = new URLSearchParams(req.url.split('?', 2)[1] ?? '').getAll('format')
  if (format.length > 0) return format.length === 1 && format[0] === 'raw'
  return (req.headers.accept ?? '').includes('application/vnd.ipld.raw')
}

/**
 * The caller of the faces beyond the registry (the API, the UI, blocks by CID). Wrong credentials,
 * and a token meant for the registry only (one without the scope `registry:api:*`, the one that
 * lets those faces act for its user), get a 401 with `challenge`.
 */
async function identifyBeyondRegistry (req: FastifyRequest, options: AccessControlOptions, challenge: Record<string, string>): Promise<Caller> {
  let caller: Caller
  try {
    caller = await identify(req, options, { kind: 'base' })
  } catch (err) {
    throw new UnauthorizedError((err as Error).message, undefined, { headers: challenge })
  }
  if (caller.grants !== undefined && !caller.grants.some(grant => grant.type === 'registry' && grant.name === 'api')) {
    throw new UnauthorizedError('this token is for the registry: sign in with a password, or ask /auth/token for scope registry:api:*', undefined, { headers: challenge })
  }
  return caller
}

/** The caller its Authorization header proves; wrong credentials are refused here, none is anonymous. */
async function identify (req: FastifyRequest, options: AccessControlOptions, requirement: Requirement): Promise<Caller> {
  const header = req.headers.authorization
  if (header === undefined || header === '') return { user: undefined }
  const [scheme = '', credentials = ''] = header.split(' ', 2)
  if (/^basic$/i.test(scheme)) {
    const user = await checkPassword(credentials, options.users)
    if (user === undefined) throw unauthorized(req, options, requirement, 'wrong user name or password')
    return { user }
  }
  if (/^bearer$/i.test(scheme)) {
    const claims = await options.tokens.verify(credentials.trim())
    if (claims === undefined) throw unauthorized(req, options, requirement, 'the token is not valid here (forged, expired, or for another service)')
    return { user: claims.subject, grants: claims.access }
  }
  throw unauthorized(req, options, requirement, `the ${scheme} authorization scheme is not taken: use Bearer or Basic`)
}

/** The user a Basic credential proves, or undefined. */
async function checkPassword (credentials: string, users: Htpasswd | undefined): Promise<string | undefined> {
  if (users === undefined) return undefined
  const decoded = Buffer.from(credentials.trim(), 'base64').toString('utf8')
  const at = decoded.indexOf(':')
  if (at <= 0) return undefined
  const user = decoded.slice(0, at)
  return await users.verify(user, decoded.slice(at + 1)) ? user : undefined
}

/** A 401 whose challenge sends the client to the token endpoint, with the scope it needs (`insufficientScope`: its token lacks it). */
function unauthorized (req: FastifyRequest, options: AccessControlOptions, requirement: Requirement, why: string, insufficientScope = false): UnauthorizedError {
  const scope = scopeOf(requirement)
  const params = [`realm="${options.realm(req)}"`, `service="${options.service}"`, ...(scope === undefined ? [] : [`scope="${scopeText(scope)}"`])]
  if (insufficientScope) params.push('error="insufficient_scope"')
  return new UnauthorizedError(why, undefined, { headers: { 'www-authenticate': `Bearer ${params.join(',')}` } })
}

function scopeOf (requirement: Requirement): Scope | undefined {
  switch (requirement.kind) {
    case 'base': return undefined
    case 'catalog': return { type: 'registry', name: 'catalog', actions: ['*'] }
    // A push reads too (a client checks what is there): ask for both, as Distribution does.
    case 'repository': return { type: 'repository', name: requirement.name, actions: requirement.action === 'push' ? ['pull', 'push'] : [requirement.action] }
  }
}

// ---------------------------------------------------------------------------------------------
// The token endpoint (Docker Registry v2 token specification, and its OAuth2 form for containerd)

function registerTokenEndpoint (app: FastifyInstance, options: AccessControlOptions, issuer: TokenIssuer): void {
  app.register(async (scope) => {
    acceptForms(scope, 64 * 1024)
    // GET: Basic credentials (optional: none is an anonymous token), service, scope (repeatable).
    scope.get(TOKEN_PATH, { schema: { hide: true } }, async (req, reply) => {
      const query = new URLSearchParams((req.url.split('?', 2)[1]) ?? '')
      const header = req.headers.authorization
      let user: string | undefined
      if (header !== undefined && header !== '') {
        const [scheme = '', credentials = ''] = header.split(' ', 2)
        user = /^basic$/i.test(scheme) ? await checkPassword(credentials, options.users) : undefined
        if (user === undefined) throw signInRefused()
      }
      const answer = await grant(user, parseScopes(query.getAll('scope')), query.get('service'), options, issuer)
      return await reply.header('cache-control', 'no-store').send({ token: answer.token, access_token: answer.token, expires_in: answer.expiresIn, issued_at: answer.issuedAt.toISOString() })
    })
    // POST (OAuth2 password grant, what containerd sends when it has credentials).
    scope.post(TOKEN_PATH, { schema: { hide: true } }, async (req, reply) => {
      const form = formOf(req)
      const grantType = form.get('grant_type')
      if (grantType !== 'password') return await reply.code(400).header('cache-control', 'no-store').send({ error: 'unsupported_grant_type', error_description: `grant_type ${grantType ?? '(none)'} is not supported: use password` })
      const name = form.get('username') ?? ''
      const user = await checkPassword(Buffer.from(`${name}:${form.get('password') ?? ''}`).toString('base64'), options.users)
      if (user === undefined) throw signInRefused()
      const scopes = parseScopes(form.getAll('scope'))
      const answer = await grant(user, scopes, form.get('service'), options, issuer)
      return await reply.header('cache-control', 'no-store').send({ access_token: answer.token, expires_in: answer.expiresIn, issued_at: answer.issuedAt.toISOString(), scope: scopes.map(scopeText).join(' ') })
    })
  })
}

function signInRefused (): UnauthorizedError {
  return new UnauthorizedError('wrong user name or password', undefined, { headers: { 'www-authenticate': 'Basic realm="shoal"' } })
}

/** A token granting of each scope asked what the user may do (possibly nothing). */
async function grant (user: string | undefined, scopes: Scope[], service: string | null, options: AccessControlOptions, issuer: TokenIssuer): Promise<Awaited<ReturnType<TokenIssuer['issue']>>> {
  if (service !== null && service !== options.service) throw new DeniedError(`this node issues tokens for service ${options.service}, not ${service}`)
  if (scopes.length > MAX_SCOPES) throw new UnsupportedError(`a token covers at most ${MAX_SCOPES} scopes, not ${scopes.length}`)
  const access: ResourceAccess[] = []
  for (const scope of scopes) {
    if (scope.type === 'repository') {
      const allowed = await rightsOn(user, scope.name, options)
      const actions = scope.actions.flatMap(action => action === '*' ? [...allowed] : allowed.has(action as Action) ? [action] : [])
      access.push({ type: 'repository', name: scope.name, actions: [...new Set(actions)] })
    } else if (scope.type === 'registry' && scope.name === 'catalog' && (user !== undefined || options.policy.actionsOn(undefined, '').has('pull'))) {
      access.push({ type: 'registry', name: 'catalog', actions: ['*'] })
    } else if (scope.type === 'registry' && scope.name === 'api' && user !== undefined) {
      // The management API as this user: what the user may do there is the policy's to say.
      access.push({ type: 'registry', name: 'api', actions: ['*'] })
    }
  }
  return await issuer.issue(user, access)
}

