// The pages are built from the management API, called in process: they show exactly what the API
// answers (its refusals too), and need nothing of the node but its HTTP server.
import type { FastifyInstance } from 'fastify'

export type ApiAnswer<T> = { ok: true, body: T } | { ok: false, status: number, message: string }

/** What the pages read from /api/v1. */
export interface ManagementApi {
  get<T>(path: string): Promise<ApiAnswer<T>>
}

/** `credentials`: the page request's Authorization and Cookie, so the API answers as it would answer that user. */
export function inProcessApi (app: FastifyInstance, credentials: { authorization?: string, cookie?: string } = {}): ManagementApi {
  const passed = Object.fromEntries(Object.entries(credentials).filter(([, value]) => value !== undefined)) as Record<string, string>
  return {
    async get<T> (path: string): Promise<ApiAnswer<T>> {
      const response = await app.inject({ method: 'GET', url: `/api/v1${path}`, headers: { accept: 'application/json', ...passed } })
      const body: unknown = response.body === '' ? undefined : JSON.parse(response.body)
      if (response.statusCode === 200) return { ok: true, body: body as T }
      const message = (body as { message?: unknown } | undefined)?.message
      return { ok: false, status: response.statusCode, message: typeof message === 'string' ? message : `HTTP ${response.statusCode}` }
    }
  }
}

/** The body of a successful answer, or a fallback (the refusal is shown elsewhere or not at all). */
export function bodyOr<T> (answer: ApiAnswer<T>, fallback: T): T {
  return answer.ok ? answer.body : fallback
}

// The API's answers as the pages read them: derived from the API's schemas (src/api/schemas.ts).
export type { ApiNode, Datastore, ImagesAnswer, MirrorsAnswer, NodesAnswer, PeersAnswer, PublishedNamesAnswer, StatusAnswer, StrategiesAnswer, TrustAnswer } from '../api/schemas.ts'
export type { DesiredNodeAnswer as DesiredNode, DroppingNodeAnswer as DroppingNode, ListedStrategy as ApiStrategy } from '../api/schemas.ts'
