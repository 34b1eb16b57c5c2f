// A mirrored image is fetched once per fleet (issue 13): two meshed nodes pull the same upstream
// image through themselves, and the upstream (docker-registry behind a byte-counting proxy) sends
// it once; a strategy names a mirrored image no node has pulled yet, and the fleet pre-warms it.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startCountingProxy, type CountingProxy } from '../support/counting-proxy.ts'
import { htpasswdText } from '../support/htpasswd.ts'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { metricSum } from '../support/metrics.ts'
import { startDockerRegistry, type RegistryProcess } from '../support/node-process.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const IMAGE_BYTES = 3 * 1024 * 1024

describe('three meshed nodes mirroring one upstream', () => {
  let dir: string
  let upstream: RegistryProcess
  let proxy: CountingProxy
  let a: TestNode
  let b: TestNode
  let c: TestNode

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-mirror-fleet-'))
    upstream = await startDockerRegistry({ dataDir: join(dir, 'upstream') })
    await createImageLayout(join(dir, 'image'), { layers: [IMAGE_BYTES], seed: 'fleet-mirror' })
    await copyToRegistry(join(dir, 'image'), `${upstream.host}/library/app:1.0`)
    await createImageLayout(join(dir, 'warm'), { layers: [500_000], seed: 'fleet-warm' })
    await copyToRegistry(join(dir, 'warm'), `${upstream.host}/library/warm:2.0`)
    await createImageLayout(join(dir, 'rush'), { layers: [IMAGE_BYTES / 2, IMAGE_BYTES / 2], seed: 'fleet-rush' })
    await copyToRegistry(join(dir, 'rush'), `${upstream.host}/library/rush:3.0`)
    proxy = await startCountingProxy(upstream.url)
    ;[a, b, c] = await startFleet(3, { mirrors: [{ registry: 'docker.io', url: proxy.url }] }) as [TestNode, TestNode, TestNode]
  })
  after(async () => {
    await Promise.all([a, b, c].map(async node => await node?.stop()))
    await proxy?.stop()
    await upstream?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('fetches the image from the upstream once: the second node gets it from the fleet', async () => {
    await copyFromRegistry(`${a.host}/docker.io/library/app:1.0`, join(dir, 'pulled-a'))
    const afterFirst = proxy.bytesSent()
    assert.ok(afterFirst >= IMAGE_BYTES, `the upstream sent the image (${afterFirst} bytes)`)
    await eventually(async () => await b.node.fleet?.catalogue.getTag('docker.io/library/app', '1.0'), 10_000, 'the mirrored tag on B')
    await copyFromRegistry(`${b.host}/docker.io/library/app:1.0`, join(dir, 'pulled-b'))
    const upstreamBytes = proxy.bytesSent()
    assert.ok(upstreamBytes < 1.2 * IMAGE_BYTES, `the upstream sent ${upstreamBytes} bytes for a ${IMAGE_BYTES}-byte image and two nodes`)
    // Whichever of the three fetched it from the upstream (rendezvous), B's pull found its tag in the fleet.
    assert.ok(await metricSum(b.url, 'shoal_mirror_requests_total', { registry: 'docker.io', outcome: 'hit' }) > 0)
    assert.equal(await metricSum(a.url, 'shoal_mirror_requests_total', { registry: 'docker.io', outcome: 'miss' }), 1)
    const fromUpstream = await Promise.all([a, b, c].map(async node => await metricSum(node.url, 'shoal_mirror_upstream_bytes_total', { registry: 'docker.io' })))
    assert.equal(fromUpstream.filter(bytes => bytes > 0).length, 1, `one node fetched from the upstream (${fromUpstream.join(', ')})`)
    assert.ok(fromUpstream.reduce((sum, bytes) => sum + bytes, 0) >= IMAGE_BYTES)
  })

  it('serves a pull by digest of an image the fleet mirrored from the fleet, not the upstream', async () => {
    const digest = (await fetch(`${a.url}/v2/docker.io/library/app/manifests/1.0`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).headers.get('docker-content-digest') ?? ''
    const before = proxy.bytesSent()
    await eventually(async () => await c.node.fleet?.catalogue.getTag('docker.io/library/app', '1.0'), 10_000, 'the mirrored tag on C')
    await copyFromRegistry(`${c.host}/docker.io/library/app@${digest}`, join(dir, 'by-digest-c'))
    assert.equal(proxy.bytesSent() - before, 0, 'the upstream sent nothing')
  })

  it('pre-warms the fleet when a strategy names a mirrored image no node has pulled', async () => {
    const created = await fetch(`${b.url}/api/v1/strategies`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: 'docker.io/library/warm:2.0', kind: 'all' }) })
    const text = await created.text()
    assert.equal(created.status, 201, text)
    const { strategy } = JSON.parse(text) as { strategy: { id: string } }
    await eventually(async () => {
      const status = await (await fetch(`${b.url}/api/v1/strategies/${strategy.id}/status`)).json() as { desired: Array<{ state: string }> }
      return status.desired.filter(entry => entry.state === 'held').length === 3 ? true : undefined
    }, 30_000, 'every node to hold the mirrored image')
  })

  it('fetches an image three nodes miss at once from the upstream once: one member fetches it, the others from that member', async () => {
    const before = proxy.bytesSent()
    await Promise.all([a, b, c].map(async (node, index) => await copyFromRegistry(`${node.host}/docker.io/library/rush:3.0`, join(dir, `rush-${index}`))))
    const sent = proxy.bytesSent() - before
    assert.ok(sent < 1.2 * IMAGE_BYTES, `the upstream sent ${sent} bytes for a ${IMAGE_BYTES}-byte image and three nodes`)
    // The two that did not fetch it from the upstream took it from the one that did, and count it so.
    const fromMembers = await Promise.all([a, b, c].map(async node => await metricSum(node.url, 'shoal_mirror_member_bytes_total', { registry: 'docker.io' })))
    assert.ok(fromMembers.reduce((sum, bytes) => sum + bytes, 0) >= 2 * IMAGE_BYTES, `bytes from members: ${fromMembers.join(', ')}`)
  })
})

