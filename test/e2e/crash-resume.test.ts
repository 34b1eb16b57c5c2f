// kill -9 in the middle of a chunked push; the restarted node knows how far the upload got,
// and the client resumes from there.
import assert from 'node:assert/strict'
import { createCipheriv, createHash } from 'node:crypto'
import { request } from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { startNodeProcess, type RegistryProcess } from '../support/node-process.ts'

const MiB = 1024 * 1024

/** Deterministic incompressible bytes. */
function bytesOf (size: number): Buffer {
  const cipher = createCipheriv('aes-256-ctr', Buffer.alloc(32, 7), Buffer.alloc(16, 0))
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()])
}

/** Streams `body` as one PATCH; resolves once `killAfter` bytes are written and `onSent` ran. */
async function patchUntilKilled (url: string, body: Buffer, killAfter: number, onSent: () => Promise<unknown>): Promise<void> {
  const req = request(url, { method: 'PATCH', headers: { 'content-type': 'application/octet-stream', 'content-length': body.length } })
  const failed = new Promise<void>(resolve => {
    req.on('error', () => resolve())
    req.on('response', res => { res.resume(); res.on('end', () => resolve()) })
  })
  for (let offset = 0; offset < killAfter; offset += 256 * 1024) {
    const piece = body.subarray(offset, Math.min(offset + 256 * 1024, killAfter))
    if (!req.write(piece)) await new Promise(resolve => req.once('drain', resolve))
  }
  // Let the node take in what was written before it dies.
  await new Promise(resolve => setTimeout(resolve, 500))
  await onSent()
  await failed
}

describe('an upload survives kill -9', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  after(async () => { for (const cleanup of cleanups.reverse()) await cleanup() })

  it('reports the right Range after a restart, and the client resumes to a verified blob', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'shoal-crash-'))
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }))
    const blob = bytesOf(80 * MiB + 12_345)
    const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}`

    let node: RegistryProcess = await startNodeProcess({ dataDir })
    cleanups.push(() => node.stop())
    const port = node.port
    const start = await fetch(`${node.url}/v2/crash/test/blobs/uploads/`, { method: 'POST' })
    assert.equal(start.status, 202)
    const location = start.headers.get('location') ?? ''

    // A first chunk, acknowledged.
    const first = 3 * MiB + 77
    const ack = await fetch(`${node.url}${location}`, {
      method: 'PATCH', body: blob.subarray(0, first), headers: { 'content-range': `0-${first - 1}`, 'content-type': 'application/octet-stream' }
    })
    assert.equal(ack.status, 202)
    assert.equal(ack.headers.get('range'), `0-${first - 1}`)

    // A second chunk, cut short by kill -9 after 60 MiB of it went out.
    const sentBeforeKill = 60 * MiB
    await patchUntilKilled(`${node.url}${location}`, blob.subarray(first), sentBeforeKill, () => node.kill9())

    node = await startNodeProcess({ dataDir, port })
    const status = await fetch(`${node.url}${location}`)
    assert.equal(status.status, 204)
    const range = /^0-(\d+)$/.exec(status.headers.get('range') ?? '')
    assert.ok(range, `Range header: ${status.headers.get('range')}`)
    const held = Number(range[1]) + 1
    assert.ok(held >= first, `the acknowledged chunk is kept (${held} >= ${first})`)
    assert.ok(held <= first + sentBeforeKill, 'no more than was sent')
    // The writer checkpoints every 32 leaves (at a leaf boundary): 60 MiB in, one has passed.
    assert.ok(held >= first + 31 * MiB, `progress inside the killed chunk is kept (${held})`)

    const resumed = await fetch(`${node.url}${location}`, {
      method: 'PATCH', body: blob.subarray(held), headers: { 'content-range': `${held}-${blob.length - 1}`, 'content-type': 'application/octet-stream' }
    })
    assert.equal(resumed.status, 202, await resumed.text())
    const done = await fetch(`${node.url}${location}?digest=${digest}`, { method: 'PUT' })
    assert.equal(done.status, 201, await done.text())
    const pulled = await fetch(`${node.url}/v2/crash/test/blobs/${digest}`)
    const hash = createHash('sha256')
    for await (const chunk of pulled.body ?? []) hash.update(chunk)
    assert.equal(`sha256:${hash.digest('hex')}`, digest)
  })
})
