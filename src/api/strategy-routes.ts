// Replication strategies, the fleet's images and one node's holdings under /api/v1/ (D7, D8).
import type { FastifyInstance, FastifyReply } from 'fastify'
import { listFleetImages, listLocalImages } from '../replication/images.ts'
import { STRATEGY_KINDS } from '../replication/strategy.ts'
import { apiErrorResponses } from './errors.ts'
import { nodeSchema, placementStateSchema } from './node-schema.ts'
import { joinedMesh, type ApiRoutesOptions } from './membership.ts'

const selectorSchema = { type: 'object', additionalProperties: { type: 'string' }, description: 'Labels a node must all have, such as { "zone": "eu" }' } as const

const strategyProperties = {
  kind: { type: 'string', enum: STRATEGY_KINDS },
  image: { type: 'string', description: '`repo:tag` (follows the tag), `repo@sha256:…` or an image CID' },
  percentage: { type: 'number', description: 'percentage: share of the member nodes, 1 to 100, rounded up, at least one node' },
  target: { type: 'string', description: 'target: a node\'s id or name' },
  replicas: { type: 'integer', description: 'replicas: how many nodes' },
  selector: selectorSchema,
  count: { type: 'integer', description: 'labels: at most this many of the matching nodes' }
} as const

const strategySchema = {
  type: 'object',
  required: ['id', 'kind', 'image', 'createdAt', 'updatedAt'],
  properties: {
    id: { type: 'string' },
    ...strategyProperties,
    createdAt: { type: 'string', format: 'date-time' },
    updatedAt: { type: 'string', format: 'date-time' }
  }
} as const

const placedNodeProperties = {
  node: { type: 'string', description: 'libp2p peer id' },
  name: { type: 'string' }
} as const

const placementSchema = {
  type: 'array',
  description: 'The nodes that must hold the image, best-ranked first',
  items: { type: 'object', required: ['node', 'name'], properties: placedNodeProperties }
} as const

const createdSchema = {
  type: 'object',
  required: ['strategy', 'placement'],
  properties: { strategy: strategySchema, placement: placementSchema }
} as const

const dryRunSchema = {
  type: 'object',
  required: ['strategy', 'placement'],
  properties: {
    strategy: {
      type: 'object',
      required: ['id', 'kind', 'image'],
      properties: { id: { type: 'null', description: 'A dry run stores nothing' }, ...strategyProperties }
    },
    placement: placementSchema
  }
} as const

