import type { Socket } from 'node:net'
import type { ServerResponse } from 'node:http'
import Fastify, { LogController, type FastifyInstance, type FastifyReply } from 'fastify'
import type { Logger } from 'pino'
import { recordRequest, type Metrics } from './metrics.ts'
import { routeLabels } from './registry/routes.ts'
import { renderOciError } from './registry/oci-errors.ts'
import { renderGatewayError } from './mesh/gateway-routes.ts'
import { renderApiError } from './api/errors.ts'
import { registerOpenApi } from './api/openapi.ts'
import { API_PREFIX } from './api/scope.ts'
import { isUnder } from './http-request.ts'
import { STATUS_CODES, describeError, type DescribedError, type ErrorRenderer } from './http-errors.ts'
import { EndpointUnknownError } from './oci/errors.ts'

/**
 * Each face's error format, by URL prefix. Every error of a request (a handler's, fastify's, Node's
 * HTTP parser's, an unknown path) is rendered by the face its URL names; the registry's is the
 * default, for paths of no face and requests too malformed to have a path.
 */
const FACES: Array<[prefix: string, render: ErrorRenderer]> = [
  [API_PREFIX, renderApiError],
  ['/ipfs', renderGatewayError],
  // The names' gateway and routing faces (names/gateway-routes.ts) speak as the /ipfs one does.
  ['/ipns', renderGatewayError],
  ['/routing', renderGatewayError],
  ['/v2', renderOciError]
]

export function errorFaceOf (url: string): ErrorRenderer {
  for (const [prefix, render] of FACES) {
    if (isUnder(url, prefix)) return render
  }
  return renderOciError
}

/** A certificate (with its chain) and its key, PEM: the server speaks HTTPS. */
export interface TlsIdentity { cert: Buffer, key: Buffer }

/** One HTTP server for every face of the node (D8); the parts add their routes. */
export function createHttpServer (logger: Logger, metrics: Metrics, tls?: TlsIdentity): FastifyInstance {
  // The response in flight on each connection, so that a parser error arriving while a handler
  // still works on the request is answered once, not twice.
  const inFlight = new WeakMap<Socket, { url: string, response: ServerResponse }>()
  const app = Fastify({
    ...(tls === undefined ? {} : { https: { cert: tls.cert, key: tls.key } }),
    loggerInstance: logger,
    logController: new LogController({ disableRequestLogging: true }),
    // Blob bodies are streamed by the handlers themselves, never parsed.
    bodyLimit: Number.MAX_SAFE_INTEGER,
    requestTimeout: 0,
    return503OnClosing: true,
    // A field a schema does not allow is refused (400), not silently dropped as fastify's default
    // does: a misspelt field in an API request must not go unnoticed.
    ajv: { customOptions: { removeAdditional: false } },
    // Requests fastify itself refuses (bad URLs, bad headers).
    frameworkErrors: (err, req, reply) => { void sendError(reply, err) },
    // Requests Node's HTTP parser refuses before fastify sees them (bad Content-Length, chunked
    // encoding, header bytes, oversized heads).
    clientErrorHandler: (err, socket) => {
      answerMalformed(err, socket, inFlight.get(socket), logger)
    }
  })
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_req, _payload, done) => { done(null) })
  // First, so that the OpenAPI document sees the management API's routes as they are added.
  registerOpenApi(app as unknown as FastifyInstance)

  app.addHook('onRequest', async (req, reply) => {
    inFlight.set(req.raw.socket, { url: req.url, response: reply.raw })
  })
  // A stop waits for the requests in flight, not for connections that carry none: Node counts a
  // connection that has not sent a whole request head as busy, so one that opened and said
  // nothing (a client's spare socket, a slowloris) held a stop for its 60 s headers timeout.
  const sockets = new Set<Socket>()
  app.server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.once('close', () => sockets.delete(socket))
  })
  app.addHook('preClose', async () => {
    for (const socket of sockets) {
      const response = inFlight.get(socket)?.response
      // A response being sent is finished first; then its connection closes too, or a kept-alive
      // client would hold the stop for the keep-alive timeout (72 s).
      if (response?.writableEnded === false) response.once('close', () => { socket.destroy() })
      else socket.destroy()
    }
  })
  app.addHook('onResponse', async (req, reply) => {
    recordRequest(metrics, routeLabels.get(req) ?? req.routeOptions.url ?? 'unknown', req, reply)
  })
  app.setErrorHandler(async (err, _req, reply) => await sendError(reply, err))
  app.setNotFoundHandler(async (req, reply) => await sendError(reply, new EndpointUnknownError(`no endpoint at ${req.method} ${req.url}`)))
  app.get('/metrics', async (_req, reply) => {
    return await reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics())
  })
  return app as unknown as FastifyInstance
}

/**
 * Answers a request that failed, in the format of the face its URL names. A 5xx is the node's
 * fault and logged at error; a 4xx (client aborts included) is the client's, logged at debug.
 */
export async function sendError (reply: FastifyReply, err: unknown): Promise<FastifyReply> {
  const described = describeError(err)
  const { request } = reply
  // 503 is the node saying it is not ready (joining its mesh, stopping), not a fault.
  if (described.status >= 500 && described.status !== 503) request.log.error({ err, url: request.url, method: request.method }, 'internal error')
  else request.log.debug({ err, status: described.status }, 'request refused')
  if (reply.sent || reply.raw.headersSent) {
    // Part of the answer is out: all that is left is to cut it short.
    reply.raw.destroy()
    return reply
  }
  const { headers, body } = errorFaceOf(request.url)(described)
  return await reply.code(described.status).headers(headers).send(body)
}

function answerMalformed (err: Error & { code?: string, rawPacket?: unknown }, socket: Socket, current: { url: string, response: ServerResponse } | undefined, logger: Logger): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  logger.debug({ err }, 'malformed request')
  const answering = current !== undefined && current.response.headersSent && !current.response.writableEnded
  if (answering || !socket.writable) {
    socket.destroy()
    return
  }
  // The face: the path of the request line if there is one, else the request in flight on this
  // connection (bytes after a body shorter than its Content-Length belong to it), else the default.
  const url = requestLinePath(err.rawPacket) ?? current?.url ?? '/'
  socket.end(rawErrorResponse(describeError(err), errorFaceOf(url)), () => socket.destroy())
}

function requestLinePath (packet: unknown): string | undefined {
  if (!Buffer.isBuffer(packet)) return undefined
  return /^[A-Z]+ (\/\S*)/.exec(packet.subarray(0, 256).toString('latin1'))?.[1]
}

function rawErrorResponse (described: DescribedError, render: ErrorRenderer): string {
  const { headers, body } = render(described)
  const lines = [`HTTP/1.1 ${described.status} ${STATUS_CODES[described.status] ?? 'Bad Request'}`]
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  lines.push(`content-length: ${Buffer.byteLength(body)}`, 'connection: close', '', body)
  return lines.join('\r\n')
}
