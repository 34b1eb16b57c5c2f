import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import packageJson from '../../package.json' with { type: 'json' }
import { API_PREFIX } from './scope.ts'

export const OPENAPI_PATH = '/openapi.json'
export const SWAGGER_UI_PREFIX = '/swagger'

/** Headers of Swagger UI's answers that this node's own reply sets again (or must not repeat). */
const HOP_HEADERS = new Set(['connection', 'content-length', 'date', 'keep-alive', 'transfer-encoding'])

/**
 * The OpenAPI document of the management API at /openapi.json, built from the routes' schemas,
 * and Swagger UI at /swagger (its assets come from the package: no CDN). Register before the
 * API's routes: the document lists only routes added after it.
 *
 * Both are made on their first request: the routes are only noted as they are added, and the
 * first read of the documentation loads @fastify/swagger and Swagger UI (with the static-file
 * plugin and YAML behind them) into a fastify instance of their own that is given those routes,
 * schemas and all. A node whose documentation nobody reads never holds them: about 4.5 MiB of RSS.
 */
export function registerOpenApi (app: FastifyInstance): void {
  // The routes the document describes (@fastify/swagger leaves out the HEAD routes fastify adds).
  const routes: RouteOptions[] = []
  app.addHook('onRoute', route => {
    if (route.method !== 'HEAD' && route.url.startsWith(`${API_PREFIX}/`)) routes.push(route)
  })
  let docs: Promise<FastifyInstance> | undefined
  const docsOnce = async (): Promise<FastifyInstance> => await (docs ??= documentation(routes))
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => (await docsOnce()).swagger())
  // Swagger UI answers in the documentation's instance; its answer goes out as this node's.
  const ui = async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> => {
    const answer = await (await docsOnce()).inject({ method: 'GET', url: req.url, headers: req.headers })
    if (answer.statusCode === 404) {
      reply.callNotFound()
      return reply
    }
    for (const [name, value] of Object.entries(answer.headers)) {
      if (value !== undefined && !HOP_HEADERS.has(name)) void reply.header(name, value)
    }
    return await reply.code(answer.statusCode).send(answer.rawPayload)
  }
  app.get(SWAGGER_UI_PREFIX, { schema: { hide: true } }, ui)
  app.get(`${SWAGGER_UI_PREFIX}/*`, { schema: { hide: true } }, ui)
}

/** A fastify instance that only describes `routes` (their handlers never run there) and serves Swagger UI. */
async function documentation (routes: readonly RouteOptions[]): Promise<FastifyInstance> {
  const [{ default: Fastify }, { default: swagger }, { default: swaggerUi }] = await Promise.all([
    import('fastify'), import('@fastify/swagger'), import('@fastify/swagger-ui')
  ])
  const docs = Fastify()
  // Nothing is validated or serialized here: the schemas are read for the document only.
  docs.setValidatorCompiler(() => () => true)
  docs.setSerializerCompiler(() => data => JSON.stringify(data))
  await docs.register(swagger, {
    openapi: {
      // 3.1: its schemas are JSON Schema, so the routes' schemas go in as they are written.
      openapi: '3.1.0',
      info: {
        title: 'Shoal',
        version: packageJson.version,
        description: 'Management API of a Shoal node. The OCI registry (/v2/) and the trustless gateway (/ipfs/) follow their own specifications and are not described here.'
      },
      tags: [
        { name: 'mesh', description: 'The libp2p mesh and the fleet\'s nodes' },
        { name: 'strategies', description: 'Replication strategies: where images must live, and how far the nodes got' },
        { name: 'images', description: 'The fleet\'s tagged images and the nodes that hold them' },
        { name: 'names', description: 'IPNS names and DNSLink: keys, publishing an image under a name, resolving (also /ipns/<name> and /routing/v1/ipns/<name>)' }
      ]
    },
    // Only the management API is described (only its routes are given here), not Swagger UI's own.
    transform: ({ schema, url }) => ({ schema: url.startsWith(`${API_PREFIX}/`) ? schema : { ...schema, hide: true }, url })
  })
  for (const { method, url, schema } of routes) docs.route({ method, url, ...(schema === undefined ? {} : { schema }), handler: async () => undefined })
  await docs.register(swaggerUi, { routePrefix: SWAGGER_UI_PREFIX })
  await docs.ready()
  return docs
}
