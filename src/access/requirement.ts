// What a /v2 request needs, in the Docker token specification's terms: a repository and an action,
// the catalogue, or only a signed-in user (the base endpoint).
import type { Action } from './policy.ts'

export type Requirement =
  | { kind: 'base' }
  | { kind: 'catalog' }
  | { kind: 'repository', name: string, action: Action }

/** The repository a /v2 path names before its resource (names contain slashes; the router reads them the same way). */
const RESOURCE = /^(.+)\/(?:blobs\/uploads\/?|blobs\/uploads\/[^/]+|blobs\/[^/]+|manifests\/[^/]+|tags\/list|referrers\/[^/]+)$/

/**
 * The requirement of a request under /v2, read from the path as the router and the registry's
 * handler read it (decoded after `/v2/`). Anything else, a path no endpoint serves included, needs
 * what the base endpoint needs: the guard fails closed.
 */
export function requirementOf (method: string, url: string, localName: (name: string, ns: string | undefined) => string = name => name): Requirement {
  // A mount's source repository is checked by the upload handler (registry/request-access.ts).
  const [rawPath = '', query = ''] = url.split('?', 2)
  let path: string
  try {
    path = decodeURIComponent(rawPath.slice('/v2/'.length))
  } catch {
    return { kind: 'base' }
  }
  if (path === '_catalog') return { kind: 'catalog' }
  const named = RESOURCE.exec(path)?.[1]
  if (named === undefined) return { kind: 'base' }
  // As the router names it: containerd's ?ns=<registry> puts a mirrored registry's names in its namespace.
  const name = localName(named, new URLSearchParams(query).get('ns') ?? undefined)
  // Cancelling an upload is part of a push (Distribution asks push for it, not delete).
  const upload = /\/blobs\/uploads(\/|$)/.test(path)
  const action: Action = method === 'GET' || method === 'HEAD' ? 'pull' : method === 'DELETE' && !upload ? 'delete' : 'push'
  return { kind: 'repository', name, action }
}

/** A scope as the token specification writes it: `repository:team-a/app:pull,push`. */
export interface Scope { type: string, name: string, actions: string[] }

/** Parses `scope` parameters; each may hold several scopes separated by spaces (as OAuth2 sends them). */
export function parseScopes (values: readonly string[]): Scope[] {
  const scopes: Scope[] = []
  for (const value of values.flatMap(text => text.split(' ')).filter(text => text !== '')) {
    // The name may contain a colon only as a port in a registry host, which repository names never carry.
    const first = value.indexOf(':')
    const last = value.lastIndexOf(':')
    if (first <= 0 || last === first) continue
    scopes.push({ type: value.slice(0, first), name: value.slice(first + 1, last), actions: value.slice(last + 1).split(',').filter(action => action !== '') })
  }
  return scopes
}

export function scopeText (scope: Scope): string {
  return `${scope.type}:${scope.name}:${scope.actions.join(',')}`
}
