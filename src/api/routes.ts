import type { FastifyInstance } from 'fastify'
import type { Fleet } from '../mesh/fleet.ts'
import { apiErrorResponses } from './errors.ts'
import { API_PREFIX, configureApiScope } from './scope.ts'

export interface ApiRoutesOptions {
  /** The fleet, once (and if) the node joined one. */
  fleet: () => Fleet | undefined
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
  }, { prefix: API_PREFIX })
}

const addressesSchema = { type: 'array', items: { type: 'string' }, description: 'libp2p multiaddrs' } as const

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

// Records come from the replicated catalogue, where nodes of a newer version may add fields:
// pass them through rather than strip them.
const nodeSchema = {
  type: 'object',
  additionalProperties: true,
  required: ['id', 'name', 'url', 'addresses', 'labels', 'disk', 'images', 'heartbeatAt', 'silent', 'self'],
  properties: {
    id: { type: 'string', description: 'libp2p peer id' },
    name: { type: 'string' },
    url: { type: 'string', description: 'Base URL of the node\'s HTTP server' },
    addresses: addressesSchema,
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    disk: {
      type: 'object',
      additionalProperties: true,
      required: ['usedBytes', 'freeBytes'],
      properties: { usedBytes: { type: 'integer' }, freeBytes: { type: 'integer' } }
    },
    images: { type: 'array', items: { type: 'string' }, description: 'Image CIDs the node holds' },
    heartbeatAt: { type: 'string', format: 'date-time' },
    silent: { type: 'boolean', description: 'No heartbeat for 30 s' },
    self: { type: 'boolean', description: 'This is the node answering' }
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
