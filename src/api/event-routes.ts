// GET /api/v1/events: the node's tag changes as Server-Sent Events, as they become visible on this
// node, so a script or a page waits for a tag to arrive instead of polling tags/list.
import { PassThrough } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import { pullableFor } from '../registry/request-access.ts'
import type { TagChange } from '../registry/shared-tags.ts'
import { apiErrorResponses } from './errors.ts'

/** Where tag changes come from: the fleet's catalogue in a mesh, the local metadata otherwise. */
export interface TagChanges {
  /** Calls `listener` once the change is visible on /v2; returns the function that stops it. */
  onTagChange(listener: (change: TagChange) => void): () => void
}

/** Comments keep proxies and clients from taking a quiet stream for a dead one. */
const KEEPALIVE_MS = 30_000
/** A client that reads nothing while this much is queued is too slow: its stream is ended. */
const MAX_QUEUED_BYTES = 1024 * 1024

export function registerEventRoutes (api: FastifyInstance, { tagChanges }: { tagChanges: TagChanges }): void {
  // A stop waits for the requests in flight, and a stream is one until it ends: a stop ends them.
  const open = new Set<PassThrough>()
  api.addHook('preClose', async () => { for (const stream of open) stream.end() })
  api.get('/events', {
    schema: {
      tags: ['registry'],
      summary: 'Tag changes as Server-Sent Events (`event: tag`, data `{"repository","tag","deleted"}`), each sent once this node answers it on /v2',
      response: {
        200: { description: 'A stream that lasts until the client leaves; it opens with a `: listening` comment', content: { 'text/event-stream': { schema: { type: 'string' } } } },
        ...apiErrorResponses
      }
    }
  }, async (req, reply) => {
    const stream = new PassThrough()
    // Only repositories the caller may pull, with authentication on.
    const pullable = pullableFor(req)
    const stopListening = tagChanges.onTagChange(change => {
      if (!pullable(change.repository)) return
      if (stream.writableLength > MAX_QUEUED_BYTES) { stream.end(); return }
      stream.write(`event: tag\ndata: ${JSON.stringify(change)}\n\n`)
    })
    const keepalive = setInterval(() => { stream.write(': keepalive\n\n') }, KEEPALIVE_MS).unref()
    const close = (): void => { stopListening(); clearInterval(keepalive); open.delete(stream); stream.end() }
    open.add(stream)
    stream.on('close', close)
    // The response, not the request: a GET's request is over (and says so) once its headers are read.
    reply.raw.on('close', close)
    // The comment tells the client it is subscribed: a change made after it arrives is sent.
    stream.write(': listening\n\n')
    return await reply.type('text/event-stream').header('cache-control', 'no-store').header('x-accel-buffering', 'no').send(stream)
  })
}
