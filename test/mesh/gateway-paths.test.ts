// The gateway below a CID: /ipfs/<cid>/<path> through an image's OCI layout directory, its files'
// bytes, the raw block or CAR at a path's end, and the whole tree as a tar that skopeo reads.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import type { ReadableStream as WebReadableStream } from 'node:stream/web'
import { after, before, describe, it } from 'node:test'
import { CarReader } from '@ipld/car'
import { decode as decodeDagPb } from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { sha256 as sha256Hasher } from 'multiformats/hashes/sha2'
import { PEER_HEADER } from '../../src/mesh/block-request.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout, layoutBlobPath, type ImageLayoutResult } from '../support/oci-image.ts'
import { htpasswdText } from '../support/htpasswd.ts'
import { copyToRegistry, inspectRaw, skopeo } from '../support/skopeo.ts'

const MiB = 1024 * 1024
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

const sha256Of = (bytes: Uint8Array): string => `sha256:${createHash('sha256').update(bytes).digest('hex')}`

/** Whether `bytes` hash to `cid` (sha2-256 CIDs, as Shoal makes). */
async function hashesTo (bytes: Uint8Array, cid: CID): Promise<boolean> {
  return Buffer.from((await sha256Hasher.digest(bytes)).digest).equals(Buffer.from(cid.multihash.digest))
}

/** Runs a command; rejects with its stderr on a non-zero exit. */
async function run (command: string, args: string[]): Promise<string> {
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.once('error', reject)
    child.once('close', code => code === 0 ? resolve(stdout) : reject(new Error(`${command} ${args.join(' ')}: exit ${code}: ${stderr}`)))
  })
}

/** The image CID of a pushed tag, from the manifest response's header. */
async function imageCidOf (node: TestNode, reference: string, headers: Record<string, string> = {}): Promise<string> {
  const response = await fetch(`${node.url}/v2/${reference}`, { method: 'HEAD', headers: { accept: MANIFEST, ...headers } })
  assert.equal(response.status, 200)
  const cid = response.headers.get('shoal-image-cid')
  assert.ok(cid !== null && cid !== '', 'the manifest response names the image CID')
  return cid
}

/** The response body into a file, streamed. */
async function download (response: Response, file: string): Promise<void> {
  assert.ok(response.body !== null)
  await pipeline(Readable.fromWeb(response.body as WebReadableStream<Uint8Array>), createWriteStream(file))
}

