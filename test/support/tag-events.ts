// A client of GET /api/v1/events (Server-Sent Events), for tests and benchmarks: it resolves once
// the node has said it listens, then hands out tag changes as they arrive.
import type { TagChange } from '../../src/registry/shared-tags.ts'

export interface TagEventStream {
  /** Every tag change received so far, with the time (performance.now()) it arrived. */
  readonly received: Array<TagChange & { at: number }>
  /** The first change received (or to come) that `matches`; rejects after `timeoutMs`. */
  next(matches: (change: TagChange) => boolean, timeoutMs: number): Promise<TagChange & { at: number }>
  /** Resolves true when the node ends the stream (not when close() does). */
  readonly ended: Promise<boolean>
  close(): void
}

export async function openTagEvents (nodeUrl: string, headers: Record<string, string> = {}): Promise<TagEventStream> {
  const controller = new AbortController()
  const response = await fetch(`${nodeUrl}/api/v1/events`, { signal: controller.signal, headers })
  if (response.status !== 200 || response.body === null) throw new Error(`GET /api/v1/events answered ${response.status}`)
  if (!(response.headers.get('content-type') ?? '').startsWith('text/event-stream')) throw new Error(`GET /api/v1/events answered ${response.headers.get('content-type') ?? 'no content type'}`)
  const received: Array<TagChange & { at: number }> = []
  const waiters = new Set<() => void>()
  let listening: () => void = () => {}
  const listeningNow = new Promise<void>(resolve => { listening = resolve })
  const ended = (async () => {
    const decoder = new TextDecoder()
    let text = ''
    try {
      for await (const chunk of response.body as AsyncIterable<Uint8Array>) {
        text += decoder.decode(chunk, { stream: true })
        let end: number
        while ((end = text.indexOf('\n\n')) !== -1) {
          const message = text.slice(0, end)
          text = text.slice(end + 2)
          if (message.startsWith(': listening')) listening()
          const event = /^event: (.*)$/m.exec(message)?.[1]
          const data = /^data: (.*)$/m.exec(message)?.[1]
          if (event !== 'tag' || data === undefined) continue
          received.push({ ...JSON.parse(data) as TagChange, at: performance.now() })
          for (const wake of waiters) wake()
        }
      }
    } catch {
      // Closed by close(), or the node went away: waiters time out.
      return false
    }
    return true
  })()
  await listeningNow
  return {
    received,
    ended,
    async next (matches, timeoutMs) {
      return await new Promise((resolve, reject) => {
        const check = (): void => {
          const found = received.find(matches)
          if (found === undefined) return
          clearTimeout(timer)
          waiters.delete(check)
          resolve(found)
        }
        const timer = setTimeout(() => { waiters.delete(check); reject(new Error(`no matching tag event from ${nodeUrl} within ${timeoutMs} ms (received ${JSON.stringify(received)})`)) }, timeoutMs)
        waiters.add(check)
        check()
      })
    },
    close () { controller.abort() }
  }
}
