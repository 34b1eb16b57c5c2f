// A node's stop waits for the requests in flight, never for connections that carry none.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { it } from 'node:test'
import { startTestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'

it('stops at once beside connections that sent nothing or half a request head', { timeout: 30_000 }, async () => {
  const node = await startTestNode()
  const { port } = new URL(node.url)
  const sockets: Socket[] = []
  for (const head of ['', 'GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n']) {
    const socket = connect(Number(port), '127.0.0.1')
    await once(socket, 'connect')
    socket.on('error', () => {})
    if (head !== '') socket.write(head)
    sockets.push(socket)
  }
  // A finished request on a kept-alive connection too.
  assert.equal((await fetch(`${node.url}/v2/`)).status, 200)
  const started = performance.now()
  await node.stop()
  const took = performance.now() - started
  // Before, a connection that sent nothing held a stop for good (the one with half a head, for
  // Node's 60 s headers timeout).
  assert.ok(took < 10_000, `stop took ${Math.round(took)} ms`)
  for (const socket of sockets) {
    if (!socket.closed) await once(socket, 'close')
    assert.ok(socket.closed)
  }
})

it('a download in flight at the stop is sent whole, and its kept-alive connection then closes', { timeout: 60_000 }, async () => {
  const node = await startTestNode()
  const layer = randomBytes(8 * 1024 * 1024)
  const digest = `sha256:${createHash('sha256').update(layer).digest('hex')}`
  await new RegistryClient(node.url).pushBlob('stop/slow', layer)
  // A keep-alive client that reads the body slowly: the response is still being sent when the stop begins.
  const { port } = new URL(node.url)
  const socket = connect(Number(port), '127.0.0.1')
  await once(socket, 'connect')
  socket.on('error', () => {})
  socket.pause()
  socket.write(`GET /v2/stop/slow/blobs/${digest} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: keep-alive\r\n\r\n`)
  await new Promise(resolve => setTimeout(resolve, 300))
  const stopping = node.stop().then(() => performance.now())
  await new Promise(resolve => setTimeout(resolve, 300))
  const received: Buffer[] = []
  socket.on('data', (chunk: Buffer) => { received.push(chunk) })
  socket.resume()
  await once(socket, 'close')
  const closedAt = performance.now()
  const stoppedAt = await stopping
  const response = Buffer.concat(received)
  const headEnd = response.indexOf('\r\n\r\n')
  assert.match(response.subarray(0, headEnd).toString(), /^HTTP\/1\.1 200/)
  assert.equal(createHash('sha256').update(response.subarray(headEnd + 4)).digest('hex'), digest.slice('sha256:'.length))
  // Before, the connection stayed open after the response, and the stop waited for the
  // keep-alive timeout (72 s).
  assert.ok(stoppedAt - closedAt < 5_000, `the stop ended ${Math.round(stoppedAt - closedAt)} ms after the download`)
})