describe('GET /ipfs/<cid>/<path>', () => {
  let work: string
  let node: TestNode
  let layout: string
  let image: ImageLayoutResult
  let imageCid: string
  const url = (path: string): string => `${node.url}/ipfs/${imageCid}${path}`
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-gateway-paths-'))
    node = await startTestNode()
    layout = join(work, 'image')
    // A layer of three leaves (two of 1 MiB and a tail) and one of a single leaf.
    image = await createImageLayout(layout, { layers: [2 * MiB + 9, 3000], seed: 'gateway-paths' })
    await copyToRegistry(layout, `${node.host}/paths/app:v1`)
    imageCid = await imageCidOf(node, 'paths/app/manifests/v1')
  })
  after(async () => {
    await node?.stop()
    await rm(work, { recursive: true, force: true })
  })

  it('serves the layout\'s files by name: index.json, oci-layout, and every blob, whose bytes hash to its digest', async () => {
    const index = await fetch(url('/index.json'))
    assert.equal(index.status, 200)
    assert.equal(index.headers.get('content-type'), 'application/octet-stream')
    assert.equal(index.headers.get('x-ipfs-path'), `/ipfs/${imageCid}/index.json`)
    const roots = (index.headers.get('x-ipfs-roots') ?? '').split(',')
    assert.equal(roots.length, 2)
    assert.equal(roots[0], imageCid)
    const indexBytes = Buffer.from(await index.arrayBuffer())
    assert.equal(Number(index.headers.get('content-length')), indexBytes.length)
    assert.ok(await hashesTo(indexBytes, CID.parse(roots[1] ?? '')), 'index.json is the block its root names')
    const parsed = JSON.parse(indexBytes.toString('utf8')) as { manifests: Array<{ digest: string, size: number }> }
    assert.equal(parsed.manifests.length, 1)
    assert.equal(parsed.manifests[0]?.digest, image.manifestDigest)
    assert.equal(parsed.manifests[0]?.size, image.manifestSize)

    const ociLayout = await fetch(url('/oci-layout'))
    assert.equal(ociLayout.status, 200)
    assert.deepEqual(await ociLayout.json(), { imageLayoutVersion: '1.0.0' })

    for (const digest of [image.manifestDigest, image.configDigest, ...image.layerDigests]) {
      const response = await fetch(url(`/blobs/${digest.replace(':', '/')}`))
      assert.equal(response.status, 200, digest)
      const bytes = new Uint8Array(await response.arrayBuffer())
      assert.equal(sha256Of(bytes), digest)
      assert.deepEqual(Buffer.from(bytes), await readFile(layoutBlobPath(layout, digest)))
    }
  })

  it('answers HEAD with the file\'s size and no body, and a Range across leaves with 206 and those bytes', async () => {
    const layer = image.layerDigests[0] ?? ''
    const path = url(`/blobs/sha256/${layer.slice('sha256:'.length)}`)
    const whole = await readFile(layoutBlobPath(layout, layer))
    const head = await fetch(path, { method: 'HEAD' })
    assert.equal(head.status, 200)
    assert.equal(Number(head.headers.get('content-length')), whole.length)
    assert.equal(head.headers.get('accept-ranges'), 'bytes')
    assert.equal((await head.arrayBuffer()).byteLength, 0)

    const ranged = await fetch(path, { headers: { range: `bytes=${MiB - 10}-${MiB + 9}` } })
    assert.equal(ranged.status, 206)
    assert.equal(ranged.headers.get('content-range'), `bytes ${MiB - 10}-${MiB + 9}/${whole.length}`)
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), whole.subarray(MiB - 10, MiB + 10))
    const tail = await fetch(path, { headers: { range: 'bytes=-5' } })
    assert.equal(tail.status, 206)
    assert.deepEqual(Buffer.from(await tail.arrayBuffer()), whole.subarray(whole.length - 5))
    assert.equal((await fetch(path, { headers: { range: `bytes=${whole.length}-` } })).status, 416)
  })

  it('answers a missing name with 404 naming it, a path through a file with 404 saying so, an unknown format with 406', async () => {
    const missing = await fetch(url('/blobs/sha256/no-such-blob'))
    assert.equal(missing.status, 404)
    assert.match(missing.headers.get('content-type') ?? '', /^text\/plain/)
    const text = await missing.text()
    assert.equal(text.split('\n').filter(line => line !== '').length, 1, 'one line')
    assert.ok(text.includes('"no-such-blob"'), text)
    assert.ok(text.includes(`/ipfs/${imageCid}/blobs/sha256`), text)

    // An encoded '/' is part of a name, not a step of the path.
    const encoded = await fetch(url('/blobs%2Fsha256'))
    assert.equal(encoded.status, 404)
    assert.ok((await encoded.text()).includes('"blobs/sha256"'))

    const through = await fetch(url('/index.json/deeper'))
    assert.equal(through.status, 404)
    const throughText = await through.text()
    assert.ok(throughText.includes('index.json is a file') && throughText.includes('"deeper"'), throughText)

    const nope = await fetch(url('/index.json?format=nope'))
    assert.equal(nope.status, 406)
    assert.match(await nope.text(), /format/)
    // A directory has no bytes of its own to send: tar or CAR it.
    const directory = await fetch(url('/blobs'))
    assert.equal(directory.status, 406)
    assert.match(await directory.text(), /is a directory/)
    assert.equal((await fetch(`${node.url}/ipfs/not-a-cid/index.json`)).status, 400)
    assert.equal((await fetch(`${node.url}/ipfs/bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy/x`)).status, 404)
  })

  it('answers ?format=raw (or the raw Accept header) at a path with the block at its end, which hashes to its CID', async () => {
    const root = decodeDagPb(new Uint8Array(await (await fetch(url(''), { headers: { accept: 'application/vnd.ipld.raw' } })).arrayBuffer()))
    const blobsLink = root.Links.find(link => link.Name === 'blobs')
    assert.ok(blobsLink !== undefined)

    const raw = await fetch(url('/blobs?format=raw'))
    assert.equal(raw.status, 200)
    assert.equal(raw.headers.get('content-type'), 'application/vnd.ipld.raw')
    const bytes = new Uint8Array(await raw.arrayBuffer())
    assert.ok(await hashesTo(bytes, blobsLink.Hash), 'the bytes are the block the root links as blobs')
    assert.deepEqual(decodeDagPb(bytes).Links.map(link => link.Name), ['sha256'])

    const index = await fetch(url('/index.json'), { headers: { accept: 'application/vnd.ipld.raw' } })
    assert.equal(index.headers.get('content-type'), 'application/vnd.ipld.raw')
    const indexLink = root.Links.find(link => link.Name === 'index.json')
    assert.ok(indexLink !== undefined && await hashesTo(new Uint8Array(await index.arrayBuffer()), indexLink.Hash))
  })

  it('answers ?format=car at a path with the blocks that prove the path, then the DAG at its end', async () => {
    const layer = image.layerDigests[0] ?? ''
    const response = await fetch(url(`/blobs/sha256/${layer.slice('sha256:'.length)}?format=car`))
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-type') ?? '', /^application\/vnd\.ipld\.car; version=1/)
    const reader = await CarReader.fromBytes(new Uint8Array(await response.arrayBuffer()))
    const blocks: Array<{ cid: CID, bytes: Uint8Array }> = []
    for await (const block of reader.blocks()) {
      assert.ok(await hashesTo(block.bytes, block.cid), `block ${block.cid.toString()} verifies`)
      blocks.push(block)
    }
    const [layerRoot] = await reader.getRoots()
    assert.ok(layerRoot !== undefined)
    // The path from the image root, block by block, as a client checks it.
    let at = CID.parse(imageCid)
    for (const name of ['blobs', 'sha256', layer.slice('sha256:'.length)]) {
      const block = blocks.find(b => b.cid.equals(at))
      assert.ok(block !== undefined, `the CAR holds ${at.toString()}, on the way to ${name}`)
      const link = decodeDagPb(block.bytes).Links.find(l => l.Name === name)
      assert.ok(link !== undefined)
      at = link.Hash
    }
    assert.ok(at.equals(layerRoot), 'the CAR\'s root is the path\'s end')
    // The three path blocks, the layer's root and its leaves (random bytes: all distinct), nothing else.
    const leaves = Math.ceil((await readFile(layoutBlobPath(layout, layer))).length / MiB)
    assert.equal(leaves, 3)
    assert.equal(blocks.length, 3 + 1 + leaves)
  })

  it('streams ?format=tar of the image that tar extracts and skopeo copies, digests intact', async () => {
    const response = await fetch(url('?format=tar'))
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'application/x-tar')
    const archive = join(work, 'image.tar')
    await download(response, archive)
    const listing = (await run('tar', ['-tvf', archive])).split('\n').filter(line => line !== '')
    // Directories as directories, files with their sizes, all under the CID (IPIP-288).
    assert.ok(listing.some(line => line.startsWith('d') && line.endsWith(` ${imageCid}/blobs/sha256/`)), listing.join('\n'))
    const layer = image.layerDigests[0] ?? ''
    const layerSize = (await readFile(layoutBlobPath(layout, layer))).length
    assert.ok(listing.some(line => line.startsWith('-') && line.includes(` ${layerSize} `) && line.endsWith(`${imageCid}/blobs/sha256/${layer.slice('sha256:'.length)}`)), listing.join('\n'))
    assert.equal(listing.length, 3 + 2 + 4, 'root, blobs/, sha256/, index.json, oci-layout and the four blobs')

    const extracted = join(work, 'extracted')
    await mkdir(extracted)
    await run('tar', ['-xf', archive, '-C', extracted])
    const dir = join(extracted, imageCid)
    assert.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout'])
    for (const name of await readdir(join(dir, 'blobs', 'sha256'))) {
      assert.equal(sha256Of(await readFile(join(dir, 'blobs', 'sha256', name))), `sha256:${name}`)
    }
    assert.equal(sha256Of(Buffer.from(await inspectRaw(`oci:${dir}`))), image.manifestDigest, 'skopeo reads the manifest from the layout')
    const copied = join(work, 'copied')
    await skopeo(['copy', '--quiet', '--preserve-digests', '--dest-oci-accept-uncompressed-layers', `oci:${dir}`, `oci:${copied}`])
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      assert.equal(sha256Of(await readFile(layoutBlobPath(copied, digest))), digest)
    }
  })

  it('tars a directory below the root (Accept: application/x-tar) under its own name, and a file alone', async () => {
    const response = await fetch(url('/blobs'), { headers: { accept: 'application/x-tar' } })
    assert.equal(response.status, 200)
    const archive = join(work, 'blobs.tar')
    await download(response, archive)
    const names = (await run('tar', ['-tf', archive])).split('\n').filter(line => line !== '')
    assert.equal(names[0], 'blobs/')
    assert.ok(names.every(name => name.startsWith('blobs/')), names.join('\n'))
    assert.equal(names.length, 2 + 4)

    const file = await fetch(url('/index.json?format=tar'))
    const single = join(work, 'index.tar')
    await download(file, single)
    assert.deepEqual((await run('tar', ['-tf', single])).trim().split('\n'), ['index.json'])
    const out = join(work, 'single')
    await mkdir(out)
    await run('tar', ['-xf', single, '-C', out])
    assert.equal(JSON.parse(await readFile(join(out, 'index.json'), 'utf8')).manifests[0].digest, image.manifestDigest)
  })

  it('keeps the bare CID as it was: raw block and CAR, 406 for a directory without a format', async () => {
    const raw = await fetch(url(''), { headers: { accept: 'application/vnd.ipld.raw' } })
    assert.equal(raw.headers.get('content-type'), 'application/vnd.ipld.raw')
    assert.equal(raw.headers.get('etag'), `"${imageCid}.raw"`)
    assert.ok(await hashesTo(new Uint8Array(await raw.arrayBuffer()), CID.parse(imageCid)))
    const car = await fetch(url('?format=car'))
    assert.equal(car.headers.get('content-type'), 'application/vnd.ipld.car; version=1')
    assert.deepEqual((await (await CarReader.fromBytes(new Uint8Array(await car.arrayBuffer()))).getRoots()).map(String), [imageCid])
    assert.equal((await fetch(url(''))).status, 406)
    // A file by its own CID, with no format: its bytes.
    const indexCid = (await fetch(url('/index.json'))).headers.get('x-ipfs-roots')?.split(',')[1] ?? ''
    const index = await fetch(`${node.url}/ipfs/${indexCid}`)
    assert.equal(index.status, 200)
    assert.equal(JSON.parse(await index.text()).manifests[0].digest, image.manifestDigest)
  })
})

