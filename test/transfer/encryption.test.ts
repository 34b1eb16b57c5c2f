// Encrypted images (issue 14) as users move them: `shoal push --encrypt` and `shoal pull
// --decrypt` against real nodes, both ways with skopeo's --encryption-key and --decryption-key;
// a fleet member without the key holds and serves the image but cannot read it.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { createPublicKey } from 'node:crypto'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { keyIdOf } from '../../src/crypt/keys.ts'
import { shoalWith } from '../support/cli.ts'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, type ImageLayoutResult } from '../support/oci-image.ts'
import { skopeo } from '../support/skopeo.ts'

const run = promisify(execFile)

interface Manifest { config: { digest: string }, layers: Array<{ mediaType: string, digest: string, annotations?: Record<string, string> }> }

async function manifestOf (layout: string): Promise<Manifest> {
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> }
  const digest = index.manifests.at(-1)?.digest ?? ''
  return JSON.parse(await readFile(join(layout, 'blobs', 'sha256', digest.slice('sha256:'.length)), 'utf8')) as Manifest
}

describe('encrypted images', () => {
  let dir: string
  let a: TestNode
  let b: TestNode
  let image: ImageLayoutResult
  let env: NodeJS.ProcessEnv
  const key = (name: string): string => join(dir, 'keys', name)

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-encryption-'))
    env = { XDG_STATE_HOME: join(dir, 'state') }
    await run('mkdir', ['-p', join(dir, 'keys')])
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key('rsa.pem')])
    await run('openssl', ['pkey', '-in', key('rsa.pem'), '-pubout', '-out', key('rsa.pub.pem')])
    await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key('ec.pem')])
    await run('openssl', ['pkey', '-in', key('ec.pem'), '-pubout', '-out', key('ec.pub.pem')])
    await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', key('other.pem')])
    image = await createImageLayout(join(dir, 'image'), { layers: [1_500_000, 200_000], seed: 'encryption' })
    ;[a, b] = await startFleet(2) as [TestNode, TestNode]
  })
  after(async () => {
    await Promise.all([a, b].map(async node => await node?.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('pushes an image encrypted for two recipients; skopeo decrypts it with either key', async () => {
    const pushed = await shoalWith(env, 'push', `oci:${join(dir, 'image')}`, `${a.host}/secret/app:1`, '--encrypt', `jwe:${key('rsa.pub.pem')}`, '--encrypt', `jwe:${key('ec.pub.pem')}`)
    assert.equal(pushed.code, 0, pushed.stderr)
    const stored = JSON.parse((await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${a.host}/secret/app:1`])).stdout) as Manifest
    assert.equal(stored.config.digest, image.configDigest, 'the config stays plain')
    for (const layer of stored.layers) {
      assert.match(layer.mediaType, /\+encrypted$/)
      assert.ok(layer.annotations?.['org.opencontainers.image.enc.keys.jwe'] !== undefined)
      assert.ok(!image.layerDigests.includes(layer.digest), 'the stored layer is ciphertext')
    }
    for (const private_ of ['rsa.pem', 'ec.pem']) {
      const out = join(dir, `skopeo-${private_}`)
      await skopeo(['copy', '--quiet', '--src-tls-verify=false', '--decryption-key', key(private_), `docker://${a.host}/secret/app:1`, `oci:${out}`])
      assert.deepEqual((await manifestOf(out)).layers.map(layer => layer.digest), image.layerDigests, private_)
    }
  })

  it('pulls what skopeo encrypted and decrypts it to the original layers', async () => {
    await skopeo(['copy', '--quiet', '--dest-tls-verify=false', '--encryption-key', `jwe:${key('rsa.pub.pem')}`, `oci:${join(dir, 'image')}:latest`, `docker://${a.host}/secret/by-skopeo:1`])
    const pulled = await shoalWith(env, 'pull', `${a.host}/secret/by-skopeo:1`, `oci:${join(dir, 'decrypted')}`, '--decrypt', key('rsa.pem'))
    assert.equal(pulled.code, 0, pulled.stderr)
    // skopeo compresses before it encrypts: what comes back is its gzip of each layer, whose content is the original.
    const layers = (await manifestOf(join(dir, 'decrypted'))).layers
    assert.equal(layers.length, image.layerDigests.length)
    for (const [index, layer] of layers.entries()) {
      assert.doesNotMatch(layer.mediaType, /encrypted/)
      const { stdout } = await run('sh', ['-c', `gzip -dc < ${join(dir, 'decrypted', 'blobs', 'sha256', layer.digest.slice(7))} | sha256sum`])
      assert.equal(`sha256:${stdout.split(' ')[0] ?? ''}`, image.layerDigests[index])
    }
  })

  it('spreads through the mesh as any image: a member without the key serves it, and only the key decrypts it', async () => {
    await eventually(async () => await b.node.fleet?.catalogue.getTag('secret/app', '1'), 15_000, 'the tag on B')
    const asIs = await shoalWith(env, 'pull', `${b.host}/secret/app:1`, `oci:${join(dir, 'from-b')}`)
    assert.equal(asIs.code, 0, asIs.stderr)
    assert.ok((await manifestOf(join(dir, 'from-b'))).layers.every(layer => layer.mediaType.endsWith('+encrypted')), 'without a key: the encrypted image, as stored')
    const decrypted = await shoalWith(env, 'pull', `${b.host}/secret/app:1`, `oci:${join(dir, 'from-b-plain')}`, '--decrypt', `jwe:${key('ec.pem')}`)
    assert.equal(decrypted.code, 0, decrypted.stderr)
    const plain = await manifestOf(join(dir, 'from-b-plain'))
    assert.deepEqual(plain.layers.map(layer => layer.digest), image.layerDigests)
    assert.ok(plain.layers.every(layer => layer.annotations === undefined || Object.keys(layer.annotations).every(name => !name.startsWith('org.opencontainers.image.enc.'))))
  })

  it('marks the encrypted image in the UI with its recipients\' key ids', async () => {
    const ids = await Promise.all(['rsa.pub.pem', 'ec.pub.pem'].map(async name => keyIdOf(createPublicKey(await readFile(key(name))))))
    await eventually(async () => {
      const page = await (await fetch(`${b.url}/`)).text()
      if (!page.includes('data-encrypted')) return undefined
      assert.match(page, /secret\/app:1<\/span> <span class="chip" data-encrypted/)
      for (const id of ids) assert.ok(page.includes(id), `key ${id} listed`)
      return true
    }, 15_000, 'the encrypted chip and the key ids')
  })

  it('refuses a key that is not a recipient in one line, and writes nothing', async () => {
    const refused = await shoalWith(env, 'pull', `${a.host}/secret/app:1`, `oci:${join(dir, 'wrong')}`, '--decrypt', key('other.pem'), '--quiet')
    assert.equal(refused.code, 1)
    assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr)
    assert.match(refused.stderr, /^shoal: no given key can decrypt layer sha256:[0-9a-f]+: it is encrypted for .*; tried .*other\.pem/)
    await assert.rejects(stat(join(dir, 'wrong')))
    const badKey = await shoalWith(env, 'push', `oci:${join(dir, 'image')}`, `${a.host}/secret/x:1`, '--encrypt', `jwe:${join(dir, 'image', 'index.json')}`)
    assert.equal(badKey.code, 1)
    assert.match(badKey.stderr, /^shoal: .*index\.json/)
  })
})
