// Open upload sessions cost no memory for their partial leaf, and a node takes only so many.
// Real node processes: memory is the process's resident set, read from /proc.
import assert from 'node:assert/strict'
import { readFile, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startNodeProcess, type RegistryProcess } from '../support/node-process.ts'
import { assertOciError } from '../support/registry-client.ts'

const MiB = 1024 * 1024
const SESSIONS = 1000
const PARTIAL = 256 * 1024

async function rssBytes (pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+)\s+kB$/m.exec(status)?.[1]) * 1024
}

/** Starts an upload and sends it `bytes` bytes in one PATCH; returns its Location. */
async function abandonedUpload (url: string, body: Buffer): Promise<string> {
  const started = await fetch(`${url}/v2/memory/test/blobs/uploads/`, { method: 'POST' })
  assert.equal(started.status, 202, await started.text())
  const location = started.headers.get('location') ?? ''
  const patched = await fetch(`${url}${location}`, { method: 'PATCH', body, headers: { 'content-type': 'application/octet-stream' } })
  assert.equal(patched.status, 202, await patched.text())
  return location
}

describe('memory of open upload sessions', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-upload-memory-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it(`${SESSIONS} abandoned sessions of ${PARTIAL / 1024} KiB each leave the node's RSS nearly where it was`, { timeout: 300_000 }, async () => {
    await using node = await startNodeProcess({ dataDir: join(dir, 'many'), args: ['--max-upload-sessions', '2000'] })
    const pid = node.process.pid as number
    const body = Buffer.alloc(PARTIAL, 7)
    // Warm up: the first requests load code and fill the buffer pool.
    for (let i = 0; i < 20; i++) await abandonedUpload(node.url, body)
    await new Promise(resolve => setTimeout(resolve, 500))
    const before = await rssBytes(pid)
    for (let i = 0; i < SESSIONS; i += 10) {
      await Promise.all(Array.from({ length: 10 }, async () => await abandonedUpload(node.url, body)))
    }
    await new Promise(resolve => setTimeout(resolve, 1000))
    const afterRss = await rssBytes(pid)
    const grown = afterRss - before
    console.log(`# RSS ${(before / MiB).toFixed(1)} MiB before, ${(afterRss / MiB).toFixed(1)} MiB after ${SESSIONS} abandoned sessions of ${PARTIAL / 1024} KiB: +${(grown / MiB).toFixed(1)} MiB`)
    // Holding each partial leaf in memory costs at least SESSIONS x PARTIAL (250 MiB).
    assert.ok(grown < 48 * MiB, `RSS grew by ${(grown / MiB).toFixed(1)} MiB`)
  })

  it('past maxUploadSessions a new upload gets 429 TOOMANYREQUESTS; a finished or cancelled one frees its place', async () => {
    await using node: RegistryProcess = await startNodeProcess({ dataDir: join(dir, 'capped'), args: ['--max-upload-sessions', '3'] })
    const locations = []
    for (let i = 0; i < 3; i++) locations.push(await abandonedUpload(node.url, Buffer.from('partial')))
    const refused = await fetch(`${node.url}/v2/memory/test/blobs/uploads/`, { method: 'POST' })
    await assertOciError(refused, 429, 'TOOMANYREQUESTS')
    assert.equal((await fetch(`${node.url}${locations[0] ?? ''}`, { method: 'DELETE' })).status, 204)
    const again = await fetch(`${node.url}/v2/memory/test/blobs/uploads/`, { method: 'POST' })
    assert.equal(again.status, 202, 'a cancelled session frees its place')
    // The cap counts sessions on disk, so it holds across a restart too.
    await node.stop()
    await using restarted = await startNodeProcess({ dataDir: join(dir, 'capped'), args: ['--max-upload-sessions', '3'] })
    await assertOciError(await fetch(`${restarted.url}/v2/memory/test/blobs/uploads/`, { method: 'POST' }), 429, 'TOOMANYREQUESTS')
  })
})