describe('a tar the client leaves, and one that meets a missing block', () => {
  let work: string
  let node: TestNode
  let image: ImageLayoutResult
  let imageCid: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-gateway-tar-leave-'))
    node = await startTestNode()
    image = await createImageLayout(join(work, 'image'), { layers: [64 * MiB], seed: 'gateway-tar-leave' })
    await copyToRegistry(join(work, 'image'), `${node.host}/paths/big:v1`)
    imageCid = await imageCidOf(node, 'paths/big/manifests/v1')
  })
  after(async () => {
    await node?.stop()
    await rm(work, { recursive: true, force: true })
  })

  const bytesOut = async (): Promise<number> => (await node.node.metrics.bytesOut.get()).values.reduce((sum, { value }) => sum + value, 0)

  it('stops reading the image once the client is gone', async t => {
    // Every leaf byte the node reads from disk, counted at the block store.
    const store = node.node.blockstore
    const getRange = store.getRange.bind(store)
    let read = 0
    store.getRange = async (...args: Parameters<typeof getRange>) => {
      const bytes = await getRange(...args)
      read += bytes.length
      return bytes
    }
    t.after(() => { store.getRange = getRange })
    const before = await bytesOut()
    const leave = new AbortController()
    const response = await fetch(`${node.url}/ipfs/${imageCid}?format=tar`, { signal: leave.signal })
    assert.equal(response.status, 200)
    const reader = response.body?.getReader()
    assert.ok(reader !== undefined)
    let received = 0
    while (received < MiB) {
      const { value, done } = await reader.read()
      if (done) break
      received += value.length
    }
    leave.abort()
    await reader.cancel().catch(() => {})
    await new Promise(resolve => setTimeout(resolve, 1000))
    const sent = await bytesOut() - before
    const readThen = read
    await new Promise(resolve => setTimeout(resolve, 500))
    assert.equal(await bytesOut() - before, sent, 'nothing more goes out')
    assert.equal(read, readThen, 'nothing more is read')
    // Read ahead and socket buffers, not the 64 MiB layer.
    assert.ok(sent < 16 * MiB, `${sent} bytes sent to a client that took ${received} and left`)
    assert.ok(read > 0 && read < 16 * MiB, `${read} bytes read for a client that took ${received} and left`)
    // The node still answers.
    assert.equal((await fetch(`${node.url}/ipfs/${imageCid}/oci-layout`)).status, 200)
  })

  it('cuts the tar when a block is missing part way, never ends it cleanly', async () => {
    const layer = image.layerDigests[0] ?? ''
    const layerRoot = await fetch(`${node.url}/ipfs/${imageCid}/blobs/sha256/${layer.slice('sha256:'.length)}?format=raw`)
    const lastLeaf = decodeDagPb(new Uint8Array(await layerRoot.arrayBuffer())).Links.at(-1)?.Hash
    assert.ok(lastLeaf !== undefined)
    await node.node.blockstore.delete(lastLeaf)
    const response = await fetch(`${node.url}/ipfs/${imageCid}?format=tar`)
    assert.equal(response.status, 200, 'the archive starts: the missing leaf is far in')
    await assert.rejects(response.arrayBuffer(), 'the body ends in a transfer error, not a clean end')
    assert.equal((await fetch(`${node.url}/v2/`)).status, 200)
  })
})

