// An HTTP proxy in front of a registry that counts the bytes the registry sent through it: how
// much an upstream gave a mirror. It forwards every request as it is.
import { request as httpRequest, createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Transform } from 'node:stream'

export interface CountingProxy {
  url: string
  /** Response body bytes sent by the target so far. */
  bytesSent(): number
  /** Requests so far, as "METHOD path". */
  requests(): string[]
  stop(): Promise<void>
}

/**
 * `bytesPerSecond`: what the target may send through the proxy, all connections together, like
 * one link (an upstream across the internet rather than on loopback); none: no limit.
 */
export async function startCountingProxy (target: string, options: { bytesPerSecond?: number } = {}): Promise<CountingProxy> {
  const to = new URL(target)
  let bytes = 0
  /** When the shaped link is free again (performance.now() ms). */
  let linkFreeAt = 0
  const seen: string[] = []
  const server: Server = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''}`)
    const upstream = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } }, answer => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      // Each chunk passes when the shared link has carried the ones before it.
      const shaper = new Transform({
        transform (chunk: Buffer, _encoding, done) {
          bytes += chunk.length
          const rate = options.bytesPerSecond
          if (rate === undefined) {
            done(null, chunk)
            return
          }
          const now = performance.now()
          linkFreeAt = Math.max(now, linkFreeAt) + chunk.length / rate * 1000
          const wait = linkFreeAt - now
          if (wait < 2) done(null, chunk)
          else setTimeout(() => { done(null, chunk) }, wait)
        }
      })
      answer.pipe(shaper).pipe(res)
    })
    upstream.on('error', () => { res.destroy() })
    req.pipe(upstream)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytesSent: () => bytes,
    requests: () => [...seen],
    stop: async () => { await new Promise(resolve => { server.closeAllConnections(); server.close(resolve) }) }
  }
}
