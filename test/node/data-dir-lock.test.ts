// One node per data directory: the lock is the first thing a node takes. Real processes.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { shoal } from '../support/cli.ts'
import { startNodeProcess } from '../support/node-process.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

describe('the data directory lock', () => {
  let dir: string
  before(async () => { dir = await mkdtemp(join(tmpdir(), 'shoal-dir-lock-')) })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  it('a second node on a directory in use exits with one line naming the holder, and touches nothing', { timeout: 120_000 }, async () => {
    const data = join(dir, 'shared')
    await using first = await startNodeProcess({ dataDir: data })
    const registry = new RegistryClient(first.url)
    await registry.pushBlob('lock/test', 'before')
    // A write of the running node in flight: its temp file, beside its block.
    const shard = join(data, 'blocks', 'aa')
    const inFlight = join(shard, `bciqaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.${'0'.repeat(8)}-0000-0000-0000-000000000000.tmp`)
    await writeFile(inFlight, 'half a block')

    const second = await shoal('serve', '--listen', '127.0.0.1:0', '--data', data)
    assert.equal(second.code, 1)
    const lines = second.stderr.trim().split('\n')
    assert.equal(lines.length, 1, `one line, not: ${second.stderr}`)
    assert.equal(lines[0], `shoal: the data directory ${data} is in use by another node (pid ${first.process.pid})`)
    assert.equal(second.stdout, '')
    assert.ok(existsSync(inFlight), 'the running node\'s temp file is still there')

    // The running node goes on as if nothing happened.
    await registry.pushBlob('lock/test', Buffer.alloc(3 * 1024 * 1024, 5))
    assert.equal(await (await registry.request('GET', `/v2/lock/test/blobs/${sha256('before')}`)).text(), 'before')
  })

  it('the lock goes with a node killed with -9: the next one starts on the directory', { timeout: 120_000 }, async () => {
    const data = join(dir, 'killed')
    const first = await startNodeProcess({ dataDir: data })
    await new RegistryClient(first.url).pushBlob('lock/killed', 'kept')
    await first.kill9()
    await using next = await startNodeProcess({ dataDir: data })
    assert.equal(await (await new RegistryClient(next.url).request('GET', `/v2/lock/killed/blobs/${sha256('kept')}`)).text(), 'kept')
  })

  it('a start that fails leaves no new data directory behind', { timeout: 60_000 }, async () => {
    // The port is taken: the start fails after the directory was made and the stores opened.
    const taken = net.createServer()
    await new Promise<void>(resolve => taken.listen(0, '127.0.0.1', resolve))
    const port = (taken.address() as net.AddressInfo).port
    try {
      const data = join(dir, 'never', 'made')
      const failed = await shoal('serve', '--listen', `127.0.0.1:${port}`, '--data', data)
      assert.equal(failed.code, 1)
      assert.match(failed.stderr, /EADDRINUSE|in use/)
      assert.equal(existsSync(join(dir, 'never')), false, `left behind: ${existsSync(data) ? (await readdir(data)).join(', ') : join(dir, 'never')}`)
    } finally {
      taken.close()
    }
  })
})
