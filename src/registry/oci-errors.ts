// The one place where domain errors become OCI error codes and HTTP statuses (D10).
import * as errors from '../oci/errors.ts'

export interface OciErrorResponse {
  status: number
  code: string
  message: string
  detail?: unknown
  headers?: Record<string, string>
}

type ErrorClass = abstract new (...args: never[]) => Error
const TABLE: Array<[ErrorClass, number, string]> = [
  [errors.BlobUnknownError, 404, 'BLOB_UNKNOWN'],
  [errors.BlobUploadUnknownError, 404, 'BLOB_UPLOAD_UNKNOWN'],
  [errors.BlobUploadInvalidError, 400, 'BLOB_UPLOAD_INVALID'],
  [errors.DigestInvalidError, 400, 'DIGEST_INVALID'],
  [errors.ManifestUnknownError, 404, 'MANIFEST_UNKNOWN'],
  [errors.ManifestInvalidError, 400, 'MANIFEST_INVALID'],
  [errors.ManifestBlobUnknownError, 400, 'MANIFEST_BLOB_UNKNOWN'],
  [errors.NameInvalidError, 400, 'NAME_INVALID'],
  [errors.NameUnknownError, 404, 'NAME_UNKNOWN'],
  [errors.TagInvalidError, 400, 'TAG_INVALID'],
  [errors.SizeInvalidError, 400, 'SIZE_INVALID'],
  [errors.TooLargeError, 413, 'SIZE_INVALID'],
  [errors.UploadRangeError, 416, 'RANGE_INVALID'],
  [errors.RangeNotSatisfiableError, 416, 'RANGE_INVALID'],
  [errors.UnsupportedError, 400, 'UNSUPPORTED'],
  [errors.EndpointUnknownError, 404, 'UNSUPPORTED'],
  [errors.ClientAbortedError, 400, 'BLOB_UPLOAD_INVALID']
]

/** Maps any thrown value to an OCI error response; undefined for errors that are the node's own fault. */
export function toOciError (err: unknown): OciErrorResponse | undefined {
  if (!(err instanceof Error)) return undefined
  for (const [type, status, code] of TABLE) {
    if (err instanceof type) {
      const response: OciErrorResponse = { status, code, message: err.message }
      if (err instanceof errors.ShoalError && err.detail !== undefined) response.detail = err.detail
      if (err instanceof errors.UploadRangeError) {
        response.headers = { range: `0-${Math.max(0, err.currentSize - 1)}` }
      }
      if (err instanceof errors.RangeNotSatisfiableError) response.headers = { 'content-range': `bytes */${err.size}` }
      return response
    }
  }
  // Fastify's own client errors (bad URL, bad headers, body problems).
  const statusCode = (err as { statusCode?: number }).statusCode
  if (statusCode !== undefined && statusCode >= 400 && statusCode < 500) {
    return { status: statusCode, code: statusCode === 413 ? 'SIZE_INVALID' : 'UNSUPPORTED', message: err.message }
  }
  return undefined
}

export function errorBody (response: Pick<OciErrorResponse, 'code' | 'message' | 'detail'>): string {
  return JSON.stringify({ errors: [{ code: response.code, message: response.message, detail: response.detail ?? null }] })
}
