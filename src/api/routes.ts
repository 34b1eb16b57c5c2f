import type { FastifyInstance } from 'fastify'
import type { Fleet } from '../mesh/fleet.ts'
import type { LocalManifests, LocalTags } from '../replication/images.ts'
import { registerDatastoreRoutes } from './datastore-routes.ts'
import { apiErrorResponses } from './errors.ts'
import { addressesSchema, nodeSchema } from './node-schema.ts'
import { API_PREFIX, configureApiScope } from './scope.ts'
import { registerStrategyRoutes } from './strategy-routes.ts'

export interface ApiRoutesOptions {
  /** The fleet, once (and if) the node joined one. */
  fleet: () => Fleet | undefined
  /** This node's own tags and manifests: images of a node outside a mesh, and image checks. */
  local?: LocalTags & LocalManifests
}

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
  required: ['self', 'peers'],
  properties: {
    self: {
      type: ['object', 'null'],
      description: 'This node in the mesh; null when it is not in one',
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

function registerFleetRoutes (api: FastifyInstance, { fleet }: ApiRoutesOptions): void {
  api.get('/peers', {
    schema: {
      tags: ['mesh'],
      summary: 'This node\'s libp2p identity and the peers it is connected to',
      response: { 200: peersSchema, ...apiErrorResponses }
    }
  }, async () => {
    const current = fleet()
    if (current === undefined) return { self: null, peers: [] }
    return { self: { id: current.mesh.peerId, addresses: current.mesh.addresses }, peers: await current.peers() }
  })
  api.get('/nodes', {
    schema: {
      tags: ['mesh'],
      summary: 'The fleet\'s nodes from the replicated inventory, by name',
      response: { 200: nodesSchema, ...apiErrorResponses }
    }
  }, async () => {
    const current = fleet()
    return { nodes: current === undefined ? [] : await current.nodes() }
  })
}
