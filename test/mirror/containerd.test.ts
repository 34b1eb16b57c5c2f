// containerd pulls docker.io images through a Shoal mirror with the hosts.toml `shoal
// containerd-config` writes (issue 13): real containerd and ctr, Debian's docker-registry as the
// upstream. The hosts.toml's fallback (registry-1.docker.io) cannot be reached here, so a pull
// that works went through the node.
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { shoal } from '../support/cli.ts'
import { startContainerd, type Containerd } from '../support/containerd.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { startDockerRegistry, type RegistryProcess } from '../support/node-process.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { copyToRegistry } from '../support/skopeo.ts'

describe('containerd with a Shoal mirror for docker.io', () => {
  let dir: string
  let upstream: RegistryProcess
  let node: TestNode
  let hosts: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-mirror-ctr-'))
    upstream = await startDockerRegistry({ dataDir: join(dir, 'upstream') })
    await createImageLayout(join(dir, 'image'), { layers: [400_000, 3_000], seed: 'ctr-mirror' })
    await copyToRegistry(join(dir, 'image'), `${upstream.host}/library/app:1.0`)
    node = await startTestNode({ config: { mirrors: [{ registry: 'docker.io', url: upstream.url }], mirrorTagTtlSeconds: 0 } })
    hosts = join(dir, 'certs.d')
    const written = await shoal('containerd-config', '--registry', 'docker.io', '--registry', 'ghcr.io', '--dir', hosts, '--node', node.url)
    assert.equal(written.code, 0, written.stderr)
  })
  after(async () => {
    await node?.stop()
    await upstream?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('writes one hosts.toml per registry: the node first, the registry as fallback', async () => {
    const toml = await readFile(join(hosts, 'docker.io', 'hosts.toml'), 'utf8')
    assert.match(toml, /^server = "https:\/\/registry-1\.docker\.io"$/m)
    assert.match(toml, new RegExp(`^\\[host\\."${node.url.replace(/[.]/g, '\\.')}"\\]\\n  capabilities = \\["pull", "resolve"\\]$`, 'm'))
    assert.match(await readFile(join(hosts, 'ghcr.io', 'hosts.toml'), 'utf8'), /^server = "https:\/\/ghcr\.io"$/m)
    const bad = await shoal('containerd-config', '--dir', hosts)
    assert.notEqual(bad.code, 0)
    assert.equal(bad.stderr, 'shoal: give at least one --registry (docker.io, ghcr.io, …)\n')
  })

  it('pulls docker.io/library/app through the node, and again from a fresh containerd once the upstream is gone', async () => {
    const containerd = await startContainerd()
    try {
      await containerd.ctr('images', 'pull', '--hosts-dir', hosts, 'docker.io/library/app:1.0')
      assert.match(await containerd.ctr('images', 'ls'), /docker\.io\/library\/app:1\.0/)
    } finally {
      await containerd.stop()
    }
    await upstream.stop()
    const fresh: Containerd = await startContainerd()
    try {
      await fresh.ctr('images', 'pull', '--hosts-dir', hosts, 'docker.io/library/app:1.0')
      assert.match(await fresh.ctr('images', 'ls'), /docker\.io\/library\/app:1\.0/)
    } finally {
      await fresh.stop()
    }
  })
})