const summarySchema = {
  type: 'object',
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

const statusSchema = {
  type: 'object',
  required: ['strategy', 'desired', 'extra'],
  properties: {
    strategy: strategySchema,
    desired: {
      type: 'array',
      description: 'The nodes placement chooses now, and how far each got (pending: it has said nothing yet)',
      items: {
        type: 'object',
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
        type: 'object',
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

const imageSchema = {
  type: 'object',
  required: ['repository', 'tag', 'digest', 'imageCid', 'heldBy', 'heldHere'],
  properties: {
    repository: { type: 'string' },
    tag: { type: 'string' },
    digest: { type: 'string', description: 'Manifest digest' },
    imageCid: { type: 'string', description: 'CID of the image\'s OCI layout directory' },
    node: { type: 'string', description: 'Peer id of the node it was pushed to (absent outside a mesh)' },
    pushedAt: { type: 'string', format: 'date-time' },
    heldBy: { type: 'array', items: { type: 'string' }, description: 'Ids of the nodes that hold the image whole (outside a mesh: none, see heldHere)' },
    heldHere: { type: 'boolean', description: 'The node answering holds the image whole' }
  }
} as const

const holdingsSchema = {
  type: 'object',
  required: ['node', 'strategies', 'images'],
  properties: {
    node: nodeSchema,
    strategies: {
      type: 'array',
      description: 'The node\'s progress per strategy, and whether the strategy still places the image there',
      items: {
        type: 'object',
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
        type: 'object',
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

const idParams = { type: 'object', required: ['id'], properties: { id: { type: 'string' } } } as const

const createBodySchema = {
  type: 'object',
  description: 'Shoal\'s form (`image`, `kind` and the kind\'s fields) or DistroMash\'s, unchanged (`nametag`, `type`, `percentage`, `target`, `execute`); an unknown field is refused',
  additionalProperties: false,
  properties: {
    ...strategyProperties,
    selector: { anyOf: [selectorSchema, { type: 'string' }], description: 'Labels such as { "zone": "eu" } or "zone=eu,tier=edge"' },
    count: { type: ['integer', 'null'], description: strategyProperties.count.description },
    nametag: { type: 'string', description: 'DistroMash\'s name for image' },
    type: { type: 'string', enum: STRATEGY_KINDS, description: 'DistroMash\'s name for kind' },
    execute: { type: 'boolean', description: 'false: a dry run, placement is shown and nothing is stored (default true)' }
  }
} as const

export function registerStrategyRoutes (api: FastifyInstance, { membership, local }: ApiRoutesOptions): void {
  const serviceOf = () => joinedMesh(membership).strategies

  api.post('/strategies', {
    schema: {
      tags: ['strategies'],
      summary: 'Create a replication strategy, or with execute false show where it would place the image',
      body: createBodySchema,
      response: { 200: { description: 'A dry run: nothing stored', ...dryRunSchema }, 201: { description: 'Stored', ...createdSchema }, ...apiErrorResponses }
    }
  }, async (req, reply) => {
    const created = await serviceOf().create(req.body, untilResponseCloses(reply))
    return await reply.code(created.strategy.id === null ? 200 : 201).send(created)
  })

  api.get('/strategies', {
    schema: {
      tags: ['strategies'],
      summary: 'Every strategy, oldest first, with the counts of its status',
      response: {
        200: {
          type: 'object',
          required: ['strategies'],
          properties: {
            strategies: {
              type: 'array',
              items: { ...strategySchema, required: [...strategySchema.required, 'summary'], properties: { ...strategySchema.properties, summary: summarySchema } }
            }
          }
        },
        ...apiErrorResponses
      }
    }
  }, async () => ({ strategies: await serviceOf().list() }))

  api.get<{ Params: { id: string } }>('/strategies/:id', {
    schema: {
      tags: ['strategies'],
      summary: 'One strategy',
      params: idParams,
      response: { 200: strategySchema, ...apiErrorResponses }
    }
  }, async req => await serviceOf().get(req.params.id))

  api.get<{ Params: { id: string } }>('/strategies/:id/status', {
    schema: {
      tags: ['strategies'],
      summary: 'The nodes a strategy places its image on, the state of each, and the nodes still to drop it',
      params: idParams,
      response: { 200: statusSchema, ...apiErrorResponses }
    }
  }, async req => await serviceOf().status(req.params.id))

  api.delete<{ Params: { id: string } }>('/strategies/:id', {
    schema: {
      tags: ['strategies'],
      summary: 'Remove a strategy: the nodes that hold its image for it drop it',
      params: idParams,
      response: { 204: { description: 'Removed', type: 'null' }, ...apiErrorResponses }
    }
  }, async (req, reply) => {
    await serviceOf().delete(req.params.id)
    return await reply.code(204).send()
  })

  api.get('/images', {
    schema: {
      tags: ['images'],
      summary: 'Every tagged image of the fleet (of this node outside a mesh) and the nodes that hold it',
      response: {
        200: { type: 'object', required: ['images'], properties: { images: { type: 'array', items: imageSchema } } },
        ...apiErrorResponses
      }
    }
  }, async (_req, reply) => {
    if (membership.mesh.state === 'off') return { images: await listLocalImages(local, untilResponseCloses(reply)) }
    const { fleet } = joinedMesh(membership)
    const [tags, nodes] = await Promise.all([fleet.allTags(), fleet.nodes()])
    return { images: listFleetImages(tags, nodes) }
  })

  api.get<{ Params: { id: string } }>('/nodes/:id', {
    schema: {
      tags: ['mesh'],
      summary: 'One node\'s inventory record, and what it holds and why',
      params: idParams,
      response: { 200: holdingsSchema, ...apiErrorResponses }
    }
  }, async req => await serviceOf().holdings(req.params.id))
}

/** Aborts when the response ends or its connection drops: a client that left waits on nothing. */
function untilResponseCloses (reply: FastifyReply): AbortSignal {
  const closed = new AbortController()
  reply.raw.once('close', () => closed.abort())
  return closed.signal
}
