// The error registry (D10), after CNCF Distribution's registry/api/errcode: every domain error class
// carries one descriptor (error code, HTTP status, default message) as a static `descriptor`, and
// each HTTP face turns any error into its own format through that descriptor (src/http-errors.ts).
// Classes that live elsewhere (replication, content) gain a descriptor the same way.

/** What an error means on the wire, declared once per error class. */
export interface ErrorDescriptor {
  /** Uppercase error code: the OCI code on /v2 (spec.md "Error Codes"), the domain's own elsewhere. */
  readonly code: string
  /** HTTP status of a response that carries this error. */
  readonly status: number
  /** What the error means, for when the error itself says nothing more precise. */
  readonly message: string
}

function descriptor (code: string, status: number, message: string): ErrorDescriptor {
  return Object.freeze({ code, status, message })
}

// The OCI distribution-spec codes (spec.md, "Error Codes"), plus Distribution's RANGE_INVALID and
// TAG_INVALID, with the statuses the spec and Distribution give them.
export const BLOB_UNKNOWN = descriptor('BLOB_UNKNOWN', 404, 'blob unknown to registry')
export const BLOB_UPLOAD_INVALID = descriptor('BLOB_UPLOAD_INVALID', 400, 'blob upload invalid')
export const BLOB_UPLOAD_UNKNOWN = descriptor('BLOB_UPLOAD_UNKNOWN', 404, 'blob upload unknown to registry')
export const DIGEST_INVALID = descriptor('DIGEST_INVALID', 400, 'provided digest did not match uploaded content')
export const MANIFEST_BLOB_UNKNOWN = descriptor('MANIFEST_BLOB_UNKNOWN', 400, 'manifest references a manifest or blob unknown to registry')
export const MANIFEST_INVALID = descriptor('MANIFEST_INVALID', 400, 'manifest invalid')
export const MANIFEST_UNKNOWN = descriptor('MANIFEST_UNKNOWN', 404, 'manifest unknown to registry')
export const NAME_INVALID = descriptor('NAME_INVALID', 400, 'invalid repository name')
export const NAME_UNKNOWN = descriptor('NAME_UNKNOWN', 404, 'repository name not known to registry')
export const SIZE_INVALID = descriptor('SIZE_INVALID', 400, 'provided length did not match content length')
export const TOO_LARGE = descriptor('SIZE_INVALID', 413, 'the body is larger than this endpoint takes')
export const TAG_INVALID = descriptor('TAG_INVALID', 400, 'manifest tag did not match URI')
export const RANGE_INVALID = descriptor('RANGE_INVALID', 416, 'invalid content range')
export const UNSUPPORTED = descriptor('UNSUPPORTED', 400, 'the operation is unsupported')
export const ENDPOINT_UNKNOWN = descriptor('UNSUPPORTED', 404, 'no endpoint at this URL')
export const METHOD_UNSUPPORTED = descriptor('UNSUPPORTED', 405, 'the method is not supported on this endpoint')
export const BODY_TOO_SLOW = descriptor('BLOB_UPLOAD_INVALID', 408, 'the request body arrived too slowly')
export const DENIED = descriptor('DENIED', 403, 'requested access to the resource is denied')
export const UNAUTHORIZED = descriptor('UNAUTHORIZED', 401, 'authentication required')
// 405, as spec.md's "Deleting Blobs" answers a blob delete the registry does not allow (the
// conformance suite accepts 202, 404 or 405 there, whatever order it deletes things in).
export const BLOB_IN_USE = descriptor('UNSUPPORTED', 405, 'the blob is referenced by a manifest of the repository')
export const TOO_MANY_REQUESTS = descriptor('TOOMANYREQUESTS', 429, 'too many requests')
/** Anything without a descriptor: the node's own fault. Its message never shows internals. */
export const UNKNOWN = descriptor('UNKNOWN', 500, 'internal error')
export const UNAVAILABLE = descriptor('UNAVAILABLE', 503, 'service unavailable')
/** Content this node does not hold and no peer it can reach now serves. */
export const CONTENT_UNAVAILABLE = descriptor('UNAVAILABLE', 503, 'the content is held by no peer this node can reach now')

/** A class of errors that has a descriptor. */
export interface DescribedErrorClass { readonly descriptor: ErrorDescriptor }

/** The descriptor of an error's class (inherited from its nearest described ancestor), if any. */
export function descriptorOf (err: unknown): ErrorDescriptor | undefined {
  if (!(err instanceof Error)) return undefined
  const found = (err.constructor as Partial<DescribedErrorClass>).descriptor
  return isDescriptor(found) ? found : undefined
}

function isDescriptor (value: unknown): value is ErrorDescriptor {
  const candidate = value as Partial<ErrorDescriptor> | undefined
  return typeof candidate?.code === 'string' && typeof candidate.status === 'number' && typeof candidate.message === 'string'
}

