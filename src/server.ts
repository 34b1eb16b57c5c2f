import Fastify, { LogController, type FastifyInstance } from 'fastify'
import type { Logger } from 'pino'
import type { Metrics } from './metrics.ts'
import { routeLabels, sendRegistryError } from './registry/routes.ts'
import { sendApiError } from './api/errors.ts'
import { registerOpenApi } from './api/openapi.ts'
import { API_PREFIX } from './api/scope.ts'

/** One HTTP server for every face of the node (D8); the parts add their routes. */
export function createHttpServer (logger: Logger, metrics: Metrics): FastifyInstance {
  const app = Fastify({
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    // Blob bodies are streamed by the handlers themselves, never parsed.
    bodyLimit: Number.MAX_SAFE_INTEGER,
    requestTimeout: 0,
    return503OnClosing: true,
    // A field a schema does not allow is refused (400), not silently dropped as fastify's default
    // does: a misspelt field in an API request must not go unnoticed.
    ajv: { customOptions: { removeAdditional: false } },
    // Requests fastify itself refuses (bad URLs, bad headers) get the error body of the API they
    // were meant for: the management API's, else an OCI one.
    frameworkErrors: (err, req, reply) => {
      if (req.url.startsWith(`${API_PREFIX}/`)) sendApiError(reply, err.statusCode ?? 400, err.message)
      else sendRegistryError(err, reply)
    }
  })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, _payload, done) => { done(null) })
  // First, so that the OpenAPI document sees the management API's routes as they are added.
  registerOpenApi(app as unknown as FastifyInstance)

  app.addHook('onResponse', async (req, reply) => {
    metrics.requests.inc({ route: routeLabels.get(req) ?? req.routeOptions.url ?? 'unknown', method: req.method, status: reply.statusCode })
  })
  app.setErrorHandler(async (err, req, reply) => {
    if (reply.statusCode >= 500 || (err as { statusCode?: number }).statusCode === undefined) {
      req.log.debug({ err }, 'request failed')
    }
    const sent = sendRegistryError(err, reply)
    if (reply.statusCode >= 500) req.log.error({ err, url: req.url, method: req.method }, 'internal error')
    return sent
  })
  app.setNotFoundHandler(async (req, reply) => {
    return await reply.code(404).header('content-type', 'application/json')
      .send(JSON.stringify({ errors: [{ code: 'UNSUPPORTED', message: `no endpoint at ${req.method} ${req.url}`, detail: null }] }))
  })
  app.get('/metrics', async (_req, reply) => {
    return await reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics())
  })
  return app as unknown as FastifyInstance
}
