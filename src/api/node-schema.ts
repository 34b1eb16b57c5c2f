// The schema of a node record as the API sends it, shared by the fleet's and the strategies' routes.

export const addressesSchema = { type: 'array', items: { type: 'string' }, description: 'libp2p multiaddrs' } as const

// Written by other nodes' reconcilers: nothing is required, so an odd record is still sent, not a 500.
export const placementStateSchema = {
  type: 'object',
  additionalProperties: true,
  properties: {
    image: { type: 'string', description: 'The strategy\'s image as written' },
    imageCid: { type: 'string', description: 'The image CID the node resolved it to' },
    state: { type: 'string', enum: ['fetching', 'held', 'failed'] },
    bytesDone: { type: 'integer' },
    bytesTotal: { type: 'integer' },
    reason: { type: 'string', description: 'Why it failed' },
    updatedAt: { type: 'string', format: 'date-time' }
  }
} as const

// Records come from the replicated catalogue, where nodes of a newer version may add fields:
// pass them through rather than strip them.
export const nodeSchema = {
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
    replication: {
      type: 'object',
      additionalProperties: placementStateSchema,
      description: 'Strategy id -> the node\'s progress with that strategy\'s image, as its reconciler reports it'
    },
    silent: { type: 'boolean', description: 'No heartbeat for 30 s' },
    self: { type: 'boolean', description: 'This is the node answering' }
  }
} as const
