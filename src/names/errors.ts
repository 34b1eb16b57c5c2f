// The names' refusals (issue 14), each with one descriptor (D10). A name that is malformed or
// resolves to nothing extends the OCI name errors, so /v2 answers NAME_INVALID or NAME_UNKNOWN
// with the reason, and the API and the gateway say the same in their own formats.
import { NameInvalidError, NameUnknownError, ShoalError, UNAVAILABLE, type ErrorDescriptor } from '../oci/errors.ts'

/** Neither an IPNS name (k51…, 12D3Koo…) nor a domain, or a key name that cannot be one. */
export class InvalidNameError extends NameInvalidError {}

/** A name with no record (or no DNSLink), an expired record, or one whose value names no content. */
export class NameNotResolvedError extends NameUnknownError {}

/** A publish or a lookup named a key this node does not have. */
export class KeyUnknownError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'KEY_UNKNOWN', status: 404, message: 'no IPNS key has that name on this node' }
}

/** A key create named a key that already exists: keys are never replaced (their name would change hands). */
export class KeyExistsError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'KEY_EXISTS', status: 409, message: 'an IPNS key of that name exists' }
}

/** The image a publish names is not known to the node or its fleet. */
export class ImageNotFoundError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'IMAGE_UNKNOWN', status: 404, message: 'no image by that reference' }
}

/** The DNS servers did not answer (a timeout, a refusal, a server failure): the name may exist. */
export class DnsUnavailableError extends ShoalError {
  static override readonly descriptor = UNAVAILABLE
}

/** A method a names endpoint does not take (the delegated routing API answers 501 for those). */
export class NotImplementedError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'UNSUPPORTED', status: 501, message: 'not implemented' }
}
