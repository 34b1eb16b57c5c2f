// Signed-in browsers (issue 12): the web UI's login sets a session cookie (HttpOnly,
// SameSite=Strict, Secure under TLS); every change made with it carries the session's CSRF token.
// Sessions live in memory: a restart signs everyone out, which is the safe way to lose them.
import { randomBytes, timingSafeEqual } from 'node:crypto'

export const SESSION_COOKIE = 'shoal_session'
export const CSRF_HEADER = 'x-csrf-token'
const DEFAULT_TTL_MS = 8 * 3_600_000
const MAX_SESSIONS = 10_000

export interface Session {
  id: string
  user: string
  /** Sent back by the UI's scripts with every change: a cross-site request cannot read it. */
  csrf: string
  expiresAt: number
}

export class Sessions {
  private readonly sessions = new Map<string, Session>()
  private readonly ttlMs: number

  constructor (ttlMs = DEFAULT_TTL_MS) {
    this.ttlMs = ttlMs
  }

  get ttlSeconds (): number {
    return Math.floor(this.ttlMs / 1000)
  }

  create (user: string): Session {
    this.sweep()
    // Past the cap the oldest session goes: a flood of logins cannot grow memory without bound.
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string)
    const session = { id: randomBytes(32).toString('base64url'), user, csrf: randomBytes(32).toString('base64url'), expiresAt: Date.now() + this.ttlMs }
    this.sessions.set(session.id, session)
    return session
  }

  get (id: string | undefined): Session | undefined {
    if (id === undefined) return undefined
    const session = this.sessions.get(id)
    if (session === undefined) return undefined
    if (session.expiresAt <= Date.now()) {
      this.sessions.delete(id)
      return undefined
    }
    return session
  }

  delete (id: string | undefined): void {
    if (id !== undefined) this.sessions.delete(id)
  }

  private sweep (): void {
    const now = Date.now()
    for (const [id, session] of this.sessions) if (session.expiresAt <= now) this.sessions.delete(id)
  }
}

/** Whether `given` is the session's CSRF token (in constant time). */
export function csrfMatches (session: Session, given: unknown): boolean {
  if (typeof given !== 'string') return false
  const expected = Buffer.from(session.csrf)
  const actual = Buffer.from(given)
  return actual.length === expected.length && timingSafeEqual(actual, expected)
}
