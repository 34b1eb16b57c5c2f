// HTTPS on the listen port (issue 12): a certificate from the operator's own CA, verified by the
// clients (curl, skopeo), and a wrong certificate or key refused at start in one line.
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { shoal } from '../support/cli.ts'
import { curl } from '../support/curl.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
import { sha256 } from '../support/registry-client.ts'
import { podmanPull } from '../support/podman.ts'
import { copyFromRegistry, copyToRegistry, inspectRaw } from '../support/skopeo.ts'
import { makeCertificates, type TestCertificates } from '../support/tls.ts'

/** curl's exit code and the HTTP status it got. */
async function curlStatus (url: string, ...flags: string[]): Promise<{ code: number, status: number }> {
  const { code, status } = await curl(url, ...flags)
  return { code, status }
}

describe('a node serving HTTPS', () => {
  let dir: string
  let certs: TestCertificates
  let node: TestNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-tls-'))
    certs = await makeCertificates(dir)
    node = await startTestNode({ config: { tlsCert: certs.cert, tlsKey: certs.key } })
  })
  after(async () => {
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('answers on https:// with a certificate that verifies against the CA, and only against it', async () => {
    assert.match(node.url, /^https:\/\/127\.0\.0\.1:\d+$/)
    assert.deepEqual(await curlStatus(`${node.url}/v2/`, '--cacert', certs.caCert), { code: 0, status: 200 })
    // Without the CA curl refuses the certificate (60: peer certificate cannot be authenticated).
    assert.equal((await curlStatus(`${node.url}/v2/`)).code, 60)
    // Plain HTTP on the TLS port gets no registry answer.
    assert.notEqual((await curlStatus(`${node.url.replace('https:', 'http:')}/v2/`)).status, 200)
  })

  it('skopeo pushes and pulls with TLS verification on, digests unchanged', async () => {
    const layout = join(dir, 'image')
    const image = await createImageLayout(layout, { layers: [4096, 1024 * 1024 + 7], seed: 'tls' })
    await copyToRegistry(layout, `${node.host}/tls/app:1.0`, { certDir: certs.caDir })
    const out = join(dir, 'image-out')
    await copyFromRegistry(`${node.host}/tls/app:1.0`, out, { certDir: certs.caDir })
    assert.deepEqual((await readLayoutIndex(out)).manifests.map(m => m.digest), [image.manifestDigest])
    for (const digest of [image.configDigest, ...image.layerDigests]) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
    // Verification is really on: with no CA to trust, skopeo refuses the node.
    const noCa = join(dir, 'no-ca')
    await mkdir(noCa, { recursive: true })
    await assert.rejects(inspectRaw(`${node.host}/tls/app:1.0`, { certDir: noCa }), /certificate signed by unknown authority/)
    // podman too: the image it pulls is the one pushed (its id is the config's digest), and
    // without the CA it refuses the node.
    assert.equal(`sha256:${await podmanPull(`${node.host}/tls/app:1.0`, { certDir: certs.caDir })}`, image.configDigest)
    await assert.rejects(podmanPull(`${node.host}/tls/app:1.0`, { certDir: noCa }), /certificate signed by unknown authority/)
  })
})

describe('a fleet of two nodes serving HTTPS', () => {
  let dir: string
  let certs: TestCertificates
  let a: TestNode
  let b: TestNode
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-tls-mesh-'))
    certs = await makeCertificates(dir)
    const tls = { tlsCert: certs.cert, tlsKey: certs.key, tlsCa: certs.caCert }
    a = await startTestNode({ config: { ...tls, mesh: true } })
    b = await startTestNode({ config: { ...tls, peers: [a.node.fleet?.mesh.addresses[0] ?? ''] } })
  })
  after(async () => {
    await Promise.all([a, b].map(async node => await node?.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('a pull from one node fetches the blocks from the other over verified HTTPS (tlsCa)', async () => {
    const layout = join(dir, 'image')
    const image = await createImageLayout(layout, { layers: [2 * 1024 * 1024 + 5], seed: 'tls-mesh' })
    await copyToRegistry(layout, `${a.host}/tls/mesh:1.0`, { certDir: certs.caDir })
    await eventually(async () => (await b.node.fleet?.catalogue.getTag('tls/mesh', '1.0')) ?? undefined, 10_000, 'the tag on B')
    const out = join(dir, 'image-out')
    await copyFromRegistry(`${b.host}/tls/mesh:1.0`, out, { certDir: certs.caDir })
    for (const digest of image.layerDigests) assert.equal(sha256(await readFile(layoutBlobPath(out, digest))), digest)
    const fetched = (await b.node.metrics.meshBytesFetched.get()).values.reduce((sum, { value }) => sum + value, 0)
    assert.ok(fetched >= 2 * 1024 * 1024, `B fetched ${fetched} bytes from A`)
  })
})

describe('shoal serve with a bad TLS setting', () => {
  let dir: string
  let certs: TestCertificates
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-tls-bad-'))
    certs = await makeCertificates(dir)
  })
  after(async () => { await rm(dir, { recursive: true, force: true }) })

  const serve = async (...flags: string[]): Promise<{ stderr: string, code: number }> =>
    await shoal('serve', '--listen', '127.0.0.1:0', '--data', join(dir, 'data'), ...flags)

  it('refuses a certificate without its key, a missing file and a key of another certificate, each in one line', async () => {
    const cases: Array<[string[], RegExp]> = [
      [['--tls-cert', certs.cert], /^shoal: config: tlsCert and tlsKey go together: tlsCert is set, tlsKey is not\n$/],
      [['--tls-cert', certs.cert, '--tls-key', join(dir, 'missing.key')], /^shoal: config: cannot read tlsKey .*missing\.key: ENOENT[^\n]*\n$/],
      [['--tls-cert', certs.cert, '--tls-key', join(dir, 'ca.key')], /^shoal: config: tlsCert .* and tlsKey .* are not a usable certificate and key: [^\n]*\n$/],
      [['--tls-ca', certs.key, '--mesh'], /^shoal: config: tlsCa .*node\.key holds no PEM certificate\n$/]
    ]
    for (const [flags, expected] of cases) {
      const { stderr, code } = await serve(...flags)
      assert.equal(code, 1, stderr)
      assert.match(stderr, expected)
    }
  })
})