describe('/ipfs/<cid>/<path> behind the access guard', () => {
  let work: string
  let node: TestNode
  let member: TestNode
  let imageCid: string
  const basic = (user: string): string => `Basic ${Buffer.from(`${user}:${user}-pw`).toString('base64')}`
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-gateway-paths-auth-'))
    await writeFile(join(work, 'htpasswd'), htpasswdText({ alice: 'alice-pw', carol: 'carol-pw', root: 'root-pw' }))
    const auth = { htpasswd: join(work, 'htpasswd'), admins: ['root'], accessRules: [{ repositories: ['secret/*'], users: ['alice'], allow: ['pull' as const, 'push' as const] }] }
    node = await startTestNode({ config: { ...auth, mesh: true } })
    member = await startTestNode({ config: { ...auth, peers: [node.node.fleet?.mesh.addresses[0] ?? ''] } })
    await createImageLayout(join(work, 'image'), { layers: [4000], seed: 'gateway-paths-auth' })
    await copyToRegistry(join(work, 'image'), `${node.host}/secret/app:v1`, { creds: 'alice:alice-pw' })
    imageCid = await imageCidOf(node, 'secret/app/manifests/v1', { authorization: basic('alice') })
  })
  after(async () => {
    await Promise.all([member, node].map(async n => await n?.stop()))
    await rm(work, { recursive: true, force: true })
  })

  it('checks a path by the CID in its first segment: pullers of the image and admins read it, others do not', async () => {
    const path = `/ipfs/${imageCid}/index.json`
    assert.equal((await fetch(`${node.url}${path}`)).status, 401)
    assert.equal((await fetch(`${node.url}${path}`, { headers: { authorization: basic('carol') } })).status, 403)
    assert.equal((await fetch(`${node.url}${path}`, { headers: { authorization: basic('alice') } })).status, 200)
    assert.equal((await fetch(`${node.url}${path}?format=tar`, { headers: { authorization: basic('alice') } })).status, 200)
    assert.equal((await fetch(`${node.url}${path}`, { headers: { authorization: basic('root') } })).status, 200)
  })

  it('gives a member\'s signed request raw blocks only: not a tar, not a file\'s bytes', async () => {
    const mesh = member.node.fleet?.mesh
    assert.ok(mesh !== undefined)
    const signed = async (path: string, accept?: string): Promise<number> => {
      const headers = { [PEER_HEADER]: mesh.peerId, ...await mesh.signRequest('GET', `${node.host}${path}`), ...(accept === undefined ? {} : { accept }) }
      return (await fetch(`${node.url}${path}`, { headers })).status
    }
    // Once the node knows the member: a raw block, as members fetch.
    await eventually(async () => await signed(`/ipfs/${imageCid}`, 'application/vnd.ipld.raw') === 200 ? true : undefined, 20_000, 'the member\'s raw block')
    assert.equal(await signed(`/ipfs/${imageCid}/index.json?format=raw`), 200, 'a raw block at a path')
    assert.equal(await signed(`/ipfs/${imageCid}?format=tar`), 403)
    assert.equal(await signed(`/ipfs/${imageCid}`, 'application/x-tar'), 403)
    assert.equal(await signed(`/ipfs/${imageCid}/index.json`), 403)
  })
})

