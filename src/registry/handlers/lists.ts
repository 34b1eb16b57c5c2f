// The lists: /v2/<name>/tags/list, /v2/<name>/referrers/<digest> and /v2/_catalog.
import type { FastifyReply, FastifyRequest } from 'fastify'
import { isIpfsRepository, type IpfsImages } from '../ipfs-images.ts'
import type { ManifestService } from '../manifest-service.ts'
import { untilClientLeaves } from '../../http-request.ts'
import { pullableFor } from '../request-access.ts'
import { nextPageLink, pageOf, type ResourceHandlers } from './http.ts'

export interface ListHandlersOptions {
  manifests: ManifestService
  ipfsImages: IpfsImages
}

export function tagListHandlers ({ manifests, ipfsImages }: ListHandlersOptions): ResourceHandlers {
  return {
    GET: async (req, reply, [name = '']) => {
      const { n, last } = pageOf(req)
      const tags = isIpfsRepository(name)
        ? (await ipfsImages.tags(name, untilClientLeaves(reply))).filter(t => last === undefined || t > last).slice(0, n)
        : await manifests.tags(name, last, n)
      nextPageLink(reply, `/v2/${name}/tags/list`, tags, n)
      return await reply.header('content-type', 'application/json').send({ name, tags })
    }
  }
}

export function referrerHandlers ({ manifests }: ListHandlersOptions): ResourceHandlers {
  return {
    GET: async (req, reply, [name = '', digest = '']) => {
      const artifactType = (req.query as Record<string, string | undefined>).artifactType
      // An image directory is immutable: nothing can refer to its manifests after the fact.
      const index = isIpfsRepository(name)
        ? { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }
        : await manifests.referrers(name, digest, artifactType)
      if (artifactType !== undefined) reply.header('oci-filters-applied', 'artifactType')
      return await reply.header('content-type', 'application/vnd.oci.image.index.v1+json').send(Buffer.from(JSON.stringify(index)))
    }
  }
}

export function catalogHandler ({ manifests }: Pick<ListHandlersOptions, 'manifests'>): (req: FastifyRequest, reply: FastifyReply) => Promise<unknown> {
  return async (req, reply) => {
    const { n, last } = pageOf(req)
    // Only what the user may pull, a page at a time until the page is full or the list ends.
    const pullable = pullableFor(req)
    const repositories: string[] = []
    let cursor = last
    while (repositories.length < n) {
      const batch = await manifests.repositories(cursor, n)
      repositories.push(...batch.filter(pullable).slice(0, n - repositories.length))
      if (batch.length < n) break
      cursor = batch.at(-1)
    }
    nextPageLink(reply, '/v2/_catalog', repositories, n)
    return await reply.header('content-type', 'application/json').send({ repositories })
  }
}
