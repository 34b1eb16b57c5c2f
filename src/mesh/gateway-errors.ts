// The /ipfs face's media types and refusals, shared by its block and UnixFS responses.
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'

export const RAW = 'application/vnd.ipld.raw'
export const CAR = 'application/vnd.ipld.car'
export const TAR = 'application/x-tar'

/** The gateway's refusals (its face renders them as plain text: renderGatewayError). */
export class CidInvalidError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'CID_INVALID', status: 400, message: 'not a CID' }
}
export class FormatUnacceptableError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'FORMAT_UNACCEPTABLE', status: 406, message: `ask for ${RAW} or ${CAR}` }
}
