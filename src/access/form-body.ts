// HTML-form bodies (`application/x-www-form-urlencoded`), for the routes that take them: the token
// endpoint's OAuth2 form (containerd) and the UI's sign-in and sign-out.
import type { FastifyInstance, FastifyRequest } from 'fastify'

/** Lets the routes of `scope` take form bodies of at most `bodyLimit` bytes, read as URLSearchParams. */
export function acceptForms (scope: FastifyInstance, bodyLimit: number): void {
  scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    done(null, new URLSearchParams(body as string))
  })
}

/** The request's form, or an empty one when it sent none. */
export function formOf (req: FastifyRequest): URLSearchParams {
  return req.body instanceof URLSearchParams ? req.body : new URLSearchParams()
}
