// Any error, whoever raised it (a domain class, fastify, Node's HTTP parser), as one
// {status, code, message}: what every HTTP face renders in its own format (D10).
import { descriptorOf, type ErrorDescriptor, SIZE_INVALID, TOO_LARGE, UNKNOWN, UNSUPPORTED } from './oci/errors.ts'

/**
 * Node's reason phrases, taken from node:http without an ESM import: importing node:http builds
 * its whole namespace, whose lazy WebSocket, CloseEvent and MessageEvent load Node's bundled undici
 * (about 3 MiB of RSS a node never uses). Every module that wants them takes them from here.
 */
export const { STATUS_CODES } = process.getBuiltinModule('node:http')

export interface DescribedError {
  status: number
  /** The descriptor's code (an OCI code for the registry's errors). */
  code: string
  /** For the client to read; never internals (a 500 says only what its descriptor says). */
  message: string
  detail?: unknown
  /** Headers the protocol wants with the error (e.g. Range for an upload that does not continue). */
  headers?: Readonly<Record<string, string>>
}

/** Renders a described error in one face's format: the response's headers and body. */
export type ErrorRenderer = (error: DescribedError) => { headers: Record<string, string>, body: string }

/** Turns anything thrown into what a face sends. Errors without a descriptor are the node's fault: 500 UNKNOWN. */
export function describeError (err: unknown): DescribedError {
  const descriptor = descriptorOf(err)
  if (descriptor !== undefined) return fromDescriptor(descriptor, err as Error)
  const code = (err as { code?: unknown } | undefined)?.code
  if (typeof code === 'string' && code.startsWith('HPE_')) return parserError(code, err as Error)
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') return { status: 408, code: 'UNSUPPORTED', message: 'the request took too long to arrive' }
  const framework = typeof code === 'string' ? FRAMEWORK_REFUSALS[code] : undefined
  if (framework !== undefined) return { ...framework }
  // Fastify's other refusals (and other http-errors style errors) carry a 4xx statusCode.
  const statusCode = (err as { statusCode?: unknown } | undefined)?.statusCode
  if (typeof statusCode === 'number' && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, code: codeForStatus(statusCode, code), message: (err as Error).message || STATUS_CODES[statusCode] || 'bad request' }
  }
  return { status: UNKNOWN.status, code: UNKNOWN.code, message: UNKNOWN.message }
}

function fromDescriptor (descriptor: ErrorDescriptor, err: Error): DescribedError {
  const described: DescribedError = {
    status: descriptor.status,
    code: descriptor.code,
    // A 500 is a fault whose message may show internals; any other descriptor's error (a 503 that
    // says why the node cannot serve now included) was raised to be read by the client.
    message: descriptor.status === UNKNOWN.status || err.message === '' ? descriptor.message : err.message
  }
  const { detail, headers } = err as { detail?: unknown, headers?: Record<string, string> }
  if (detail !== undefined) described.detail = detail
  if (headers !== undefined) described.headers = headers
  return described
}

/** Fastify's own refusals that reach clients, in the domain's words (one voice on every face). */
const FRAMEWORK_REFUSALS: Readonly<Record<string, DescribedError>> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: TOO_LARGE.status, code: TOO_LARGE.code, message: 'the body is larger than this endpoint takes' },
  // fastify's only cause of a bad URL: decoding the path's percent-encoding failed.
  FST_ERR_BAD_URL: { status: 400, code: UNSUPPORTED.code, message: 'the URL is malformed: a % in it is not followed by two hex digits' }
}

/** Node's HTTP parser (llhttp) refused the request before any route saw it. */
function parserError (code: string, err: Error): DescribedError {
  const reason = (err as { reason?: unknown }).reason
  const why = typeof reason === 'string' && reason !== '' ? reason : err.message
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, code: 'UNSUPPORTED', message: 'the request line and headers are too large' }
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, code: SIZE_INVALID.code, message: 'chunk extensions are too large' }
    case 'HPE_INVALID_CONTENT_LENGTH':
    case 'HPE_UNEXPECTED_CONTENT_LENGTH':
      return { status: 400, code: SIZE_INVALID.code, message: `invalid Content-Length: ${why}` }
    case 'HPE_INVALID_CHUNK_SIZE':
    case 'HPE_INVALID_TRANSFER_ENCODING':
      return { status: 400, code: 'UNSUPPORTED', message: `malformed chunked body: ${why}` }
    default:
      return { status: 400, code: 'UNSUPPORTED', message: `malformed HTTP request: ${why}` }
  }
}

function codeForStatus (status: number, frameworkCode: unknown): string {
  if (frameworkCode === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH' || status === 413) return SIZE_INVALID.code
  if (status === 401) return 'UNAUTHORIZED'
  if (status === 403) return 'DENIED'
  if (status === 429) return 'TOOMANYREQUESTS'
  return 'UNSUPPORTED'
}
