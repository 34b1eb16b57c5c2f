import type { FastifyInstance } from 'fastify'
import { registerDatastoreRoutes } from './datastore-routes.ts'
import { apiErrorResponses } from './errors.ts'
import { joinedMesh, type ApiRoutesOptions } from './membership.ts'
import { addressesSchema, nodeSchema } from './node-schema.ts'
import { API_PREFIX, configureApiScope } from './scope.ts'
import { registerStrategyRoutes } from './strategy-routes.ts'

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
    registerStrategyRoutes(api, options)
    registerDatastoreRoutes(api, options)
  }, { prefix: API_PREFIX })
}

const peerSchema = {
  type: 'object',
  required: ['id', 'addresses'],
  properties: {
    id: { type: 'string', description: 'libp2p peer id' },
    addresses: addressesSchema,
    latencyMs: { type: 'number', description: 'Round trip of a libp2p ping; absent when the peer did not answer' }
  }
} as const

const peersSchema = {
  description: 'This node and its peers',
  type: 'object',
  required: ['mesh', 'self', 'peers'],
  properties: {
    mesh: {
      type: 'string',
      enum: ['off', 'joining', 'joined', 'left'],
      description: 'off: not configured for a mesh; joining: configured, not joined yet; joined; left: stopping'
    },
    self: {
      type: ['object', 'null'],
      description: 'This node in the mesh; null until it has joined one',
      required: ['id', 'addresses'],
      properties: { id: { type: 'string' }, addresses: addressesSchema }
    },
    peers: { type: 'array', items: peerSchema, description: 'Peers this node is connected to' }
  }
} as const

const nodesSchema = {
  description: 'The fleet\'s nodes; empty when this node is not in a mesh',
  type: 'object',
  required: ['nodes'],
  properties: { nodes: { type: 'array', items: nodeSchema } }
} as const

function registerFleetRoutes (api: FastifyInstance, { membership }: ApiRoutesOptions): void {
  api.get('/peers', {
    schema: {
      tags: ['mesh'],
      summary: 'This node\'s libp2p identity and the peers it is connected to',
      response: { 200: peersSchema, ...apiErrorResponses }
    }
  }, async () => {
    const phase = membership.mesh
    if (phase.state !== 'joined') return { mesh: phase.state, self: null, peers: [] }
    return { mesh: phase.state, self: phase.parts.fleet.self(), peers: await phase.parts.fleet.peers() }
  })
  api.get('/nodes', {
    schema: {
      tags: ['mesh'],
      summary: 'The fleet\'s nodes from the replicated inventory, by name',
      response: { 200: nodesSchema, ...apiErrorResponses }
    }
  }, async () => {
    const phase = membership.mesh
    if (phase.state === 'off') return { nodes: [] }
    return { nodes: await joinedMesh(membership).fleet.nodes() }
  })
}
