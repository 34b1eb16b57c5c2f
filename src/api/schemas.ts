// Every shape the management API sends or takes, as JSON schemas, in one place: fastify validates
// and serializes with them, the OpenAPI document is made from them, and the answer types the web UI
// and the CLI read are derived from them (json-schema-to-ts), so no shape is written twice.
import type { FromSchema } from 'json-schema-to-ts'
import { STRATEGY_KINDS } from '../catalogue/strategy-record.ts'
import { addressesSchema, nodeSchema, placementStateSchema } from './node-schema.ts'

export const peerSchema = {
  type: 'object', additionalProperties: false,
  required: ['id', 'addresses'],
  properties: {
    id: { type: 'string', description: 'libp2p peer id' },
    addresses: addressesSchema,
    latencyMs: { type: 'number', description: 'Round trip of a libp2p ping; absent when the peer did not answer' }
  }
} as const

export const peersSchema = {
  description: 'This node and its peers',
  type: 'object', additionalProperties: false,
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

export const nodesSchema = {
  description: 'The fleet\'s nodes; empty when this node is not in a mesh',
  type: 'object', additionalProperties: false,
  required: ['nodes'],
  properties: { nodes: { type: 'array', items: nodeSchema } }
} as const

export const selectorSchema = { type: 'object', additionalProperties: { type: 'string' }, description: 'Labels a node must all have, such as { "zone": "eu" }' } as const

export const strategyProperties = {
  kind: { type: 'string', enum: STRATEGY_KINDS },
  image: { type: 'string', description: '`repo:tag` (follows the tag), `repo@sha256:…` or an image CID' },
  percentage: { type: 'number', description: 'percentage: share of the member nodes, 1 to 100, rounded up, at least one node' },
  target: { type: 'string', description: 'target: a node\'s id or name' },
  replicas: { type: 'integer', description: 'replicas: how many nodes' },
  selector: selectorSchema,
  count: { type: 'integer', description: 'labels: at most this many of the matching nodes' }
} as const

export const strategySchema = {
  type: 'object', additionalProperties: false,
  required: ['id', 'kind', 'image', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'string' },
    ...strategyProperties,
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' }
  }
} as const

export const placedNodeProperties = {
  node: { type: 'string', description: 'libp2p peer id' },
  name: { type: 'string' }
} as const

export const placementSchema = {
  type: 'array',
  description: 'The nodes that must hold the image, best-ranked first',
  items: { type: 'object', additionalProperties: false, required: ['node', 'name'], properties: placedNodeProperties }
} as const

export const createdSchema = {
  type: 'object', additionalProperties: false,
  required: ['strategy', 'placement'],
  properties: { strategy: strategySchema, placement: placementSchema }
} as const

export const dryRunSchema = {
  type: 'object', additionalProperties: false,
  required: ['strategy', 'placement'],
  properties: {
    strategy: {
      type: 'object', additionalProperties: false,
      required: ['id', 'kind', 'image'],
      properties: { id: { type: 'null', description: 'A dry run stores nothing' }, ...strategyProperties }
    },
    placement: placementSchema
  }
} as const

export const summarySchema = {
  type: 'object', additionalProperties: false,
  description: 'How many desired nodes are in each state, and how many others still hold the image',
  required: ['desired', 'pending', 'fetching', 'held', 'failed', 'dropping'],
  properties: {
    desired: { type: 'integer' },
    pending: { type: 'integer' },
    fetching: { type: 'integer' },
    held: { type: 'integer' },
    failed: { type: 'integer' },
    dropping: { type: 'integer' }
  }
} as const

export const statusSchema = {
  type: 'object', additionalProperties: false,
  required: ['strategy', 'desired', 'extra'],
  properties: {
    strategy: strategySchema,
    desired: {
      type: 'array',
      description: 'The nodes placement chooses now, and how far each got (pending: it has said nothing yet)',
      items: {
        type: 'object', additionalProperties: false,
        required: ['node', 'name', 'state'],
        properties: {
          ...placedNodeProperties,
          state: { type: 'string', enum: ['pending', 'fetching', 'held', 'failed'] },
          imageCid: { type: 'string' },
          bytesDone: { type: 'integer' },
          bytesTotal: { type: 'integer' },
          reason: { type: 'string', description: 'Why it failed' },
          updatedAt: { type: 'string', format: 'date-time' }
        }
      }
    },
    extra: {
      type: 'array',
      description: 'Nodes placement no longer chooses that still report the image: they are to drop it',
      items: {
        type: 'object', additionalProperties: false,
        required: ['node', 'name', 'state', 'reported', 'silent'],
        properties: {
          ...placedNodeProperties,
          state: { type: 'string', enum: ['dropping'] },
          reported: { type: 'string', enum: ['fetching', 'held', 'failed'], description: 'What the node last said' },
          silent: { type: 'boolean', description: 'No heartbeat for 30 s: it may be gone rather than dropping' }
        }
      }
    }
  }
} as const

