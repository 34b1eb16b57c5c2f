// shoal push, pull, import and export (issue 14) as users run them: bin/shoal against a real node,
// with skopeo, podman and umoci reading and writing the same files.
import assert from 'node:assert/strict'
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { IMAGE_CID_HEADER } from '../../src/registry/handlers/http.ts'
import { shoal, shoalWith } from '../support/cli.ts'
import { startCountingProxy } from '../support/counting-proxy.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { metricSum } from '../support/metrics.ts'
import { REPO_ROOT } from '../support/node-process.ts'
import { createImageLayout, createMultiArchLayout, type ImageLayoutResult } from '../support/oci-image.ts'
import { podmanPull } from '../support/podman.ts'
import { copyFromRegistry, skopeo } from '../support/skopeo.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024

async function indexOf (dir: string): Promise<{ manifests: Array<{ digest: string, annotations?: Record<string, string> }> }> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string, annotations?: Record<string, string> }> }
}

async function blobsOf (dir: string): Promise<string[]> {
  return (await readdir(join(dir, 'blobs', 'sha256'))).sort()
}

describe('shoal push, pull, import and export', () => {
  let dir: string
  let node: TestNode
  let image: ImageLayoutResult
  /** The journal of resumable uploads, per test run. */
  let env: NodeJS.ProcessEnv

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-transfer-'))
    env = { XDG_STATE_HOME: join(dir, 'state') }
    node = await startTestNode()
    image = await createImageLayout(join(dir, 'image'), { layers: [2 * MiB, 300_000], seed: 'transfer' })
  })
  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('pushes an OCI layout to a node and exports it with the digests skopeo gets, in a layout umoci reads', async () => {
    const pushed = await shoalWith(env, 'push', `oci:${join(dir, 'image')}:latest`, `${node.host}/team/app:1.0`)
    assert.equal(pushed.code, 0, pushed.stderr)
    assert.match(pushed.stdout, new RegExp(`${image.manifestDigest}: 3 blobs`))
    const exported = await shoalWith(env, 'export', 'team/app:1.0', `oci:${join(dir, 'exported')}`, '--node', node.url)
    assert.equal(exported.code, 0, exported.stderr)
    // skopeo keeping the image as it is (it would compress uncompressed layers otherwise).
    await copyFromRegistry(`${node.host}/team/app:1.0`, join(dir, 'by-skopeo'), { layoutTag: '1.0' })
    assert.deepEqual((await indexOf(join(dir, 'exported'))).manifests.map(entry => entry.digest), (await indexOf(join(dir, 'by-skopeo'))).manifests.map(entry => entry.digest))
    assert.deepEqual(await blobsOf(join(dir, 'exported')), await blobsOf(join(dir, 'by-skopeo')))
    assert.equal((await indexOf(join(dir, 'exported'))).manifests[0]?.annotations?.['org.opencontainers.image.ref.name'], '1.0')
    const { stdout } = await run('umoci', ['ls', '--layout', join(dir, 'exported')])
    assert.equal(stdout.trim(), '1.0')
  })

  it('exports an image CID as a layout tagged latest, which umoci lists and unpacks', async () => {
    const head = await fetch(`${node.url}/v2/team/app/manifests/1.0`, { method: 'HEAD' })
    const cid = head.headers.get(IMAGE_CID_HEADER) ?? ''
    assert.notEqual(cid, '', 'the node names the image CID')
    const exported = await shoalWith(env, 'export', `ipfs:${cid}`, `oci:${join(dir, 'by-cid')}`, '--node', node.url)
    assert.equal(exported.code, 0, exported.stderr)
    const { stdout } = await run('umoci', ['ls', '--layout', join(dir, 'by-cid')])
    assert.equal(stdout.trim(), 'latest')
    assert.equal((await indexOf(join(dir, 'by-cid'))).manifests[0]?.digest, image.manifestDigest)
    await run('umoci', ['unpack', '--rootless', '--image', `${join(dir, 'by-cid')}:latest`, join(dir, 'bundle')])
    assert.ok((await stat(join(dir, 'bundle', 'rootfs'))).isDirectory())
  })

  it('imports a docker archive (as docker save writes it) and pulls one that podman loads', async () => {
    // skopeo writes docker-archive as docker save does.
    await skopeo(['copy', '--quiet', `oci:${join(dir, 'image')}:latest`, `docker-archive:${join(dir, 'saved.tar')}:team/saved:2.0`])
    const imported = await shoalWith(env, 'import', `docker-archive:${join(dir, 'saved.tar')}`, 'team/saved:2.0', '--node', node.url)
    assert.equal(imported.code, 0, imported.stderr)
    const pulled = await shoalWith(env, 'pull', `${node.host}/team/saved:2.0`, `docker-archive:${join(dir, 'pulled.tar')}`)
    assert.equal(pulled.code, 0, pulled.stderr)
    const id = await podmanPull(`docker-archive:${join(dir, 'pulled.tar')}`)
    assert.equal(`sha256:${id}`, image.configDigest, 'podman loads it as the same image (its id is the config digest)')
    const archive = JSON.parse((await run('tar', ['-xOf', join(dir, 'pulled.tar'), 'manifest.json'])).stdout) as Array<{ RepoTags: string[] }>
    assert.deepEqual(archive[0]?.RepoTags, ['team/saved:2.0'])
  })

  it('imports a docker archive as docker save 25+ writes it (blobs named by digest), and the node checks those names', async () => {
    const archiveDir = join(dir, 'save25')
    await run('cp', ['-r', join(dir, 'image'), archiveDir])
    const hexOf = (digest: string): string => digest.slice('sha256:'.length)
    const entry = { Config: `blobs/sha256/${hexOf(image.configDigest)}`, RepoTags: ['team/save25:1'], Layers: image.layerDigests.map(digest => `blobs/sha256/${hexOf(digest)}`) }
    await writeFile(join(archiveDir, 'manifest.json'), JSON.stringify([entry]))
    await run('tar', ['-C', archiveDir, '-cf', join(dir, 'save25.tar'), '.'])
    const imported = await shoalWith(env, 'import', `docker-archive:${join(dir, 'save25.tar')}`, 'team/save25:1', '--node', node.url, '--quiet')
    assert.equal(imported.code, 0, imported.stderr)
    const stored = JSON.parse((await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${node.host}/team/save25:1`])).stdout) as { layers: Array<{ digest: string }> }
    assert.deepEqual(stored.layers.map(layer => layer.digest), image.layerDigests)
    // A blob whose bytes are not its name: the node refuses the upload.
    await run('cp', [join(archiveDir, entry.Layers[0] ?? ''), join(archiveDir, 'blobs', 'sha256', 'f'.repeat(64))])
    await writeFile(join(archiveDir, 'manifest.json'), JSON.stringify([{ ...entry, Layers: [`blobs/sha256/${'f'.repeat(64)}`] }]))
    await run('tar', ['-C', archiveDir, '-cf', join(dir, 'lying.tar'), '.'])
    const refused = await shoalWith(env, 'import', `docker-archive:${join(dir, 'lying.tar')}`, 'team/lying:1', '--node', node.url, '--quiet')
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /^shoal: .*DIGEST_INVALID/)
  })

  it('writes a gzip-compressed image into a docker archive with plain layers, which podman loads', async () => {
    // skopeo compresses the layers on the way in: the node holds tar+gzip layers.
    await skopeo(['copy', '--quiet', '--dest-tls-verify=false', '--dest-compress', `oci:${join(dir, 'image')}:latest`, `docker://${node.host}/team/gzipped:1`])
    const stored = JSON.parse((await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${node.host}/team/gzipped:1`])).stdout) as { layers: Array<{ mediaType: string }> }
    assert.ok(stored.layers.every(layer => /gzip/.test(layer.mediaType)), 'the node holds compressed layers')
    const pulled = await shoalWith(env, 'pull', `${node.host}/team/gzipped:1`, `docker-archive:${join(dir, 'gzipped.tar')}`)
    assert.equal(pulled.code, 0, pulled.stderr)
    const names = (await run('tar', ['-tf', join(dir, 'gzipped.tar')])).stdout.trim().split('\n').filter(name => name.endsWith('.tar'))
    assert.deepEqual(names.map(name => `sha256:${name.slice(0, -'.tar'.length)}`).sort(), [...image.layerDigests].sort(), 'each layer named by its diff id: uncompressed')
    assert.equal(`sha256:${await podmanPull(`docker-archive:${join(dir, 'gzipped.tar')}`)}`, image.configDigest)
  })

  it('pulls into an OCI archive that skopeo reads, and pushes it back', async () => {
    const pulled = await shoalWith(env, 'pull', `${node.host}/team/app:1.0`, `oci-archive:${join(dir, 'app.oci.tar')}`)
    assert.equal(pulled.code, 0, pulled.stderr)
    const raw = (await skopeo(['inspect', '--raw', `oci-archive:${join(dir, 'app.oci.tar')}`])).stdout
    assert.equal(JSON.parse(raw).config.digest, image.configDigest)
    const pushed = await shoalWith(env, 'push', `oci-archive:${join(dir, 'app.oci.tar')}`, `${node.host}/team/again:1.0`)
    assert.equal(pushed.code, 0, pushed.stderr)
    assert.match(pushed.stdout, /0 blobs \(0 B\) copied, 3 already there/)
  })

  it('copies one platform of a multi-platform image, or all of them with --all', async () => {
    const multi = await createMultiArchLayout(join(dir, 'multi'), { platforms: [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64' }], layerSize: 100_000, seed: 'transfer-multi' })
    const pushed = await shoalWith(env, 'push', `oci:${join(dir, 'multi')}`, `${node.host}/team/multi:1`, '--all')
    assert.equal(pushed.code, 0, pushed.stderr)
    assert.match(pushed.stdout, new RegExp(multi.indexDigest))
    const arm = await shoalWith(env, 'pull', `${node.host}/team/multi:1`, `oci:${join(dir, 'arm')}`, '--platform', 'linux/arm64')
    assert.equal(arm.code, 0, arm.stderr)
    assert.equal((await indexOf(join(dir, 'arm'))).manifests[0]?.digest, multi.manifests[1]?.manifestDigest)
    const none = await shoalWith(env, 'pull', `${node.host}/team/multi:1`, `oci:${join(dir, 'none')}`, '--platform', 'linux/s390x')
    assert.equal(none.code, 1)
    assert.match(none.stderr, /^shoal: the index sha256:[0-9a-f]+ has no manifest for linux\/s390x \(--all copies every one\)\n$/)
    await assert.rejects(stat(join(dir, 'none')), 'a failed pull leaves no directory')
  })

  it('says what is wrong in one line, with a non-zero exit', async () => {
    const cases: Array<{ args: string[], error: RegExp }> = [
      { args: ['push', `oci:${join(dir, 'missing')}`, `${node.host}/team/x:1`], error: /is not an OCI image layout \(no index\.json\)/ },
      { args: ['push', `oci:${join(dir, 'image')}`, 'team/x:1'], error: /team\/x:1: name the registry/ },
      { args: ['pull', `${node.host}/team/nothing:1`, `oci:${join(dir, 'nothing')}`], error: /has no manifest team\/nothing:1/ },
      { args: ['pull', `${node.host}/team/app:1.0`, `${node.host}/team/y:1`], error: /the destination is a file/ },
      { args: ['export', 'ipfs:not-a-cid', `oci:${join(dir, 'z')}`], error: /ipfs:not-a-cid: not a CID/ },
      { args: ['import', `docker-archive:${join(dir, 'image', 'index.json')}`, 'team/z:1', '--node', node.url], error: /is not a tar archive|not a docker archive/ }
    ]
    for (const { args, error } of cases) {
      const answer = await shoalWith(env, ...args)
      assert.equal(answer.code, 1, `${args.join(' ')}: ${answer.stdout}`)
      assert.match(answer.stderr, error, args.join(' '))
      assert.equal(answer.stderr.trim().split('\n').length, 1, `one line: ${answer.stderr}`)
    }
  })

  it('prints JSON lines with --json and nothing with --quiet', async () => {
    const json = await shoalWith(env, 'pull', `${node.host}/team/app:1.0`, `oci:${join(dir, 'json')}`, '--json')
    assert.equal(json.code, 0, json.stderr)
    const lines = json.stdout.trim().split('\n').map(line => JSON.parse(line) as { event: string, digest?: string })
    assert.equal(lines[0]?.event, 'plan')
    assert.equal(lines.at(-1)?.event, 'done')
    assert.equal(lines.at(-1)?.digest, image.manifestDigest)
    assert.equal(lines.filter(line => line.event === 'blob').length, 6, 'each of 3 blobs started and done')
    const quiet = await shoalWith(env, 'pull', `${node.host}/team/app:1.0`, `oci:${join(dir, 'quiet')}`, '--quiet')
    assert.equal(quiet.code, 0)
    assert.equal(quiet.stdout + quiet.stderr, '')
  })
})

describe('an interrupted transfer', () => {
  let dir: string
  let node: TestNode
  let env: NodeJS.ProcessEnv

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-transfer-stop-'))
    env = { XDG_STATE_HOME: join(dir, 'state') }
    node = await startTestNode()
    await createImageLayout(join(dir, 'image'), { layers: [24 * MiB], seed: 'transfer-stop' })
    // Not on the node before the push test (the pull test pushes the first).
    await createImageLayout(join(dir, 'unpushed'), { layers: [24 * MiB], seed: 'transfer-resume' })
  })
  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /** Runs bin/shoal with --json and sends `signal` once the progress passes `bytes`; its exit code and output. */
  async function interruptAfter (args: string[], bytes: number, signal: NodeJS.Signals): Promise<{ code: number | null, stderr: string }> {
    const child = spawn(join(REPO_ROOT, 'bin', 'shoal'), [...args, '--json'], { env: { ...process.env, ...env } })
    let stderr = ''
    let buffered = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      for (const line of buffered.split('\n').slice(0, -1)) {
        const event = JSON.parse(line) as { event: string, bytes?: number }
        if (event.event === 'progress' && (event.bytes ?? 0) > bytes) child.kill(signal)
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1)
    })
    const code = await new Promise<number | null>(resolve => child.on('exit', resolve))
    return { code, stderr }
  }

  it('Ctrl-C during a pull leaves no file, no partial file and no directory it made', async () => {
    const slow = await startCountingProxy(node.url, { bytesPerSecond: 8 * MiB })
    try {
      const pushed = await shoalWith(env, 'push', `oci:${join(dir, 'image')}`, `${node.host}/team/big:1`)
      assert.equal(pushed.code, 0, pushed.stderr)
      const host = new URL(slow.url).host
      const archive = await interruptAfter(['pull', `${host}/team/big:1`, `oci-archive:${join(dir, 'out', 'big.tar')}`], 2 * MiB, 'SIGINT')
      assert.equal(archive.code, 130, archive.stderr)
      assert.match(archive.stderr, /^shoal: pull interrupted: nothing half-written was left\n$/)
      await assert.rejects(stat(join(dir, 'out')), 'the archive (and its .part) never appeared')
      const layout = await interruptAfter(['pull', `${host}/team/big:1`, `oci:${join(dir, 'layout')}`], 2 * MiB, 'SIGINT')
      assert.equal(layout.code, 130, layout.stderr)
      await assert.rejects(stat(join(dir, 'layout')), 'the layout directory it made is gone')
    } finally {
      await slow.stop()
    }
  })

  it('draws a bar per blob and one in total on a terminal (tmux)', async () => {
    const slow = await startCountingProxy(node.url, { bytesPerSecond: 8 * MiB })
    const socket = `shoal-test-${process.pid}`
    try {
      const host = new URL(slow.url).host
      const command = `${join(REPO_ROOT, 'bin', 'shoal')} pull ${host}/team/big:1 oci:${join(dir, 'tty')}; sleep 30`
      await run('tmux', ['-L', socket, 'new-session', '-d', '-x', '160', '-y', '20', '-e', `XDG_STATE_HOME=${join(dir, 'state')}`, command])
      // Mid-transfer: the bars, with bytes, rate and time left.
      const screen = await eventually(async () => {
        const { stdout } = await run('tmux', ['-L', socket, 'capture-pane', '-p'])
        return /total .*\|.*\| +\d+% .*MiB\/24 MiB .*\/s ETA +\d+s/.test(stdout) ? stdout : undefined
      }, 10_000, 'the progress bars')
      assert.match(screen, /^[0-9a-f]{12} .*\| +\d+% /m, 'a bar for the layer, named by its digest')
      const done = await eventually(async () => {
        const { stdout } = await run('tmux', ['-L', socket, 'capture-pane', '-p'])
        return stdout.includes('blobs (24 MiB) copied') ? stdout : undefined
      }, 20_000, 'the summary')
      assert.match(done, /total .*100%/)
    } finally {
      await run('tmux', ['-L', socket, 'kill-server']).catch(() => {})
      await slow.stop()
    }
  })

  it('a push stopped midway resumes its upload where the node holds it when run again', async () => {
    const slow = await startCountingProxy(node.url, { uploadBytesPerSecond: 8 * MiB })
    try {
      const host = new URL(slow.url).host
      const before = await metricSum(node.url, 'shoal_blob_bytes_received_total')
      const stopped = await interruptAfter(['push', `oci:${join(dir, 'unpushed')}`, `${host}/team/resumed:1`], 8 * MiB, 'SIGKILL')
      assert.equal(stopped.code, null, 'killed')
      const again = await shoalWith(env, 'push', `oci:${join(dir, 'unpushed')}`, `${host}/team/resumed:1`)
      assert.equal(again.code, 0, again.stderr)
      const received = await metricSum(node.url, 'shoal_blob_bytes_received_total') - before
      assert.ok(received < 28 * MiB, `the node received ${(received / MiB).toFixed(1)} MiB for a 24 MiB layer: the second run sent only the rest`)
      const pulled = await shoal('pull', `${node.host}/team/resumed:1`, `oci:${join(dir, 'check')}`)
      assert.equal(pulled.code, 0, pulled.stderr)
    } finally {
      await slow.stop()
    }
  })
})
