// A node's stop waits for the requests in flight, never for connections that carry none.
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { once } from 'node:events'
import { it } from 'node:test'
import { startTestNode } from '../support/in-process-node.ts'

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
