// What an operator or a new user meets (issue 10, defect 17): the real bin/shoal against real
// nodes in child processes, probes, logs and metrics as they come out of a running node.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { shoal } from '../support/cli.ts'
import { eventually } from '../support/in-process-node.ts'
import { REPO_ROOT, freePort, startNodeProcess, type RegistryProcess } from '../support/node-process.ts'
import { RegistryClient } from '../support/registry-client.ts'

const VERSION = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version

interface LogLine { level: number, msg: string, [field: string]: unknown }

const logLines = (output: string): LogLine[] => output.split('\n').filter(line => line.startsWith('{')).map(line => JSON.parse(line) as LogLine)

const listen = async (server: Server | net.Server): Promise<number> => {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  return address.port
}

describe('shoal for an operator: a single node', () => {
  let dir: string
  let node: RegistryProcess
  let imageCid: string
  let digest: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-operator-'))
    node = await startNodeProcess({ dataDir: dir })
    const pushed = await new RegistryClient(node.url).pushImage('op/app', '1.0', 'operator layer')
    imageCid = pushed.response.headers.get('shoal-image-cid') ?? ''
    digest = pushed.digest
  })
  after(async () => {
    await node.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('prints its version', async () => {
    for (const flag of ['--version', '-V']) {
      const result = await shoal(flag)
      assert.equal(result.code, 0)
      assert.equal(result.stdout, `${VERSION}\n`)
    }
  })

  it('inspects an image by its bare CID', async () => {
    const result = await shoal('inspect', '--node', node.url, imageCid)
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, new RegExp(`digest: +${digest}`))
    assert.match(result.stdout, new RegExp(`image CID: +${imageCid}`))
  })

  it('shows this node as the holder of its images, in the API and in shoal images', async () => {
    const { images } = await (await fetch(`${node.url}/api/v1/images`)).json() as { images: Array<{ imageCid: string, heldHere: boolean }> }
    assert.deepEqual(images.map(image => [image.imageCid, image.heldHere]), [[imageCid, true]])
    const result = await shoal('images', '--node', node.url)
    assert.equal(result.code, 0, result.stderr)
    const row = result.stdout.split('\n').find(line => line.startsWith('op/app:1.0'))
    assert.match(row ?? '', /this node$/)
  })

  it('answers /healthz and /readyz, and /favicon.ico with an icon', async () => {
    const health = await fetch(`${node.url}/healthz`)
    assert.equal(health.status, 200)
    assert.deepEqual(await health.json(), { status: 'alive' })
    const ready = await fetch(`${node.url}/readyz`)
    assert.equal(ready.status, 200)
    assert.deepEqual(await ready.json(), { ready: true, mesh: 'off' })
    const icon = await fetch(`${node.url}/favicon.ico`)
    assert.equal(icon.status, 200)
    assert.equal(icon.headers.get('content-type'), 'image/svg+xml')
    assert.match(await icon.text(), /^<svg /)
  })

  it('keeps a request-duration histogram by route, method and status', async () => {
    await fetch(`${node.url}/v2/op/app/manifests/1.0`)
    const text = await (await fetch(`${node.url}/metrics`)).text()
    assert.match(text, /# TYPE shoal_http_request_duration_seconds histogram/)
    assert.match(text, /shoal_http_request_duration_seconds_bucket\{le="0\.005",route="manifest",method="GET",status="200"\} \d+/)
    assert.match(text, /shoal_http_request_duration_seconds_count\{route="manifest",method="GET",status="200"\} [1-9]/)
    assert.match(text, /shoal_http_request_duration_seconds_sum\{route="manifest",method="GET",status="200"\} \d/)
  })

  it('logs nothing at warn on a normal start', () => {
    const lines = logLines(node.output())
    assert.deepEqual(lines.filter(line => line.level >= 40), [], node.output())
  })

  it('says what a non-Shoal server answered in one line, never its page', async () => {
    const page = '<!doctype html>\n<html>\n<head><title>Router</title></head>\n<body>\n<h1>Welcome</h1>\n</body>\n</html>\n'
    const html = createServer((req, res) => {
      res.writeHead(req.url?.startsWith('/api/v1/nodes') === true ? 404 : 200, { 'content-type': 'text/html; charset=utf-8' })
      res.end(page)
    })
    const port = await listen(html)
    try {
      const url = `http://127.0.0.1:${port}`
      for (const args of [['peers'], ['nodes'], ['images'], ['strategy', 'ls'], ['strategy', 'status'], ['inspect', 'app:1.0'], ['inspect', imageCid]]) {
        const result = await shoal(...args, '--node', url)
        assert.notEqual(result.code, 0, args.join(' '))
        assert.equal(result.stdout, '', args.join(' '))
        assert.equal(result.stderr.trim().split('\n').length, 1, `${args.join(' ')}: ${result.stderr}`)
        assert.doesNotMatch(result.stderr, /<|Welcome/, args.join(' '))
        assert.match(result.stderr, /^shoal: .*(is http:\/\/127\.0\.0\.1:\d+|is it) a Shoal node\?\n$/, args.join(' '))
      }
    } finally {
      await new Promise(resolve => html.close(resolve))
    }
  })

  it('runs through npx on a machine whose own Node is older, without engine warnings', async (t) => {
    const system = await promisify(execFile)('node', ['--version'], { env: { PATH: process.env.PATH } }).catch(() => undefined)
    if (system === undefined) {
      t.diagnostic('no system node on PATH: nothing to compare with')
    } else {
      t.diagnostic(`system node ${system.stdout.trim()}`)
    }
    // npx from PATH (npm on the machine's own Node), as a user runs it in the project.
    const { stdout, stderr } = await promisify(execFile)('npx', ['--no-install', 'shoal', '--version'], { cwd: REPO_ROOT })
    assert.equal(stdout, `${VERSION}\n`)
    assert.doesNotMatch(stderr, /EBADENGINE|Unsupported engine/, stderr)
  })
})

