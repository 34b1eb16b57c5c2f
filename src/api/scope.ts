import type { FastifyError, FastifyInstance, FastifySchemaValidationError } from 'fastify'
import { ApiError, sendApiError } from './errors.ts'

export const API_PREFIX = '/api/v1'
export const API_BODY_LIMIT_BYTES = 1024 * 1024

/**
 * Makes an encapsulated fastify instance (a plugin registered with a prefix) speak the
 * management API's conventions, for its own routes only: JSON request bodies, and errors as
 * `{ statusCode, error, message }` rather than the registry's OCI error bodies.
 */
export function configureApiScope (api: FastifyInstance): void {
  // The server's catch-all parser leaves bodies unread for the registry to stream; the API
  // takes JSON and nothing else (other media types get 415).
  api.removeAllContentTypeParsers()
  api.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: API_BODY_LIMIT_BYTES }, api.getDefaultJsonParser('error', 'error'))

  api.setSchemaErrorFormatter((errors, dataVar) => new Error(errors.map(error => describeSchemaError(error, dataVar)).join(', ')))
  api.setErrorHandler(async (err: FastifyError, req, reply) => {
    const statusCode = statusOf(err)
    if (statusCode >= 500) req.log.error({ err, url: req.url, method: req.method }, 'internal error')
    return await sendApiError(reply, statusCode, messageOf(err, statusCode, req.headers['content-type']))
  })
  api.setNotFoundHandler(async (req, reply) => {
    return await sendApiError(reply, 404, `no endpoint at ${req.method} ${req.url}`)
  })
}

/** Ajv's message, naming what it leaves out: the unexpected property, the allowed values. */
function describeSchemaError (error: FastifySchemaValidationError, dataVar: string): string {
  const text = `${dataVar}${error.instancePath} ${error.message ?? 'is invalid'}`
  const params = error.params as { additionalProperty?: unknown, allowedValues?: unknown }
  if (error.keyword === 'additionalProperties' && typeof params.additionalProperty === 'string') return `${text}: '${params.additionalProperty}'`
  if (error.keyword === 'enum' && Array.isArray(params.allowedValues)) return `${text}: ${params.allowedValues.map(value => JSON.stringify(value)).join(', ')}`
  return text
}

function statusOf (err: FastifyError): number {
  const status = err.statusCode
  return typeof status === 'number' && status >= 400 && status <= 599 ? status : 500
}

function messageOf (err: FastifyError, statusCode: number, contentType: string | undefined): string {
  if (err instanceof ApiError) return err.message
  // Unknown failures are the node's; their messages may carry internals.
  if (statusCode >= 500) return 'internal error'
  if (err.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return `the body must be application/json, not ${contentType ?? 'of no declared type'}`
  if (err.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return `the body is larger than ${API_BODY_LIMIT_BYTES} bytes`
  // Validation messages already read "body must have required property 'name'" and the like.
  return err.message
}