export const imageSchema = {
  type: 'object', additionalProperties: false,
  required: ['repository', 'tag', 'digest', 'imageCid', 'heldBy', 'heldHere'],
  properties: {
    repository: { type: 'string' },
    tag: { type: 'string' },
    digest: { type: 'string', description: 'Manifest digest' },
    imageCid: { type: 'string', description: 'CID of the image\'s OCI layout directory' },
    node: { type: 'string', description: 'Peer id of the node it was pushed to (absent outside a mesh)' },
    pushedAt: { type: 'string', format: 'date-time' },
    pushedBy: { type: 'string', description: 'The signed-in user who pushed it (absent without authentication)' },
    heldBy: { type: 'array', items: { type: 'string' }, description: 'Ids of the nodes that hold the image whole (outside a mesh: none, see heldHere)' },
    heldHere: { type: 'boolean', description: 'The node answering holds the image whole' }
  }
} as const

export const strategiesSchema = {
  type: 'object', additionalProperties: false,
  required: ['strategies'],
  properties: {
    strategies: {
      type: 'array',
      items: { ...strategySchema, required: [...strategySchema.required, 'summary'], properties: { ...strategySchema.properties, summary: summarySchema } }
    }
  }
} as const

export const imagesSchema = { type: 'object', additionalProperties: false, required: ['images'], properties: { images: { type: 'array', items: imageSchema } } } as const

export const holdingsSchema = {
  type: 'object', additionalProperties: false,
  required: ['node', 'strategies', 'images'],
  properties: {
    node: nodeSchema,
    strategies: {
      type: 'array',
      description: 'The node\'s progress per strategy, and whether the strategy still places the image there',
      items: {
        type: 'object', additionalProperties: false,
        required: ['strategy', 'known', 'desired'],
        properties: {
          strategy: { type: 'string', description: 'Strategy id' },
          known: { type: 'boolean', description: 'The strategy still exists' },
          desired: { type: 'boolean', description: 'Placement still chooses this node' },
          ...placementStateSchema.properties
        }
      }
    },
    images: {
      type: 'array',
      description: 'The images the node\'s inventory lists, with why: the strategies it holds each for (none: pushed there)',
      items: {
        type: 'object', additionalProperties: false,
        required: ['imageCid', 'tags', 'strategies'],
        properties: {
          imageCid: { type: 'string' },
          tags: { type: 'array', items: { type: 'string' }, description: '`repo:tag` of the catalogue that point at it' },
          strategies: { type: 'array', items: { type: 'string' } }
        }
      }
    }
  }
} as const

export const idParams = { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string' } } } as const

export const createBodySchema = {
  type: 'object', additionalProperties: false,
  description: 'Shoal\'s form (`image`, `kind` and the kind\'s fields) or DistroMash\'s, unchanged (`nametag`, `type`, `percentage`, `target`, `execute`); an unknown field is refused',
  properties: {
    ...strategyProperties,
    selector: { anyOf: [selectorSchema, { type: 'string' }], description: 'Labels such as { "zone": "eu" } or "zone=eu,tier=edge"' },
    count: { type: ['integer', 'null'], description: strategyProperties.count.description },
    nametag: { type: 'string', description: 'DistroMash\'s name for image' },
    type: { type: 'string', enum: STRATEGY_KINDS, description: 'DistroMash\'s name for kind' },
    execute: { type: 'boolean', description: 'false: a dry run, placement is shown and nothing is stored (default true)' }
  }
} as const

export const datastoreSchema = {
  type: 'object', additionalProperties: false,
  required: ['databases'],
  properties: {
    databases: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false,
        required: ['name', 'address', 'entries'],
        properties: {
          name: { type: 'string', description: 'shoal.tags, shoal.nodes or shoal.strategies' },
          address: { type: 'string', description: 'OrbitDB address, the same on every node' },
          entries: {
            type: 'array',
            description: 'Current entries by key: the newest write of each key in the log\'s order (deleted keys are left out)',
            items: {
              type: 'object', additionalProperties: false,
              required: ['key', 'value'],
              properties: {
                key: { type: 'string' },
                value: { description: 'The value as stored' },
                hash: { type: 'string', description: 'CID of the log entry that wrote it (absent when it was not found)' },
                clock: {
                  type: 'object', additionalProperties: false,
                  required: ['id', 'time'],
                  properties: { id: { type: 'string' }, time: { type: 'integer', description: 'Lamport time' } }
                },
                writer: {
                  type: 'object', additionalProperties: false,
                  required: ['identity'],
                  properties: {
                    identity: { type: 'string', description: 'The writer\'s OrbitDB identity (public key)' },
                    node: { type: 'string', description: 'Peer id of the node writing with it' },
                    name: { type: 'string' }
                  }
                },
                writtenAt: { type: 'string', format: 'date-time', description: 'Wall-clock time the record carries (heartbeatAt, pushedAt or updatedAt)' }
              }
            }
          }
        }
      }
    }
  }
} as const

