// /healthz and /readyz for orchestrators, beside the faces rather than under /api/v1 (probes
// expect these paths at the root). Neither is in the OpenAPI document, nor logged as an error.
import type { FastifyInstance } from 'fastify'
import type { Readiness } from '../lifecycle.ts'

export interface HealthSource {
  readiness(): Readiness
  readonly mesh: { state: string }
}

export function registerHealthRoutes (app: FastifyInstance, lifecycle: HealthSource): void {
  const hide = { schema: { hide: true } }
  // Alive: the process answers HTTP. Nothing else is checked, so a slow join never gets the node
  // restarted by a liveness probe.
  app.get('/healthz', hide, async (_req, reply) => await reply.header('cache-control', 'no-store').send({ status: 'alive' }))
  // Ready: storage open, and in a mesh node the mesh joined and the catalogue open.
  app.get('/readyz', hide, async (_req, reply) => {
    const readiness = lifecycle.readiness()
    const body = { ...readiness, mesh: lifecycle.mesh.state }
    return await reply.code(readiness.ready ? 200 : 503).header('cache-control', 'no-store').send(body)
  })
}
