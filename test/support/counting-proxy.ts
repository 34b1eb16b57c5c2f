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
 * one link (an upstream across the internet rather than on loopback); `uploadBytesPerSecond`:
 * the same for what clients send to it. None: no limit.
 */
export async function startCountingProxy (target: string, options: { bytesPerSecond?: number, uploadBytesPerSecond?: number } = {}): Promise<CountingProxy> {
  const to = new URL(target)
  let bytes = 0
  const down = shapedLink(options.bytesPerSecond, count => { bytes += count })
  const up = shapedLink(options.uploadBytesPerSecond, () => {})
  const seen: string[] = []
  const server: Server = createServer((req, res) => {
    seen.push(`${req.method ?? ''} ${req.url ?? ''}`)
    const upstream = httpRequest({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: { ...req.headers, host: to.host } }, answer => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(down()).pipe(res)
    })
    upstream.on('error', () => { res.destroy() })
    // A client that goes away mid-request closes the proxy's request to the target too, as its
    // own connection would have.
    req.socket.once('close', () => { if (!res.writableFinished) upstream.destroy() })
    req.pipe(up()).pipe(upstream)
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytesSent: () => bytes,
    requests: () => [...seen],
    stop: async () => { await new Promise(resolve => { server.closeAllConnections(); server.close(resolve) }) }
  }
}

/** Transforms that let each chunk pass when the link they share (at `rate` bytes a second) has carried the ones before it. */
function shapedLink (rate: number | undefined, count: (bytes: number) => void): () => Transform {
  /** When the shaped link is free again (performance.now() ms). */
  let linkFreeAt = 0
  return () => new Transform({
    transform (chunk: Buffer, _encoding, done) {
      count(chunk.length)
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
}