describe('/ipfs/<cid>/<path> on a node that fetches what it lacks (gatewayFetch)', () => {
  let work: string
  let holder: TestNode
  let fetching: TestNode
  let layout: string
  let image: ImageLayoutResult
  let imageCid: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-gateway-paths-fetch-'))
    holder = await startTestNode({ config: { mesh: true } })
    fetching = await startTestNode({ config: { peers: [holder.node.fleet?.mesh.addresses[0] ?? ''], gatewayFetch: true } })
    layout = join(work, 'image')
    image = await createImageLayout(layout, { layers: [MiB + 17], seed: 'gateway-paths-fetch' })
    await copyToRegistry(layout, `${holder.host}/paths/fetched:v1`)
    imageCid = await imageCidOf(holder, 'paths/fetched/manifests/v1')
    await eventually(async () => ((await fetching.node.fleet?.nodes())?.length ?? 0) >= 2 ? true : undefined, 10_000, 'the inventory')
  })
  after(async () => {
    await Promise.all([fetching, holder].map(async n => await n?.stop()))
    await rm(work, { recursive: true, force: true })
  })

  it('reads the path and the file through the fleet, as its CARs do', async () => {
    const layer = image.layerDigests[0] ?? ''
    assert.equal(await fetching.node.blockstore.has(CID.parse(imageCid)), false, 'the image is not held here')
    const response = await fetch(`${fetching.url}/ipfs/${imageCid}/blobs/sha256/${layer.slice('sha256:'.length)}`)
    assert.equal(response.status, 200)
    assert.equal(sha256Of(new Uint8Array(await response.arrayBuffer())), layer)
    assert.ok(await fetching.node.blockstore.has(CID.parse(imageCid)), 'the path\'s blocks are now held')
  })
})