// The answers, as the web UI and the CLI read them.
/** An operator's statement (`shoal fleet admit`, `revoke`): a certificate or a revocation, with the operator key's signature. */
export const statementSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['kind', 'peer', 'signature'],
  properties: {
    kind: { type: 'string', enum: ['certificate', 'revocation'] },
    peer: { type: 'string', minLength: 1, description: 'The node\'s libp2p peer id' },
    writer: { type: 'string', minLength: 1, description: 'certificate: the node\'s catalogue writer key (its OrbitDB identity)' },
    role: { type: 'string', enum: ['member', 'admin'], description: 'certificate: admin nodes also set strategies' },
    issuedAt: { type: 'string', format: 'date-time', description: 'certificate: when the operator signed it' },
    revokedAt: { type: 'string', format: 'date-time', description: 'revocation: when the operator signed it; it ends every certificate of the peer issued at or before it' },
    signature: { type: 'string', minLength: 1, description: 'The operator key\'s Ed25519 signature (base64url)' }
  }
} as const

export const trustSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['operatorKey', 'self', 'statements'],
  properties: {
    operatorKey: { type: ['string', 'null'], description: 'The id of the operator key this node trusts (null: none, any member writes the catalogue)' },
    self: {
      type: 'object',
      additionalProperties: false,
      required: ['writer', 'role'],
      properties: {
        writer: { type: 'string', description: 'This node\'s catalogue writer key' },
        role: { type: ['string', 'null'], enum: ['member', 'admin', null], description: 'What this node\'s certificate makes it (null: none, its writes stay local)' }
      }
    },
    statements: { type: 'array', items: statementSchema, description: 'Every certificate and revocation this node holds' }
  }
} as const

export const mirrorsSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['mirrors'],
  properties: {
    mirrors: {
      type: 'array',
      description: 'The upstream registries this node mirrors: a pull of <registry>/<name> (or <name>?ns=<registry>) fetches what the fleet lacks from url',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['registry', 'url'],
        properties: { registry: { type: 'string' }, url: { type: 'string' } }
      }
    }
  }
} as const

export type PeersAnswer = FromSchema<typeof peersSchema>
export type PeerAnswer = PeersAnswer['peers'][number]
export type NodesAnswer = FromSchema<typeof nodesSchema>
export type ApiNode = NodesAnswer['nodes'][number]
export type ApiStrategy = FromSchema<typeof strategySchema>
export type CreatedAnswer = FromSchema<typeof createdSchema>
export type DryRunAnswer = FromSchema<typeof dryRunSchema>
export type StrategiesAnswer = FromSchema<typeof strategiesSchema>
export type ListedStrategy = StrategiesAnswer['strategies'][number]
export type StatusAnswer = FromSchema<typeof statusSchema>
export type DesiredNodeAnswer = StatusAnswer['desired'][number]
export type DroppingNodeAnswer = StatusAnswer['extra'][number]
export type ImagesAnswer = FromSchema<typeof imagesSchema>
export type ImageAnswer = ImagesAnswer['images'][number]
export type HoldingsAnswer = FromSchema<typeof holdingsSchema>
export type Datastore = FromSchema<typeof datastoreSchema>
export type StatementBody = FromSchema<typeof statementSchema>
export type TrustAnswer = FromSchema<typeof trustSchema>
export type MirrorsAnswer = FromSchema<typeof mirrorsSchema>
export type DatastoreEntry = Datastore['databases'][number]['entries'][number]

// IPNS names (issue 14): keys, publishing, resolving.
const ipnsNameProperty = { type: 'string', description: 'IPNS name: the key\'s identity as a CIDv1 (libp2p-key, base36: k51…)' } as const

export const ipnsKeySchema = {
  type: 'object', additionalProperties: false,
  required: ['key', 'name', 'peerId', 'createdAt'],
  properties: {
    key: { type: 'string', description: '`self` (the node\'s own libp2p key) or the name it was created with' },
    name: ipnsNameProperty,
    peerId: { type: 'string', description: 'The same identity as a peer id (12D3Koo…)' },
    createdAt: { type: 'string', format: 'date-time' }
  }
} as const

export const ipnsKeysSchema = { type: 'object', additionalProperties: false, required: ['keys'], properties: { keys: { type: 'array', items: ipnsKeySchema } } } as const

