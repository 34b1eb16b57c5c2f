import type { FastifyInstance } from 'fastify'
import type { Fleet } from '../mesh/fleet.ts'

export interface ApiRoutesOptions {
  /** The fleet, once (and if) the node joined one. */
  fleet: () => Fleet | undefined
}

/** The management API under /api/v1/ (peers and nodes so far). */
export function registerApiRoutes (app: FastifyInstance, { fleet }: ApiRoutesOptions): void {
  app.get('/api/v1/peers', async (_req, reply) => {
    const current = fleet()
    if (current === undefined) return await reply.send({ self: null, peers: [] })
    return await reply.send({ self: { id: current.mesh.peerId, addresses: current.mesh.addresses }, peers: await current.peers() })
  })
  app.get('/api/v1/nodes', async (_req, reply) => {
    const current = fleet()
    return await reply.send({ nodes: current === undefined ? [] : await current.nodes() })
  })
}
