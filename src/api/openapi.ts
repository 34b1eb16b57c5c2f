import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'
import packageJson from '../../package.json' with { type: 'json' }
import { API_PREFIX } from './scope.ts'

export const OPENAPI_PATH = '/openapi.json'
export const SWAGGER_UI_PREFIX = '/swagger'

/**
 * The OpenAPI document of the management API at /openapi.json, built from the routes' schemas,
 * and Swagger UI at /swagger (its assets come from the package: no CDN). Register before the
 * API's routes: the document lists only routes added after it.
 */
export function registerOpenApi (app: FastifyInstance): void {
  app.register(swagger, {
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
    // Only the management API is described; /v2, /ipfs, /metrics and the UI's own routes are not.
    transform: ({ schema, url }) => ({ schema: url.startsWith(`${API_PREFIX}/`) ? schema : { ...schema, hide: true }, url })
  })
  app.register(swaggerUi, { routePrefix: SWAGGER_UI_PREFIX })
  app.get(OPENAPI_PATH, { schema: { hide: true } }, async () => app.swagger())
}