/** Base of the domain's errors. A subclass without its own descriptor is the node's fault (UNKNOWN). */
export class ShoalError extends Error {
  static readonly descriptor: ErrorDescriptor = UNKNOWN
  readonly detail: unknown
  /** Response headers the protocol wants with this error (e.g. the upload's Range). */
  readonly headers: Readonly<Record<string, string>> | undefined
  constructor (message: string, detail?: unknown, options?: ErrorOptions & { headers?: Record<string, string> }) {
    super(message, options)
    this.name = new.target.name
    this.detail = detail
    this.headers = options?.headers
  }
}

export class BlobUnknownError extends ShoalError { static override readonly descriptor = BLOB_UNKNOWN }
export class BlobUploadUnknownError extends ShoalError { static override readonly descriptor = BLOB_UPLOAD_UNKNOWN }
export class BlobUploadInvalidError extends ShoalError { static override readonly descriptor = BLOB_UPLOAD_INVALID }
export class DigestInvalidError extends ShoalError { static override readonly descriptor = DIGEST_INVALID }
export class ManifestUnknownError extends ShoalError { static override readonly descriptor = MANIFEST_UNKNOWN }
export class ManifestInvalidError extends ShoalError { static override readonly descriptor = MANIFEST_INVALID }
export class ManifestBlobUnknownError extends ShoalError { static override readonly descriptor = MANIFEST_BLOB_UNKNOWN }
export class NameInvalidError extends ShoalError { static override readonly descriptor = NAME_INVALID }
export class NameUnknownError extends ShoalError { static override readonly descriptor = NAME_UNKNOWN }
export class TagInvalidError extends ShoalError { static override readonly descriptor = TAG_INVALID }
export class SizeInvalidError extends ShoalError { static override readonly descriptor = SIZE_INVALID }
export class TooLargeError extends ShoalError { static override readonly descriptor = TOO_LARGE }
/** A chunk that does not continue the upload where it stands. */
export class UploadRangeError extends ShoalError {
  static override readonly descriptor = RANGE_INVALID
  readonly currentSize: number
  constructor (message: string, currentSize: number) {
    super(message, undefined, { headers: { range: `0-${Math.max(0, currentSize - 1)}` } })
    this.currentSize = currentSize
  }
}
/** A byte range a blob cannot satisfy. */
export class RangeNotSatisfiableError extends ShoalError {
  static override readonly descriptor = RANGE_INVALID
  readonly size: number
  constructor (message: string, size: number) {
    super(message, undefined, { headers: { 'content-range': `bytes */${size}` } })
    this.size = size
  }
}
/** A blob a manifest of the repository still references: deleting it would break the image. */
export class BlobInUseError extends ShoalError {
  static override readonly descriptor = BLOB_IN_USE
  constructor (message: string, detail: { manifest: string }) {
    // RFC 9110: a 405 lists the methods the resource does take.
    super(message, detail, { headers: { allow: 'GET, HEAD' } })
  }
}
export class UnsupportedError extends ShoalError { static override readonly descriptor = UNSUPPORTED }
/** A URL that names no endpoint. */
/** No credentials, wrong ones, or a token without the scope: the client is told how to sign in (WWW-Authenticate). */
export class UnauthorizedError extends ShoalError { static override readonly descriptor = UNAUTHORIZED }
/** A signed-in user without the right. */
export class DeniedError extends ShoalError { static override readonly descriptor = DENIED }

export class EndpointUnknownError extends ShoalError { static override readonly descriptor = ENDPOINT_UNKNOWN }
/** A method the endpoint does not take. */
export class MethodUnsupportedError extends ShoalError { static override readonly descriptor = METHOD_UNSUPPORTED }
/** Too many of something at once (open uploads, requests). */
export class TooManyRequestsError extends ShoalError { static override readonly descriptor = TOO_MANY_REQUESTS }
/** The node has as many upload sessions open as it takes (`maxUploadSessions`). */
export class TooManyUploadsError extends TooManyRequestsError {}
/**
 * A request body that stalled or trickled below the node's floor: the connection is cut (an upload
 * keeps what arrived and can be resumed), so a slow client cannot hold a session and a socket forever.
 */
export class BodyTooSlowError extends ShoalError {
  static override readonly descriptor = BODY_TOO_SLOW
  constructor (message: string) {
    super(message, undefined, { headers: { connection: 'close' } })
  }
}
/**
 * The client went away (or stopped sending) before the body was complete. Nobody reads the answer;
 * it is a 4xx so that an ordinary client drop never looks like a server fault.
 */
export class ClientAbortedError extends ShoalError { static override readonly descriptor = BLOB_UPLOAD_INVALID }
