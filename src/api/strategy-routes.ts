// Replication strategies, the fleet's images and one node's holdings under /api/v1/ (D7, D8).
import type { FastifyInstance } from 'fastify'
import { untilClientLeaves } from '../http-request.ts'
import { pullableFor } from '../registry/request-access.ts'
import { listFleetImages, listLocalImages } from '../replication/images.ts'
import { apiErrorResponses } from './errors.ts'
import { createBodySchema, createdSchema, dryRunSchema, holdingsSchema, idParams, imagesSchema, statusSchema, strategiesSchema, strategySchema, type ImagesAnswer } from './schemas.ts'
import { joinedMesh, type ApiRoutesOptions } from './membership.ts'

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
    const created = await serviceOf().create(req.body, untilClientLeaves(reply))
    return await reply.code(created.strategy.id === null ? 200 : 201).send(created)
  })

  api.get('/strategies', {
    schema: {
      tags: ['strategies'],
      summary: 'Every strategy, oldest first, with the counts of its status',
      response: { 200: strategiesSchema, ...apiErrorResponses }
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
      response: { 200: imagesSchema, ...apiErrorResponses }
    }
  }, async (req, reply): Promise<ImagesAnswer> => {
    // Only what the caller may pull, with authentication on.
    const pullable = pullableFor(req)
    if (membership.mesh.state === 'off') return { images: (await listLocalImages(local, untilClientLeaves(reply))).filter(image => pullable(image.repository)) }
    const { fleet } = joinedMesh(membership)
    const [tags, nodes] = await Promise.all([fleet.allTags(), fleet.nodes()])
    return { images: listFleetImages(tags.filter(tag => pullable(tag.repository)), nodes) }
  })

  api.get<{ Params: { id: string } }>('/nodes/:id', {
    schema: {
      tags: ['mesh'],
      summary: 'One node as the fleet sees it (identity and presence), and what it holds and why',
      params: idParams,
      response: { 200: holdingsSchema, ...apiErrorResponses }
    }
  }, async req => await serviceOf().holdings(req.params.id))
}