describe('shoal for an operator: logs', () => {
  it('logs "listening" once and one access-log line per request at info', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-operator-log-'))
    const node = await startNodeProcess({ dataDir: dir, args: ['--log-level', 'info'] })
    try {
      await fetch(`${node.url}/v2/nope/manifests/latest`)
      const lines = await eventually(async () => {
        const all = logLines(node.output())
        return all.some(line => line.msg === 'request' && line.url === '/v2/nope/manifests/latest') ? all : undefined
      }, 5000, 'the access log line')
      assert.equal(lines.filter(line => line.msg === 'listening').length, 1, node.output())
      const access = lines.filter(line => line.msg === 'request' && line.url === '/v2/nope/manifests/latest')
      assert.equal(access.length, 1)
      assert.equal(access[0]?.level, 30)
      assert.equal(access[0]?.method, 'GET')
      assert.equal(access[0]?.status, 404)
      assert.equal(typeof access[0]?.durationMs, 'number')
    } finally {
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('shoal for an operator: a quiet start', () => {
  it('a node started with --mesh logs nothing at warn either', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-operator-quiet-'))
    const node = await startNodeProcess({ dataDir: dir, args: ['--mesh'] })
    try {
      await eventually(async () => (await fetch(`${node.url}/readyz`)).status === 200 ? true : undefined, 15_000, 'readiness')
      assert.deepEqual(logLines(node.output()).filter(line => line.level >= 40), [], node.output())
    } finally {
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

describe('shoal for an operator: a mesh node', () => {
  it('is alive but not ready while it joins its mesh, and says so; then ready, with its /p2p/ address', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-operator-mesh-'))
    // A peer that accepts TCP and never speaks: the node's dial to it holds the join for a while.
    const held = new Set<net.Socket>()
    const silent = net.createServer(socket => { held.add(socket) })
    const silentPort = await listen(silent)
    const port = await freePort()
    const peer = `/ip4/127.0.0.1/tcp/${silentPort}/p2p/12D3KooWJWoaqZhDaoEFshF7Rh1bpY9ohihFhzcW6d69Lr2NASuq`
    const child = spawn(join(REPO_ROOT, 'bin', 'shoal'), ['serve', '--listen', `127.0.0.1:${port}`, '--data', dir, '--peer', peer], { cwd: REPO_ROOT, stdio: 'ignore' })
    const url = `http://127.0.0.1:${port}`
    try {
      await eventually(async () => (await fetch(`${url}/healthz`).catch(() => undefined))?.status === 200 ? true : undefined, 15_000, '/healthz')
      const readyz = await fetch(`${url}/readyz`)
      assert.equal(readyz.status, 503)
      assert.deepEqual(await readyz.json(), { ready: false, reason: 'joining the mesh: the catalogue is not open yet', mesh: 'joining' })
      const peers = await shoal('peers', '--node', url)
      assert.equal(peers.code, 0, peers.stderr)
      assert.match(peers.stdout, /^this node is joining the mesh/)
      // Not ready: the registry does not pretend otherwise.
      const v2 = await fetch(`${url}/v2/`)
      assert.equal(v2.status, 503)
      assert.equal(((await v2.json()) as { errors: Array<{ code: string }> }).errors[0]?.code, 'UNAVAILABLE')
      const strategies = await fetch(`${url}/api/v1/strategies`)
      assert.equal(strategies.status, 503)

      await eventually(async () => (await fetch(`${url}/readyz`)).status === 200 ? true : undefined, 30_000, 'readiness')
      assert.deepEqual(await (await fetch(`${url}/readyz`)).json(), { ready: true, mesh: 'joined' })
      assert.equal((await fetch(`${url}/v2/`)).status, 200)
      const joined = await shoal('peers', '--node', url)
      const id = /^self: (\S+)$/m.exec(joined.stdout)?.[1]
      assert.ok(id !== undefined, joined.stdout)
      assert.match(joined.stdout, new RegExp(`^ {2}/ip4/127\\.0\\.0\\.1/tcp/\\d+/p2p/${id}$`, 'm'))
    } finally {
      child.kill('SIGTERM')
      await new Promise(resolve => child.once('exit', resolve))
      for (const socket of held) socket.destroy()
      await new Promise(resolve => silent.close(resolve))
      await rm(dir, { recursive: true, force: true })
    }
  })
})
