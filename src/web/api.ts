// The pages are built from the management API, called in process: they show exactly what the API
// answers (its refusals too), and need nothing of the node but its HTTP server.
import type { FastifyInstance } from 'fastify'
import type { Datastore } from '../api/datastore-routes.ts'
import type { FleetNode } from '../mesh/fleet.ts'
import type { PeerStatus } from '../mesh/mesh.ts'
import type { ImageListing } from '../replication/images.ts'
import type { StatusSummary } from '../replication/strategy-service.ts'

export type ApiAnswer<T> = { ok: true, body: T } | { ok: false, status: number, message: string }

/** What the pages read from /api/v1. */
export interface ManagementApi {
  get<T>(path: string): Promise<ApiAnswer<T>>
}

export function inProcessApi (app: FastifyInstance): ManagementApi {
  return {
    async get<T> (path: string): Promise<ApiAnswer<T>> {
      const response = await app.inject({ method: 'GET', url: `/api/v1${path}`, headers: { accept: 'application/json' } })
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

// The API's answers as the pages read them (the schemas in src/api/ say what each field means).

export type ApiNode = FleetNode
export interface NodesAnswer { nodes: ApiNode[] }
export interface PeersAnswer { self: { id: string, addresses: string[] } | null, peers: PeerStatus[] }
export interface ImagesAnswer { images: ImageListing[] }
export type { Datastore }

export interface ApiStrategy {
  id: string
  kind: string
  image: string
  percentage?: number
  target?: string
  replicas?: number
  selector?: Record<string, string>
  count?: number
  createdAt: string
  updatedAt: string
  summary?: StatusSummary
}

export interface StrategiesAnswer { strategies: ApiStrategy[] }

export interface DesiredNode {
  node: string
  name: string
  state: 'pending' | 'fetching' | 'held' | 'failed'
  imageCid?: string
  bytesDone?: number
  bytesTotal?: number
  reason?: string
  updatedAt?: string
}

export interface DroppingNode {
  node: string
  name: string
  state: 'dropping'
  reported: 'fetching' | 'held' | 'failed'
  silent: boolean
}

export interface StatusAnswer { strategy: ApiStrategy, desired: DesiredNode[], extra: DroppingNode[] }
