// Host and Origin checks (issue 12), on with or without authentication: a page on another site
// must not reach a node through DNS rebinding (its name resolving to the node's address, so the
// browser sends that name as Host), nor change anything with a cross-site request (a "simple"
// POST needs no preflight).
import { hostname, networkInterfaces } from 'node:os'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { DeniedError } from '../oci/errors.ts'

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS'])
/**
 * Every address of 127.0.0.0/8 is this machine's loopback, listed by the interface or not (a
 * client on 127.0.0.2 is as local as one on 127.0.0.1); a rebinding page names a host, not these.
 */
const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/

/**
 * What a node answers to by default: its listen host (unless it listens on every address), the
 * machine's names and addresses when it does, localhost and the loopback addresses, and the
 * advertised URL's host.
 */
export function defaultAllowedHosts (listenHost: string, advertiseUrl: string | undefined): string[] {
  const hosts = new Set(['localhost', '127.0.0.1', '::1'])
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::' || listenHost === ''
  if (!wildcard) hosts.add(listenHost.toLowerCase())
  else {
    hosts.add(hostname().toLowerCase())
    for (const addresses of Object.values(networkInterfaces())) for (const address of addresses ?? []) hosts.add(address.address.toLowerCase())
  }
  if (advertiseUrl !== undefined) hosts.add(new URL(advertiseUrl).hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase())
  return [...hosts]
}

/** The host name of a Host header or an Origin's host, lower case, without port or IPv6 brackets. */
function hostOf (authority: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(authority)
  if (bracketed !== null) return (bracketed[1] ?? '').toLowerCase()
  return authority.replace(/:\d+$/, '').toLowerCase()
}

export function registerHostCheck (app: FastifyInstance, allowed: readonly string[]): void {
  // localhost always: no page elsewhere can make it name another machine, and the node's own
  // in-process reads (the web UI's) name it.
  const names = new Set([...allowed, 'localhost'].map(name => name.toLowerCase().replace(/^\[(.*)\]$/, '$1')))
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const host = req.headers.host
    // HTTP/1.0 clients may send none: nothing to check, and no browser does that.
    if (host !== undefined && !names.has(hostOf(host)) && !LOOPBACK_V4.test(hostOf(host))) {
      throw new DeniedError(`Host ${JSON.stringify(host)} is not a name of this node (allowedHosts: ${[...names].join(', ')})`)
    }
    if (SAFE_METHODS.has(req.method)) return
    // A browser names the page that sent a request: only this node's own pages (same origin: the
    // host and port the request went to) may change anything. Other clients send no Origin.
    const origin = req.headers.origin
    if (origin !== undefined) {
      let sameOrigin: boolean
      try {
        sameOrigin = origin !== 'null' && new URL(origin).host.toLowerCase() === (host ?? '').toLowerCase()
      } catch {
        sameOrigin = false
      }
      if (!sameOrigin) throw new DeniedError(`a request from ${origin} may not change anything here (cross-origin)`)
    } else if (req.headers['sec-fetch-site'] === 'cross-site') {
      throw new DeniedError('a cross-site request may not change anything here')
    }
  })
}
