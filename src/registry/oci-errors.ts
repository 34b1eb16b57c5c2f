// The /v2 face's error format: the OCI error body (distribution-spec, "Error Codes").
import type { DescribedError, ErrorRenderer } from '../http-errors.ts'

export const renderOciError: ErrorRenderer = error => ({
  headers: {
    'content-type': 'application/json',
    'docker-distribution-api-version': 'registry/2.0',
    ...error.headers
  },
  body: ociErrorBody(error)
})

/**
 * Codes of other faces that reach /v2 in a registry's words: a block the node lacks, below a blob
 * or an image directory, is content unknown to the registry (spec.md lists the codes a client knows).
 */
const OCI_CODE_OF: Readonly<Record<string, string>> = { BLOCK_UNKNOWN: 'BLOB_UNKNOWN' }

export function ociErrorBody (error: Pick<DescribedError, 'code' | 'message' | 'detail'>): string {
  return JSON.stringify({ errors: [{ code: OCI_CODE_OF[error.code] ?? error.code, message: error.message, detail: error.detail ?? null }] })
}
