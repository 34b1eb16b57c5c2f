// The management API's face of the error registry (D10): its refusals are domain errors with one
// descriptor each, and every error of an /api/v1 request, whoever raised it (a handler, a schema,
// fastify, Node's parser), is rendered here as `{ statusCode, error, code, message }` by the
// server's one error handler (server.ts picks the face by URL).
import { STATUS_CODES, type DescribedError, type ErrorRenderer } from '../http-errors.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'

/** A request that asks for the mesh on a node that is configured for none. */
export class NotInMeshError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NOT_IN_MESH', status: 409, message: 'this node is not in a mesh' }
}

/** A request the schema refuses; the message names the field and the value. */
export class InvalidRequestError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'INVALID_REQUEST', status: 400, message: 'the request is invalid' }
}

/** A body the API does not read: not JSON, or JSON in a charset other than UTF-8. */
export class UnsupportedMediaTypeError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'UNSUPPORTED_MEDIA_TYPE', status: 415, message: 'the body must be application/json' }
}

/** The body of every API error. */
export interface ApiErrorBody {
  statusCode: number
  /** The status line's reason phrase, e.g. "Bad Request". */
  error: string
  /** The descriptor's code, for programs: STRATEGY_INVALID, NOT_IN_MESH, … */
  code: string
  message: string
}

export function apiErrorBody (error: Pick<DescribedError, 'status' | 'code' | 'message'>): ApiErrorBody {
  return { statusCode: error.status, error: STATUS_CODES[error.status] ?? 'Error', code: error.code, message: error.message }
}

export const renderApiError: ErrorRenderer = error => ({
  headers: { 'content-type': 'application/json; charset=utf-8', ...error.headers },
  body: JSON.stringify(apiErrorBody(error))
})

export const apiErrorSchema = {
  type: 'object',
  required: ['statusCode', 'error', 'code', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string', description: 'The status code\'s reason phrase' },
    code: { type: 'string', description: 'What kind of refusal, for programs (STRATEGY_INVALID, NOT_IN_MESH, INVALID_REQUEST, …)' },
    message: { type: 'string', description: 'What is wrong, for a person to read' }
  }
} as const

/** Spread into a route's `response` schema so the document shows how the route fails. */
export const apiErrorResponses = {
  '4xx': { description: 'The request was refused', ...apiErrorSchema },
  '5xx': { description: 'The node failed', ...apiErrorSchema }
} as const
