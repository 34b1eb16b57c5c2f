// What the access guard (access/guard.ts) decided for a request, for the handlers whose answer
// depends on more than the one repository in the path: a mount reads another repository, the
// catalogue lists them all. Without authentication no request has one, and everything is allowed.
import type { FastifyRequest } from 'fastify'

export interface RequestAccess {
  /** The signed-in user; undefined: anonymous. */
  user: string | undefined
  /** Whether the request's user may pull `repository`. */
  pullable(repository: string): boolean
  /** Signed in with the UI's session cookie: the CSRF token its pages send with changes. */
  csrf?: string
  /**
   * The image CID a name's repository (`ipns/<name>`, `dnslink/<domain>`) pointed at when the
   * guard checked the rights on it: the router serves that image, not a second resolution's (a
   * name republished in between would be served on the rights of the image it named before).
   */
  imageOfName?: (repository: string) => string | undefined
}

const decisions = new WeakMap<FastifyRequest, RequestAccess>()

export function setRequestAccess (req: FastifyRequest, access: RequestAccess): void {
  decisions.set(req, access)
}

/** Whether a repository may be read on behalf of this request. */
export function pullableFor (req: FastifyRequest): (repository: string) => boolean {
  const access = decisions.get(req)
  return access === undefined ? () => true : repository => access.pullable(repository)
}

/** The signed-in user a request comes from (undefined: anonymous, or no authentication). */
export function userOf (req: FastifyRequest): string | undefined {
  return decisions.get(req)?.user
}

/** The user and CSRF token of a request signed in with the UI's session, for the pages it renders. */
export function sessionOf (req: FastifyRequest): { user: string, csrf: string } | undefined {
  const access = decisions.get(req)
  return access?.user === undefined || access.csrf === undefined ? undefined : { user: access.user, csrf: access.csrf }
}

/**
 * A mount links a blob from another repository: with authentication on, only from a named one the
 * user may pull (Distribution's rule); otherwise the upload starts as a plain one.
 */
export function mountAllowed (req: FastifyRequest): boolean {
  const access = decisions.get(req)
  if (access === undefined) return true
  const from = (req.query as Record<string, unknown>).from
  return typeof from === 'string' && access.pullable(from)
}

/** The image CID the guard resolved `repository` (a name's) to for this request, if it did. */
export function imageOfNameFor (req: FastifyRequest, repository: string): string | undefined {
  return decisions.get(req)?.imageOfName?.(repository)
}
