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
  required: ['id', 'name', 'url', 'addresses', 'labels', 'images', 'standing', 'silent', 'gone', 'self'],
  properties: {
    id: { type: 'string', description: 'libp2p peer id' },
    name: { type: 'string' },
    url: { type: 'string', description: 'Base URL of the node\'s HTTP server' },
    addresses: addressesSchema,
    labels: { type: 'object', additionalProperties: { type: 'string' } },
    disk: {
      type: 'object',
      description: 'From its last presence; absent when it has not been heard since this node started',
      additionalProperties: true,
      required: ['usedBytes', 'freeBytes'],
      properties: { usedBytes: { type: 'integer' }, freeBytes: { type: 'integer' } }
    },
    images: { type: 'array', items: { type: 'string' }, description: 'Image CIDs the node holds' },
    heartbeatAt: { type: 'string', format: 'date-time', description: 'When the node sent its last presence heard here (its clock); absent when it has not been heard since this node started' },
    writer: { type: 'string', description: 'The node\'s catalogue writer key (its OrbitDB identity), from its presence: what `shoal fleet admit` certifies' },
    replication: {
      type: 'object',
      additionalProperties: placementStateSchema,
      description: 'Strategy id -> the node\'s progress with that strategy\'s image, as its reconciler reports it'
    },
    standing: { type: 'string', enum: ['live', 'silent', 'gone'], description: 'live: a sign of life (presence, connection, ping) within three heartbeats; silent: none for longer, still placed on; gone: none for goneAfterSeconds, its share placed elsewhere' },
    silent: { type: 'boolean', description: 'No sign of life for three heartbeats (standing silent or gone)' },
    gone: { type: 'boolean', description: 'No sign of life for goneAfterSeconds: placement no longer counts it' },
    self: { type: 'boolean', description: 'This is the node answering' }
  }
} as const
