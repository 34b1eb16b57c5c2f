// The replicated catalogue as it is, read-only, under /api/v1/datastore (what DistroMash called the
// distributed datastore): each database's current entries with when and by whom each was written.
import type { FastifyInstance } from 'fastify'
import type { CatalogueDatabase } from '../catalogue/catalogue.ts'
import { apiErrorResponses } from './errors.ts'
import { datastoreSchema, type Datastore } from './schemas.ts'
import { joinedMesh, type ApiRoutesOptions } from './membership.ts'

/** The wall-clock time each kind of record carries (ordering uses the log's clock, not these). */
const WRITTEN_AT_FIELDS = ['heartbeatAt', 'pushedAt', 'updatedAt'] as const

export function registerDatastoreRoutes (api: FastifyInstance, { membership }: ApiRoutesOptions): void {
  api.get('/datastore', {
    schema: {
      tags: ['catalogue'],
      summary: 'The replicated catalogue\'s databases as they are: every entry with when and by which node it was written',
      response: { 200: datastoreSchema, ...apiErrorResponses }
    }
  }, async (): Promise<Datastore> => {
    const { fleet } = joinedMesh(membership, 'this node is not in a mesh: there is no replicated catalogue')
    return describeDatastore(await fleet.databases())
  })
}

/**
 * Names each entry's writer: every node writes its own identity record, so the writer of the
 * record keyed by a node's id is that node's identity.
 */
export function describeDatastore (databases: readonly CatalogueDatabase[]): Datastore {
  const nodeOfIdentity = new Map<string, { node: string, name?: string }>()
  for (const entry of databases.find(db => db.name === 'shoal.nodes')?.entries ?? []) {
    if (entry.clock === undefined) continue
    const name = (entry.value as { name?: unknown }).name
    nodeOfIdentity.set(entry.clock.id, { node: entry.key, ...(typeof name === 'string' ? { name } : {}) })
  }
  return {
    databases: databases.map(db => ({
      name: db.name,
      address: db.address,
      entries: db.entries.map(entry => {
        const writtenAt = writtenAtOf(entry.value)
        return {
          ...entry,
          ...(entry.clock === undefined ? {} : { writer: { identity: entry.clock.id, ...nodeOfIdentity.get(entry.clock.id) } }),
          ...(writtenAt === undefined ? {} : { writtenAt })
        }
      })
    }))
  }
}

function writtenAtOf (value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  for (const field of WRITTEN_AT_FIELDS) {
    const at = (value as Record<string, unknown>)[field]
    if (typeof at === 'string') return at
  }
  return undefined
}
