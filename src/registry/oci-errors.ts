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

export function ociErrorBody (error: Pick<DescribedError, 'code' | 'message' | 'detail'>): string {
  return JSON.stringify({ errors: [{ code: error.code, message: error.message, detail: error.detail ?? null }] })
}
