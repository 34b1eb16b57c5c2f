// An upload's body is lent chunk by chunk: what came from a socket is freed once the consumer
// asks for the next chunk; a body handed in by the caller (an injected request) is never touched.
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import { describe, it } from 'node:test'
import type { FastifyRequest } from 'fastify'
import type { Metrics } from '../../src/metrics.ts'
import { reclaimChunk } from '../../src/content/chunk-pool.ts'
import { countIn, NO_BODY_PACE } from '../../src/registry/handlers/http.ts'

const MiB = 1024 * 1024

function counted (): { metrics: Metrics, bytes: () => number } {
  let bytes = 0
  return { metrics: { bytesIn: { inc: (n: number) => { bytes += n } } } as unknown as Metrics, bytes: () => bytes }
}

/** Every chunk countIn yields for one request sent over a real socket, with the body's digest as read. */
async function readOverSocket (body: Buffer): Promise<{ chunks: Uint8Array[], digest: string, counted: number }> {
  const { metrics, bytes } = counted()
  let done!: (result: { chunks: Uint8Array[], digest: string, counted: number }) => void
  const result = new Promise<{ chunks: Uint8Array[], digest: string, counted: number }>(resolve => { done = resolve })
  const server = createServer((req: IncomingMessage, res) => {
    void (async () => {
      const chunks: Uint8Array[] = []
      const hash = createHash('sha256')
      for await (const chunk of countIn({ raw: req } as unknown as FastifyRequest, metrics, NO_BODY_PACE)) {
        hash.update(chunk) // the consumer's copy, made before it asks for more
        chunks.push(chunk)
      }
      res.end()
      done({ chunks, digest: hash.digest('hex'), counted: bytes() })
    })()
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  try {
    const { port } = server.address() as AddressInfo
    const answer = await fetch(`http://127.0.0.1:${port}/`, { method: 'PUT', body })
    await answer.arrayBuffer()
    return await result
  } finally {
    server.close()
  }
}

describe('an upload body read chunk by chunk', () => {
  it('reads every byte of a socket body, and frees each chunk once the next is asked for', async () => {
    const body = Buffer.alloc(4 * MiB)
    for (let i = 0; i < body.length; i += 4096) body.writeUInt32BE(i, i)
    const { chunks, digest, counted } = await readOverSocket(body)
    assert.equal(digest, createHash('sha256').update(body).digest('hex'), 'the consumer saw the body intact')
    assert.equal(counted, body.length)
    assert.ok(chunks.length > 1, `${chunks.length} chunks`)
    const kept = chunks.filter(chunk => chunk.byteLength > 0)
    assert.deepEqual(kept.map(chunk => chunk.byteLength), [], 'every chunk read from the socket was freed after its turn')
  })

  it("leaves a body the caller handed in (an injected request) as it was", async () => {
    const pieces = [Buffer.alloc(64 * 1024, 1), Buffer.alloc(64 * 1024, 2)]
    const { metrics } = counted()
    const raw = Readable.from(pieces, { objectMode: false })
    let seen = 0
    for await (const chunk of countIn({ raw } as unknown as FastifyRequest, metrics, NO_BODY_PACE)) seen += chunk.length
    assert.equal(seen, 128 * 1024)
    assert.deepEqual(pieces.map(piece => [piece.length, piece[0]]), [[64 * 1024, 1], [64 * 1024, 2]])
  })
})

describe('reclaimChunk', () => {
  it('frees a chunk that is its own ArrayBuffer, and nothing that shares one', () => {
    const own = Buffer.allocUnsafeSlow(64 * 1024)
    reclaimChunk(own)
    assert.equal(own.byteLength, 0)

    const whole = Buffer.alloc(64 * 1024, 9)
    const slice = whole.subarray(1024, 2048)
    reclaimChunk(slice)
    assert.equal(slice.byteLength, 1024)
    assert.equal(whole[0], 9)

    const pooled = Buffer.from('from the small-buffer pool') // shares Node's 8 KiB pool
    reclaimChunk(pooled)
    assert.equal(pooled.toString(), 'from the small-buffer pool')

    reclaimChunk(own) // already freed: nothing happens
    assert.equal(own.byteLength, 0)
  })
})