describe('three meshed nodes with users mirroring one upstream', () => {
  let dir: string
  let upstream: RegistryProcess
  let proxy: CountingProxy
  let nodes: TestNode[] = []

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-mirror-fleet-users-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText({ alice: 'alice-pw' }))
    upstream = await startDockerRegistry({ dataDir: join(dir, 'upstream') })
    await createImageLayout(join(dir, 'image'), { layers: [IMAGE_BYTES], seed: 'fleet-users' })
    await copyToRegistry(join(dir, 'image'), `${upstream.host}/library/private:1.0`)
    proxy = await startCountingProxy(upstream.url)
    nodes = await startFleet(3, { mirrors: [{ registry: 'docker.io', url: proxy.url }], htpasswd: join(dir, 'htpasswd') })
  })
  after(async () => {
    await Promise.all(nodes.map(async node => await node.stop()))
    await proxy?.stop()
    await upstream?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('fetches an image all miss at once from the upstream once: members ask each other with tokens they issue', async () => {
    // Members take each other's tokens once each one's identity (with its token key) has spread.
    for (const node of nodes) {
      await eventually(async () => ((await node.node.fleet?.catalogue.allNodes()) ?? []).filter(record => record.tokenKey !== undefined).length === 3 ? true : undefined, 20_000, 'every token key on every node')
    }
    await Promise.all(nodes.map(async (node, index) => await copyFromRegistry(`${node.host}/docker.io/library/private:1.0`, join(dir, `pulled-${index}`), { creds: 'alice:alice-pw' })))
    const sent = proxy.bytesSent()
    assert.ok(sent < 1.2 * IMAGE_BYTES, `the upstream sent ${sent} bytes for a ${IMAGE_BYTES}-byte image and three nodes`)
  })
})
