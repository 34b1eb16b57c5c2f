// What every HTTP face asks of a request: which face its URL belongs to, and when its client left.
import type { FastifyReply } from 'fastify'
import { ClientAbortedError } from './oci/errors.ts'

/** Whether `url` is `prefix` itself or lies under it (a path below, or a query on it). */
export function isUnder (url: string, prefix: string): boolean {
  return url === prefix || url.startsWith(`${prefix}/`) || url.startsWith(`${prefix}?`)
}

/**
 * Aborts once the response's connection closes: the client left, or the response is complete.
 * Work a request causes takes it, so a client that leaves stops that work, fetches from peers
 * included; the reason is a ClientAbortedError, a 4xx that is never logged as a fault.
 */
export function untilClientLeaves (reply: FastifyReply): AbortSignal {
  const gone = new AbortController()
  const leave = (): void => { gone.abort(new ClientAbortedError('the client went away')) }
  if (reply.raw.destroyed) leave()
  else reply.raw.once('close', leave)
  return gone.signal
}
