// Domain errors of the registry. They carry no HTTP knowledge: the HTTP edge
// (src/registry/oci-errors.ts) maps each class to an OCI error code and status.

export class ShoalError extends Error {
  readonly detail: unknown
  constructor (message: string, detail?: unknown) {
    super(message)
    this.name = new.target.name
    this.detail = detail
  }
}

export class BlobUnknownError extends ShoalError {}
export class BlobUploadUnknownError extends ShoalError {}
export class BlobUploadInvalidError extends ShoalError {}
export class DigestInvalidError extends ShoalError {}
export class ManifestUnknownError extends ShoalError {}
export class ManifestInvalidError extends ShoalError {}
export class ManifestBlobUnknownError extends ShoalError {}
export class NameInvalidError extends ShoalError {}
export class NameUnknownError extends ShoalError {}
export class TagInvalidError extends ShoalError {}
export class SizeInvalidError extends ShoalError {}
export class TooLargeError extends ShoalError {}
/** A chunk that does not continue the upload where it stands. */
export class UploadRangeError extends ShoalError {
  readonly currentSize: number
  constructor (message: string, currentSize: number) {
    super(message)
    this.currentSize = currentSize
  }
}
/** A byte range a blob cannot satisfy. */
export class RangeNotSatisfiableError extends ShoalError {
  readonly size: number
  constructor (message: string, size: number) {
    super(message)
    this.size = size
  }
}
export class UnsupportedError extends ShoalError {}
/** A URL that names no endpoint. */
export class EndpointUnknownError extends ShoalError {}
/** The client went away before the body was complete. */
export class ClientAbortedError extends ShoalError {}
