// The web UI's sign-in (issue 12): POST /login checks the password and sets the session cookie,
// POST /logout ends the session. The pages themselves are the web UI's (web/pages/login.ts).
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { parseCookie, stringifySetCookie } from 'cookie'
import { acceptForms, formOf } from './form-body.ts'
import type { Htpasswd } from './htpasswd.ts'
import { SESSION_COOKIE, csrfMatches, type Sessions } from './sessions.ts'

export const LOGIN_PATH = '/login'
export const LOGOUT_PATH = '/logout'

export interface LoginOptions {
  users: Htpasswd
  sessions: Sessions
  /** Under TLS the cookie is Secure: a browser never sends it over plain HTTP. */
  secure: boolean
  /** The login page, with what went wrong and where to go after. */
  renderLogin: (problem: string | undefined, next: string) => string
}

/** The session cookie's value in a request, if any. */
export function sessionIdOf (req: FastifyRequest): string | undefined {
  const header = req.headers.cookie
  return header === undefined ? undefined : parseCookie(header)[SESSION_COOKIE]
}

/**
 * Where to go after signing in: a path of this node only (never another site). Resolved against
 * a placeholder origin, so `//x`, `/\x` and control characters browsers drop (`/\t/x`) cannot
 * leave it.
 */
export function safeNext (next: unknown): string {
  if (typeof next !== 'string' || !next.startsWith('/') || [...next].some(c => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f || c === '\\' || /\s/.test(c))) return '/'
  try {
    const url = new URL(next, 'http://shoal.invalid')
    return url.origin === 'http://shoal.invalid' ? `${url.pathname}${url.search}` : '/'
  } catch {
    return '/'
  }
}

export function registerLoginRoutes (app: FastifyInstance, options: LoginOptions): void {
  const page = async (reply: FastifyReply, status: number, problem: string | undefined, next: string): Promise<FastifyReply> => await reply.code(status)
    .headers({ 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'content-security-policy': 'default-src \'self\'; form-action \'self\'; frame-ancestors \'none\'', 'referrer-policy': 'same-origin' })
    .send(options.renderLogin(problem, next))
  app.register(async (scope) => {
    acceptForms(scope, 16 * 1024)
    scope.get(LOGIN_PATH, { schema: { hide: true } }, async (req, reply) => await page(reply, 200, undefined, safeNext((req.query as Record<string, unknown>).next)))
    scope.post(LOGIN_PATH, { schema: { hide: true } }, async (req, reply) => {
      const form = formOf(req)
      const user = form.get('username') ?? ''
      const next = safeNext(form.get('next'))
      if (user === '' || !(await options.users.verify(user, form.get('password') ?? ''))) return await page(reply, 401, 'Wrong user name or password.', next)
      options.sessions.delete(sessionIdOf(req))
      const session = options.sessions.create(user)
      reply.header('set-cookie', stringifySetCookie({ name: SESSION_COOKIE, value: session.id, httpOnly: true, sameSite: 'strict', secure: options.secure, path: '/', maxAge: options.sessions.ttlSeconds }))
      return await reply.code(303).header('location', next).header('cache-control', 'no-store').send()
    })
    // A form post with the session's CSRF token in its body (a form cannot set headers).
    scope.post(LOGOUT_PATH, { schema: { hide: true } }, async (req, reply) => {
      const form = formOf(req)
      const id = sessionIdOf(req)
      const session = options.sessions.get(id)
      if (session !== undefined && csrfMatches(session, form.get('csrf'))) options.sessions.delete(id)
      reply.header('set-cookie', stringifySetCookie({ name: SESSION_COOKIE, value: '', httpOnly: true, sameSite: 'strict', secure: options.secure, path: '/', maxAge: 0 }))
      return await reply.code(303).header('location', LOGIN_PATH).header('cache-control', 'no-store').send()
    })
  })
}
