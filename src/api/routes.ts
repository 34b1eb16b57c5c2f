import type { FastifyInstance } from 'fastify'
import { registerDatastoreRoutes } from './datastore-routes.ts'
import { registerEventRoutes } from './event-routes.ts'
import { apiErrorResponses } from './errors.ts'
import { idParams, mirrorsSchema, nodesSchema, peersSchema, statementSchema, trustSchema, type MirrorsAnswer, type NodesAnswer, type PeersAnswer, type StatementBody, type TrustAnswer } from './schemas.ts'
import { joinedMesh, type ApiRoutesOptions } from './membership.ts'
import { API_PREFIX, configureApiScope } from './scope.ts'
import { registerStrategyRoutes } from './strategy-routes.ts'
import { registerNameRoutes } from './name-routes.ts'

export type { ApiRoutesOptions, FleetView, LocalImages, MeshApi } from './membership.ts'

/**
 * The management API under /api/v1/, as one encapsulated plugin: its JSON body parser and error
 * handlers apply to its routes only, never to /v2 or /ipfs. Route paths inside are relative to
 * the prefix.
 */
export function registerApiRoutes (app: FastifyInstance, options: ApiRoutesOptions): void {
  app.register(async (api: FastifyInstance) => {
    configureApiScope(api)
    registerFleetRoutes(api, options)
    registerTrustRoutes(api, options)
    api.get('/mirrors', {
      schema: { tags: ['registry'], summary: 'The upstream registries this node mirrors', response: { 200: mirrorsSchema, ...apiErrorResponses } }
    }, async (): Promise<MirrorsAnswer> => ({ mirrors: options.mirrors.map(({ registry, url }) => ({ registry, url })) }))
    registerStrategyRoutes(api, options)
    registerNameRoutes(api, options)
    registerDatastoreRoutes(api, options)
    registerEventRoutes(api, options)
  }, { prefix: API_PREFIX })
}

function registerFleetRoutes (api: FastifyInstance, { membership }: ApiRoutesOptions): void {
  api.get('/peers', {
    schema: {
      tags: ['mesh'],
      summary: 'This node\'s libp2p identity and the peers it is connected to',
      response: { 200: peersSchema, ...apiErrorResponses }
    }
  }, async (): Promise<PeersAnswer> => {
    const phase = membership.mesh
    if (phase.state !== 'joined') return { mesh: phase.state, self: null, peers: [] }
    return { mesh: phase.state, self: phase.parts.fleet.self(), peers: await phase.parts.fleet.peers() }
  })
  api.get('/nodes', {
    schema: {
      tags: ['mesh'],
      summary: 'The fleet\'s nodes by name: identity from the catalogue, presence (disk, images, progress) and standing (live, silent, gone)',
      response: { 200: nodesSchema, ...apiErrorResponses }
    }
  }, async (): Promise<NodesAnswer> => {
    const phase = membership.mesh
    if (phase.state === 'off') return { nodes: [] }
    return { nodes: await joinedMesh(membership).fleet.nodes() }
  })
  api.delete<{ Params: { id: string } }>('/nodes/:id', {
    schema: {
      tags: ['mesh'],
      summary: 'Forget a node that left for good, fleet-wide, now (without waiting for forgetAfterHours); refused for this node and for a node that still shows life',
      params: idParams,
      response: { 204: { description: 'Forgotten', type: 'null' }, ...apiErrorResponses }
    }
  }, async (req, reply) => {
    await joinedMesh(membership).fleet.forget(req.params.id)
    return await reply.code(204).send()
  })
}

function registerTrustRoutes (api: FastifyInstance, { membership }: ApiRoutesOptions): void {
  api.get('/fleet/trust', {
    schema: {
      tags: ['mesh'],
      summary: 'The operator key this node trusts, this node\'s certificate, and every certificate and revocation it holds',
      response: { 200: trustSchema, ...apiErrorResponses }
    }
  }, async (): Promise<TrustAnswer> => joinedMesh(membership).fleet.trust())
  api.post<{ Body: StatementBody }>('/fleet/statements', {
    schema: {
      tags: ['mesh'],
      summary: 'Hand the fleet an operator\'s certificate or revocation (`shoal fleet admit`, `shoal fleet revoke`); it takes effect on every node without a restart',
      body: statementSchema,
      response: { 201: statementSchema, ...apiErrorResponses }
    }
  }, async (req, reply) => {
    const statement = await joinedMesh(membership).fleet.addStatement(req.body)
    return await reply.code(201).send(statement)
  })
}
