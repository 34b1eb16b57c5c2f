import { STATUS_CODES } from 'node:http'
import type { FastifyReply } from 'fastify'

/**
 * A refusal an API route hands the client: throw it from a handler and the API's error handler
 * sends `{ statusCode, error, message }` with this status and message.
 */
export class ApiError extends Error {
  readonly statusCode: number

  constructor (statusCode: number, message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'ApiError'
    this.statusCode = statusCode
  }
}

/** The body of every API error: fastify's usual shape. */
export interface ApiErrorBody {
  statusCode: number
  /** The status line's reason phrase, e.g. "Bad Request". */
  error: string
  message: string
}

export function apiErrorBody (statusCode: number, message: string): ApiErrorBody {
  return { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message }
}

export function sendApiError (reply: FastifyReply, statusCode: number, message: string): FastifyReply {
  return reply.code(statusCode).send(apiErrorBody(statusCode, message))
}

export const apiErrorSchema = {
  type: 'object',
  required: ['statusCode', 'error', 'message'],
  properties: {
    statusCode: { type: 'integer' },
    error: { type: 'string', description: 'The status code\'s reason phrase' },
    message: { type: 'string', description: 'What is wrong, for a person to read' }
  }
} as const

/** Spread into a route's `response` schema so the document shows how the route fails. */
export const apiErrorResponses = {
  '4xx': { description: 'The request was refused', ...apiErrorSchema },
  '5xx': { description: 'The node failed', ...apiErrorSchema }
} as const
