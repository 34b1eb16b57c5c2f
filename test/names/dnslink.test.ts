// DNSLink (issue 14): a domain names content through `_dnslink.<domain>`, asked of a DNS server on
// loopback; pulled through /v2 as dnslink/<domain> with skopeo, resolved at /ipns/<domain> as
// gateways do, through IPNS names too; no record, loops and a silent DNS server answer clearly.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { shoal } from '../support/cli.ts'
import { startDnsServer, type TestDnsServer } from '../support/dns-server.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, readLayoutIndex } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

describe('DNSLink names', () => {
  let work: string
  let dns: TestDnsServer
  let silentDns: TestDnsServer
  let node: TestNode
  let imageCid: string
  let manifestDigest: string
  let selfName: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-dnslink-'))
    const records: Record<string, string[]> = {}
    dns = await startDnsServer(records)
    silentDns = await startDnsServer({}, { silent: true })
    node = await startTestNode({ config: { dnsServers: [dns.address] } })
    const layout = await createImageLayout(join(work, 'site'), { layers: [200_000], seed: 'dnslink' })
    manifestDigest = layout.manifestDigest
    await copyToRegistry(join(work, 'site'), `${node.host}/names/site:v1`)
    imageCid = (await fetch(`${node.url}/v2/names/site/manifests/v1`, { method: 'HEAD', headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })).headers.get('shoal-image-cid') ?? ''
    // A node outside any mesh publishes for itself: its own name resolves here.
    const published = await shoal('name', 'publish', 'names/site:v1', '--node', node.url, '--json')
    assert.equal(published.code, 0, published.stderr)
    selfName = (JSON.parse(published.stdout) as { name: string }).name
    Object.assign(records, {
      '_dnslink.app.example.com': [`dnslink=/ipfs/${imageCid}`],
      '_dnslink.named.example.com': ['v=spf1 -all', `dnslink=/ipns/${selfName}`],
      '_dnslink.loop-a.example.com': ['dnslink=/ipns/loop-b.example.com'],
      '_dnslink.loop-b.example.com': ['dnslink=/ipns/loop-a.example.com'],
      '_dnslink.plain.example.com': ['hello=world']
    })
  })
  after(async () => {
    await node?.stop()
    await dns?.close()
    await silentDns?.close()
    await rm(work, { recursive: true, force: true })
  })

  it('skopeo pulls <node>/dnslink/<domain>:latest, and DNS is asked once for the whole pull', async () => {
    const out = join(work, 'pulled')
    await copyFromRegistry(`${node.host}/dnslink/app.example.com:latest`, out)
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [manifestDigest])
    assert.equal(dns.queries.get('_dnslink.app.example.com'), 1, 'the answer is kept for the pull\'s requests')
  })

  it('/ipns/<domain> resolves the DNSLink as gateways do, through an IPNS name too', async () => {
    const direct = await fetch(`${node.url}/ipns/app.example.com`, { redirect: 'manual' })
    assert.equal(direct.status, 302)
    assert.equal(direct.headers.get('location'), `/ipfs/${imageCid}`)
    // Domain -> IPNS name -> image, and the path below it is kept: following the redirect reads the layout's index.json.
    const below = await fetch(`${node.url}/ipns/named.example.com/index.json`, { redirect: 'manual' })
    assert.equal(below.headers.get('location'), `/ipfs/${imageCid}/index.json`)
    assert.equal(below.headers.get('x-ipfs-path'), '/ipns/named.example.com/index.json')
    const index = await fetch(`${node.url}/ipns/named.example.com/index.json`)
    assert.equal(index.status, 200)
    assert.equal((await index.json() as { manifests: Array<{ digest: string }> }).manifests[0]?.digest, manifestDigest)

    const resolved = await shoal('name', 'resolve', 'named.example.com', '--node', node.url, '--json')
    assert.equal(resolved.code, 0, resolved.stderr)
    assert.deepEqual((JSON.parse(resolved.stdout) as { chain: string[] }).chain, ['/ipns/named.example.com', `/ipns/${selfName}`, `/ipfs/${imageCid}`])
    const manifest = await fetch(`${node.url}/v2/dnslink/named.example.com/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    assert.equal(manifest.status, 200)
    assert.equal(manifest.headers.get('docker-content-digest'), manifestDigest)
  })

  it('a domain with no DNSLink is a clear 404 on every face; a loop stops after a few hops', async () => {
    const manifest = await fetch(`${node.url}/v2/dnslink/missing.example.com/manifests/latest`)
    assert.equal(manifest.status, 404)
    const body = await manifest.json() as { errors: Array<{ code: string, message: string }> }
    assert.equal(body.errors[0]?.code, 'NAME_UNKNOWN')
    assert.match(body.errors[0]?.message ?? '', /missing\.example\.com has no DNSLink.*_dnslink\.missing\.example\.com/)
    const gateway = await fetch(`${node.url}/ipns/plain.example.com`)
    assert.equal(gateway.status, 404)
    assert.match(await gateway.text(), /plain\.example\.com has no DNSLink/)
    const cli = await shoal('name', 'resolve', 'missing.example.com', '--node', node.url)
    assert.notEqual(cli.code, 0)
    assert.equal(cli.stderr.trim().split('\n').length, 1)
    assert.match(cli.stderr, /has no DNSLink/)
    const loop = await fetch(`${node.url}/ipns/loop-a.example.com`)
    assert.equal(loop.status, 404)
    assert.match(await loop.text(), /more than 4 hops.*loop/)
    const notDomain = await fetch(`${node.url}/v2/dnslink/localhost/manifests/latest`)
    assert.equal(notDomain.status, 400)
    assert.equal((await notDomain.json() as { errors: Array<{ code: string }> }).errors[0]?.code, 'NAME_INVALID')
  })

  it('a DNS server that does not answer is a 503 within seconds, not a hang', async () => {
    const other = await startTestNode({ config: { dnsServers: [silentDns.address] } })
    try {
      const started = Date.now()
      const response = await fetch(`${other.url}/ipns/app.example.com`)
      assert.equal(response.status, 503)
      assert.match(await response.text(), /DNS did not answer for _dnslink\.app\.example\.com/)
      assert.ok(Date.now() - started < 8_000, `took ${Date.now() - started} ms`)
      assert.ok((silentDns.queries.get('_dnslink.app.example.com') ?? 0) >= 1, 'the configured server was asked')
    } finally {
      await other.stop()
    }
  })
})
