// The CLI as a user runs it: `shoal serve` in a child process, `shoal inspect` against it.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startNodeProcess, type RegistryProcess } from '../support/node-process.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'
import { shoal } from '../support/cli.ts'


describe('shoal CLI', () => {
  let dataDir: string
  let node: RegistryProcess
  before(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'shoal-cli-'))
    node = await startNodeProcess({ dataDir })
  })
  after(async () => {
    await node.stop()
    await rm(dataDir, { recursive: true, force: true })
  })

  it('inspect prints tag, digest, image CID and size', async () => {
    const registry = new RegistryClient(node.url)
    const image = await registry.pushImage('cli/app', '1.0', 'cli layer bytes')
    const imageCid = image.response.headers.get('shoal-image-cid') ?? ''
    const { stdout, code } = await shoal('inspect', '--node', node.url, 'cli/app:1.0')
    assert.equal(code, 0)
    assert.match(stdout, /image: +cli\/app:1\.0/)
    assert.match(stdout, new RegExp(`digest: +${image.digest}`))
    assert.match(stdout, new RegExp(`image CID: +${imageCid}`))
    const config = JSON.parse(image.body) as { config: { size: number } }
    const size = Buffer.byteLength(image.body) + config.config.size + Buffer.byteLength('cli layer bytes')
    assert.match(stdout, new RegExp(`size: +${size} bytes`))
    const json = JSON.parse((await shoal('inspect', '--json', '--node', node.url, `cli/app@${image.digest}`)).stdout) as { imageCid: string }
    assert.equal(json.imageCid, imageCid)
  })

  it('fails with one line and a non-zero exit on an unknown image or an unreachable node', async () => {
    const unknown = await shoal('inspect', '--node', node.url, 'cli/none:1.0')
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.stderr, /^shoal: cli\/none:1\.0: 404 MANIFEST_UNKNOWN/)
    assert.equal(unknown.stderr.trim().split('\n').length, 1)
    const unreachable = await shoal('inspect', '--node', 'http://127.0.0.1:1', 'cli/app:1.0')
    assert.notEqual(unreachable.code, 0)
    assert.match(unreachable.stderr, /^shoal: cannot reach http:\/\/127\.0\.0\.1:1/)
  })

  it('serve refuses a bad flag with one line', async () => {
    const bad = await shoal('serve', '--listen', 'nowhere')
    assert.notEqual(bad.code, 0)
    assert.match(bad.stderr, /^shoal: config: listen must be host:port/)
  })

  it('stops cleanly on SIGTERM', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-cli-stop-'))
    try {
      const other = await startNodeProcess({ dataDir: dir })
      const result = await other.stop('SIGTERM')
      assert.equal(result.exitCode, 0, `exit ${result.exitCode} signal ${result.signal}: ${other.output()}`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('exposes Prometheus metrics: requests, bytes, blobs stored, open uploads', async () => {
    await fetch(`${node.url}/v2/cli/app/blobs/uploads/`, { method: 'POST' })
    const layer = await fetch(`${node.url}/v2/cli/app/blobs/${sha256('cli layer bytes')}`)
    assert.equal(await layer.text(), 'cli layer bytes')
    const text = await (await fetch(`${node.url}/metrics`)).text()
    assert.match(text, /shoal_http_requests_total\{route="manifest",method="PUT",status="201"\} 1/)
    assert.match(text, /shoal_http_requests_total\{route="blob",method="GET",status="200"\} 1/)
    assert.match(text, /shoal_blob_bytes_received_total \d+/)
    assert.match(text, /shoal_blob_bytes_sent_total 15/)
    assert.match(text, /shoal_blobs_stored 2/)
    assert.match(text, /shoal_upload_sessions_open 1/)
  })

  // Last: the page reads the images' details through the node, which the metrics above count.
  it('serves the web UI with its assets, as the launcher runs it (dist/ once built)', async () => {
    const page = await fetch(`${node.url}/`)
    assert.equal(page.status, 200)
    assert.match(await page.text(), /\/ui\/app\.js/)
    for (const [file, type] of [['app.js', /javascript/], ['style.css', /text\/css/]] as const) {
      const asset = await fetch(`${node.url}/ui/${file}`)
      assert.equal(asset.status, 200, file)
      assert.match(asset.headers.get('content-type') ?? '', type)
      assert.ok((await asset.arrayBuffer()).byteLength > 1000, `${file} has its content`)
    }
  })
})