export const publishedNamesSchema = {
  type: 'object', additionalProperties: false,
  required: ['names'],
  properties: {
    names: {
      type: 'array',
      items: {
        type: 'object', additionalProperties: false,
        required: ['key', 'name', 'image', 'value', 'sequence', 'publishedAt', 'signedAt', 'lifetimeSeconds'],
        properties: {
          key: { type: 'string' },
          name: ipnsNameProperty,
          image: { type: 'string', description: 'What the publish named (`repo:tag`)' },
          value: { type: 'string', description: '`/ipfs/<image CID>`' },
          sequence: { type: 'integer' },
          publishedAt: { type: 'string', format: 'date-time' },
          signedAt: { type: 'string', format: 'date-time', description: 'When the record was last signed (republished)' },
          lifetimeSeconds: { type: 'integer' }
        }
      }
    }
  }
} as const

export const createKeyBodySchema = {
  type: 'object', additionalProperties: false,
  required: ['name'],
  properties: { name: { type: 'string', minLength: 1, maxLength: 64, description: 'Letters, digits, `.`, `_` and `-`, starting with a letter or digit' } }
} as const

export const publishBodySchema = {
  type: 'object', additionalProperties: false,
  required: ['image'],
  properties: {
    image: { type: 'string', minLength: 1, description: '`repo:tag`, `repo@digest` or an image CID: the name points at its image CID' },
    key: { type: 'string', minLength: 1, description: 'The key to publish with (default `self`: the node\'s peer id)' },
    lifetimeSeconds: { type: 'integer', minimum: 2, maximum: 31_536_000, description: 'How long the record is valid (default 86400); the node signs it again every half lifetime, at most hourly' },
    ttlSeconds: { type: 'integer', minimum: 0, maximum: 31_536_000, description: 'How long resolvers may keep the record before asking again (default 300)' }
  }
} as const

export const publishedSchema = {
  type: 'object', additionalProperties: false,
  required: ['name', 'key', 'image', 'value', 'sequence', 'validUntil', 'lifetimeSeconds', 'ttlSeconds', 'publishedAt', 'peers'],
  properties: {
    name: ipnsNameProperty,
    key: { type: 'string' },
    image: { type: 'string', description: 'What the publish named' },
    value: { type: 'string', description: '/ipfs/<image CID>' },
    sequence: { type: 'integer', description: 'One above the key\'s previous record' },
    validUntil: { type: 'string', format: 'date-time' },
    lifetimeSeconds: { type: 'integer' },
    ttlSeconds: { type: 'integer' },
    publishedAt: { type: 'string', format: 'date-time' },
    peers: { type: 'integer', description: 'DHT peers that stored the record (every member also hears it by broadcast)' }
  }
} as const

export const nameParams = { type: 'object', additionalProperties: false, required: ['name'], properties: { name: { type: 'string', minLength: 1 } } } as const

export const resolvedNameSchema = {
  type: 'object', additionalProperties: false,
  required: ['name', 'path', 'cid', 'chain'],
  properties: {
    name: { type: 'string', description: 'As asked: an IPNS name or a domain (DNSLink)' },
    path: { type: 'string', description: '/ipfs/<cid>[/path]: what it points at now' },
    cid: { type: 'string' },
    chain: { type: 'array', items: { type: 'string' }, description: 'Every hop, the name first' }
  }
} as const

export const nameRecordSchema = {
  type: 'object', additionalProperties: false,
  required: ['name', 'value', 'sequence', 'validUntil', 'ttlSeconds', 'signer', 'source'],
  properties: {
    name: ipnsNameProperty,
    value: { type: 'string', description: 'What the record points at' },
    sequence: { type: 'integer' },
    validUntil: { type: 'string', format: 'date-time' },
    ttlSeconds: { type: 'number' },
    signer: {
      type: 'object', additionalProperties: false,
      required: ['peerId', 'name'],
      description: 'The key that signed the record, checked: the name is that key\'s identity, so no authority vouches for it',
      properties: { peerId: { type: 'string' }, name: ipnsNameProperty }
    },
    source: { type: 'string', enum: ['published here', 'broadcast', 'dht'], description: 'Where this node got it: its own publication, a member\'s broadcast, the DHT' }
  }
} as const

export type IpnsKeysAnswer = FromSchema<typeof ipnsKeysSchema>
export type PublishedNamesAnswer = FromSchema<typeof publishedNamesSchema>
export type IpnsKeyAnswer = FromSchema<typeof ipnsKeySchema>
export type CreateKeyBody = FromSchema<typeof createKeyBodySchema>
export type PublishBody = FromSchema<typeof publishBodySchema>
export type PublishedAnswer = FromSchema<typeof publishedSchema>
export type ResolvedNameAnswer = FromSchema<typeof resolvedNameSchema>
export type NameRecordAnswer = FromSchema<typeof nameRecordSchema>
