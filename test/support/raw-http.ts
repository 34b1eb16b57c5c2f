// Raw HTTP over node:net, for requests no HTTP client would send (malformed heads, lying lengths).
import { connect, type Socket } from 'node:net'

export interface RawResponse {
  status: number
  headers: Record<string, string>
  body: string
  /** Everything the server sent, for messages. */
  raw: string
}

/**
 * Sends `bytes` on a fresh connection and reads until the server closes it (or `timeoutMs`
 * passes, then the connection is dropped). Returns the first response, undefined if none came.
 */
export async function rawRequest (port: number, request: string | Buffer, timeoutMs = 2_000): Promise<RawResponse | undefined> {
  const bytes = typeof request === 'string' ? Buffer.from(request, 'latin1') : request
  const head = bytes.subarray(0, 5).toString('latin1') === 'HEAD '
  const received = await new Promise<Buffer>(resolve => {
    const chunks: Buffer[] = []
    const socket = connect(port, '127.0.0.1', () => { socket.write(bytes) })
    const timer = setTimeout(() => socket.destroy(), timeoutMs)
    socket.on('data', chunk => {
      chunks.push(chunk)
      // Enough once one whole response is in: a server may keep the connection open.
      if (firstResponse(Buffer.concat(chunks), head) !== undefined) socket.destroy()
    })
    socket.on('error', () => {})
    socket.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)) })
  })
  return firstResponse(received, head)
}

/** Sends raw HTTP bytes on a fresh connection, then closes it without waiting for an answer. */
export async function sendAndHangUp (port: number, bytes: string | Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(bytes, () => {
        setTimeout(() => { socket.destroy(); resolve() }, 100)
      })
    })
    socket.on('error', reject)
  })
}

/** A request whose body the caller writes on `socket` piece by piece, or never finishes. */
export interface OpenRequest {
  socket: Socket
  /** Everything the server sent so far. */
  received: () => string
  /** Settles when the connection closes (whoever closed it), with the milliseconds it was open. */
  closed: Promise<number>
}

/** Opens a PATCH of `length` bytes to an upload's `location` and sends its head only. */
export async function openPatch (port: number, location: string, length: number): Promise<OpenRequest> {
  const socket = connect(port, '127.0.0.1')
  await new Promise(resolve => socket.once('connect', resolve))
  let text = ''
  socket.on('data', chunk => { text += chunk.toString('latin1') })
  socket.on('error', () => { /* the server may close on us; what it answered is kept */ })
  const started = performance.now()
  const closed = new Promise<number>(resolve => socket.once('close', () => resolve(performance.now() - started)))
  socket.write(`PATCH ${location} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\n\r\n`)
  return { socket, received: () => text, closed }
}

function firstResponse (bytes: Buffer, head: boolean): RawResponse | undefined {
  let text = bytes.toString('latin1')
  // Interim answers (100 Continue) come before the response.
  while (/^HTTP\/1\.[01] 1\d\d /.test(text)) {
    const interimEnd = text.indexOf('\r\n\r\n')
    if (interimEnd < 0) return undefined
    text = text.slice(interimEnd + 4)
  }
  const end = text.indexOf('\r\n\r\n')
  if (end < 0) return undefined
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n')
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? NaN)
  const headers: Record<string, string> = {}
  for (const line of lines) {
    const colon = line.indexOf(':')
    if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
  }
  const rest = text.slice(end + 4)
  if (head) return { status, headers, body: '', raw: text }
  if (headers['transfer-encoding'] === 'chunked') {
    let body = ''
    let at = 0
    for (;;) {
      const lineEnd = rest.indexOf('\r\n', at)
      if (lineEnd < 0) return undefined
      const size = parseInt(rest.slice(at, lineEnd), 16)
      if (size === 0) break
      if (rest.length < lineEnd + 2 + size) return undefined
      body += rest.slice(lineEnd + 2, lineEnd + 2 + size)
      at = lineEnd + 2 + size + 2
    }
    return { status, headers, body, raw: text }
  }
  const length = Number(headers['content-length'] ?? 0)
  if (rest.length < length) return undefined
  return { status, headers, body: rest.slice(0, length), raw: text }
}
