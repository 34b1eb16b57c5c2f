// Hostile requests, as an attacker or a broken client sends them, over raw sockets on loopback:
// bad paths, names, digests, headers, lengths, chunked encodings, methods and huge URLs, on /v2,
// /api/v1 and /ipfs. The node never answers 5xx, every /v2 error has the OCI body, nothing is
// logged as an internal error, and an image pushed before (with skopeo) pulls back intact.
// Bounded: a fixed number of requests from a seeded generator (FUZZ_SEED to replay another run).
import assert from 'node:assert/strict'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { rawRequest, type RawResponse } from '../support/raw-http.ts'
import { seededRandom } from '../support/random.ts'
import { createImageLayout, layoutBlobPath, readLayoutIndex } from '../support/oci-image.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const REQUESTS = 2_000
const CONCURRENCY = 16
const SEED = Number(process.env.FUZZ_SEED ?? 0x5ea1)
const KNOWN_REPOSITORY = 'fuzz/known'

interface Known { digest: string, imageCid: string, blobs: Array<{ digest: string, bytes: Buffer }> }

interface Hostile {
  category: string
  /** The raw bytes sent. */
  bytes: Buffer
  /** The path the request line names (which face should answer). */
  path: string
  method: string
}

function hostileRequests (count: number, random: () => number, known: Known): Hostile[] {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T
  const int = (max: number): number => Math.floor(random() * max)
  const hex = (length: number): string => Array.from({ length }, () => '0123456789abcdef'[int(16)]).join('')
  const knownDigests = [known.digest, ...known.blobs.map(blob => blob.digest)]

  const names = [
    'fuzz/a', 'fuzz/b/c', 'Fuzz/Upper', 'fuzz/-dash', 'fuzz/a..b', 'fuzz//double', 'fuzz/a/./b', 'fuzz/../escape',
    'fuzz%2fencoded', 'fuzz%2F..%2Fknown', '%2e%2e%2ffuzz', 'fuzz/%00nul', 'fuzz/%zz', 'fuzz/%', 'fuzz/ü', 'fuzz/%F0%9F%92%A9',
    'ipfs/not-a-cid', 'ipfs/bafkqaaa', 'ipfs/QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', 'ipfs/', 'ipfs%2fbafkqaaa',
    'a'.repeat(300), `${'a/'.repeat(100)}a`, '_catalog', 'v2', 'blobs', 'manifests/x', 'fuzz/blobs/uploads',
    KNOWN_REPOSITORY, 'fuzz%2Fknown'
  ]
  const digests = [
    ...knownDigests, `sha256:${hex(64)}`, `sha512:${hex(128)}`, 'sha256:', 'sha256:1234', `sha256:${hex(64).toUpperCase()}`,
    `md5:${hex(32)}`, `sha256:${hex(63)}g`, `sha256%3A${hex(64)}`, 'latest', '.INVALID_MANIFEST_NAME', '-tag', 'a'.repeat(200),
    `sha256:${hex(64)}/extra`, '%zz', '..', '', 'v1'
  ]
  const resourceOf = (): string => pick([
    () => `blobs/${pick(digests)}`,
    () => `manifests/${pick(digests)}`,
    () => 'tags/list',
    () => `tags/list?n=${pick(['-1', 'abc', '1e9', '0', '99999999999999999999', '5'])}&last=${pick(['', '%zz', 'a'])}`,
    () => `referrers/${pick(digests)}${random() < 0.3 ? '?artifactType=%zz' : ''}`,
    () => `blobs/uploads/${pick(['', 'not-a-uuid', '../../etc/passwd', '00000000-0000-0000-0000-000000000000', '%2e%2e'])}`,
    () => `blobs/uploads/?${pick(['digest=', 'digest=nonsense', `digest=${pick(digests)}`, `mount=${pick(digests)}&from=fuzz/b`, 'mount=x'])}`,
    () => pick(['', 'nothing', 'blobs', 'manifests/', 'tags', 'referrers/'])
  ])()

  const line = (method: string, path: string): string => `${method} ${path} HTTP/1.1\r\nHost: fuzz\r\n`
  const request = (category: string, method: string, path: string, headers: string[] = [], body: Buffer | string = ''): Hostile => {
    const head = `${line(method, path)}${headers.map(header => `${header}\r\n`).join('')}\r\n`
    return { category, method, path, bytes: Buffer.concat([Buffer.from(head, 'latin1'), Buffer.isBuffer(body) ? body : Buffer.from(body, 'latin1')]) }
  }
  // Reads and blob deletes may touch the known image (deleting its blobs must be refused);
  // writes never name it, so that what the fuzz changes is its own.
  const isKnown = (name: string): boolean => decodeURIComponent(name.replace(/%(?![0-9a-fA-F]{2})/g, '%25')) === KNOWN_REPOSITORY
  const methodFor = (name: string): string => isKnown(name) ? pick(['GET', 'HEAD']) : pick(['GET', 'HEAD', 'GET', 'HEAD', 'DELETE', 'PUT', 'PATCH', 'POST'])
  const bodyFor = (method: string): { headers: string[], body: string } => {
    if (!['PUT', 'PATCH', 'POST'].includes(method)) return { headers: [], body: '' }
    const body = pick(['', 'x', '{}', '{"schemaVersion":2}', 'hello world', '\u0000\u0001\u0002'])
    return { headers: [`Content-Length: ${Buffer.byteLength(body, 'latin1')}`, pick(['Content-Type: application/octet-stream', 'Content-Type: application/vnd.oci.image.manifest.v1+json', 'Content-Type: ;;;', ''])].filter(h => h !== ''), body }
  }

  const categories: Array<[string, () => Hostile]> = [
    ['path', () => {
      const name = pick(names)
      const resource = resourceOf()
      // A DELETE of the known image's manifest would be honoured: that is no attack.
      const method = isKnown(name) && resource.startsWith('manifests/') ? pick(['GET', 'HEAD']) : methodFor(name)
      const { headers, body } = bodyFor(method)
      return request('path', method, `/v2/${name}/${resource}`, headers, body)
    }],
    ['delete-known-blob', () => {
      const blob = pick(known.blobs)
      return request('delete-known-blob', 'DELETE', `/v2/${pick([KNOWN_REPOSITORY, 'fuzz%2Fknown', 'fuzz%2fknown'])}/blobs/${blob.digest}`)
    }],
    ['path-raw', () => {
      const path = pick(['/v2/a b/tags/list', '/v2/fuzz/a/manifests/la test', '/v2/\u0001/tags/list', '/v2/fuzz/a/blobs/sha256:\u00ff', '/v2/fuzz/a#frag/tags/list',
        '/v2/fuzz/a/tags/list?' + '&'.repeat(500), '//v2//fuzz//a', '/v2/../../etc/passwd', '/v2/fuzz/a/manifests/v1?digest=%', '*', 'v2/fuzz', '/v2/\\fuzz'])
      return request('path-raw', pick(['GET', 'HEAD', 'DELETE']), path)
    }],
    ['header', () => {
      const name = pick(names)
      const headers = pick([
        ['Content-Range: garbage'], ['Content-Range: 5-2'], ['Content-Range: bytes=0-99999999999999999999'], ['Range: bytes=999999999-'],
        ['Range: bytes=5-2'], ['Range: bytes=-0'], ['Range: bytes=0-1,3-4'], ['Range: pages=1-2'], ['X-Nul: a\u0000b'], ['Bad Header: x'],
        ['X-Long: ' + 'x'.repeat(8000)], ['Accept: ' + 'a,'.repeat(3000)], ['Host: '], ['Content-Type: \u00ff\u00fe'], [':: :'],
        ['Transfer-Encoding: gzip'], ['Connection: upgrade', 'Upgrade: websocket'], ['Expect: 100-continue', 'Content-Length: 0'],
        ['Authorization: Bearer ' + 'A'.repeat(4000)]
      ])
      return request('header', methodFor(name), `/v2/${name}/${resourceOf()}`, headers)
    }],
    ['length', () => {
      const [value, body] = pick([['-1', ''], ['1e3', 'x'], ['0x5', 'hello'], ['5, 5', 'hello'], ['5, 6', 'hello!'], ['+5', 'hello'], [' 5', 'hello'],
        ['99999999999999999999999', ''], ['2', 'hello world, longer than two'], ['abc', ''], ['', '']] as const)
      return request('length', pick(['PATCH', 'PUT', 'POST']), `/v2/fuzz/len/${pick(['blobs/uploads/', 'blobs/uploads/x', 'manifests/v1'])}`, [`Content-Length: ${value}`], body)
    }],
    ['length-both', () => request('length-both', 'PATCH', '/v2/fuzz/len/blobs/uploads/x', ['Content-Length: 5', 'Transfer-Encoding: chunked'], '5\r\nhello\r\n0\r\n\r\n')],
    ['chunked', () => {
      const body = pick(['zz\r\nhello\r\n0\r\n\r\n', '5\r\nhelloEXTRA\r\n0\r\n\r\n', '-1\r\n\r\n', 'ffffffffffffffffff\r\n', '5;' + 'e'.repeat(20000) + '\r\nhello\r\n0\r\n\r\n',
        '5\r\nhe', '0\r\nTrailer: \u0000\r\n\r\n', '5\nhello\n0\n\n', '\r\n\r\n'])
      return request('chunked', pick(['PATCH', 'PUT', 'POST']), `/v2/fuzz/chunk/${pick(['blobs/uploads/', 'blobs/uploads/x', 'manifests/v1'])}`, ['Transfer-Encoding: chunked'], body)
    }],
    ['method', () => {
      const method = pick(['PROPFIND', 'TRACE', 'OPTIONS', 'get', 'G\u0000T', 'MKCOL', 'PURGE', 'LINK', 'X'.repeat(40), 'BREW', 'SEARCH', 'PATCH', 'PUT'])
      const name = pick(names.filter(name => !name.includes('known')))
      return request('method', method, `/v2/${name}/${resourceOf()}`, ['Content-Length: 0'])
    }],
    ['huge-url', () => {
      const size = pick([17_000, 40_000, 70_000])
      const prefix = pick(['/v2/', '/api/v1/', '/ipfs/'])
      return request('huge-url', 'GET', `${prefix}${'a'.repeat(size)}`)
    }],
    ['huge-headers', () => request('huge-headers', 'GET', '/v2/fuzz/a/tags/list', Array.from({ length: 40 }, (_, i) => `X-H${i}: ${'v'.repeat(600)}`))],
    ['api', () => {
      const path = pick(['/api/v1/strategies', '/api/v1/strategies/%zz', '/api/v1/strategies/' + 'x'.repeat(300), '/api/v1/images', '/api/v1/nodes/%00',
        '/api/v1/nothing', '/api/v1/datastore?limit=-1', '/api/v1/strategies/../../v2/'])
      const method = pick(['GET', 'POST', 'DELETE', 'PUT', 'PATCH'])
      const body = pick(['', '{', '{"kind":"replicas","replicas":"2"}', '[]', 'null', '{"__proto__":{"x":1}}', '\u00ff\u00fe{'])
      const type = pick(['application/json', 'application/json; charset=utf-16', 'text/plain', ''])
      return request('api', method, path, [`Content-Length: ${Buffer.byteLength(body, 'latin1')}`, ...(type === '' ? [] : [`Content-Type: ${type}`])], body)
    }],
    ['ipfs', () => {
      const cid = pick(['not-a-cid', 'bafkqaaa', known.imageCid, 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG', '%zz', '', 'bafy' + 'a'.repeat(100), `${known.imageCid}/index.json`])
      const query = pick(['', '?format=raw', '?format=car', '?format=nope', '?format=car&dag-scope=%zz'])
      const accept = pick(['', 'Accept: application/vnd.ipld.raw', 'Accept: application/vnd.ipld.car', 'Accept: */*', 'Accept: \u0000'])
      return request('ipfs', pick(['GET', 'HEAD', 'POST', 'DELETE']), `/ipfs/${cid}${query}`, accept === '' ? [] : [accept])
    }]
  ]
  return Array.from({ length: count }, (_, i) => (categories[i % categories.length] as [string, () => Hostile])[1]())
}

describe('hostile requests', () => {
  let node: TestNode
  let registry: RegistryClient
  let known: Known
  let work: string
  before(async () => {
    node = await startTestNode()
    registry = new RegistryClient(node.url)
    work = await mkdtemp(join(tmpdir(), 'shoal-hostile-'))
    // The known image goes in with a real client, skopeo, and comes back out with it at the end.
    const image = await createImageLayout(join(work, 'in'), { layers: [3000, 1024 * 1024 + 4097], seed: 'hostile' })
    await copyToRegistry(join(work, 'in'), `${node.host}/${KNOWN_REPOSITORY}:v1`)
    const blobs = []
    for (const digest of [image.configDigest, ...image.layerDigests]) blobs.push({ digest, bytes: await readFile(layoutBlobPath(join(work, 'in'), digest)) })
    const manifest = await registry.request('HEAD', `/v2/${KNOWN_REPOSITORY}/manifests/v1`)
    assert.equal(manifest.headers.get('docker-content-digest'), image.manifestDigest)
    known = { digest: image.manifestDigest, imageCid: manifest.headers.get('shoal-image-cid') ?? '', blobs }
  })
  after(async () => {
    await node.stop()
    await rm(work, { recursive: true, force: true })
  })

  it(`${REQUESTS} requests (seed ${SEED}): no 5xx, each face's error format, the known image intact`, async t => {
    const requests = hostileRequests(REQUESTS, seededRandom(SEED), known)
    const failures: string[] = []
    const answered = new Map<string, number>()
    const unanswered = new Map<string, number>()
    const statuses = new Map<number, number>()
    let next = 0
    const check = (hostile: Hostile, response: RawResponse | undefined): void => {
      const what = `${hostile.category}: ${JSON.stringify(hostile.bytes.subarray(0, 160).toString('latin1'))}`
      if (response === undefined) {
        unanswered.set(hostile.category, (unanswered.get(hostile.category) ?? 0) + 1)
        return
      }
      answered.set(hostile.category, (answered.get(hostile.category) ?? 0) + 1)
      statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
      if (Number.isNaN(response.status) || response.status >= 500) {
        failures.push(`${what} -> ${response.raw.slice(0, 300)}`)
        return
      }
      if (response.status < 400 || hostile.method === 'HEAD') return
      const type = response.headers['content-type'] ?? ''
      const face = hostile.path.startsWith('/api/v1') ? 'api' : hostile.path.startsWith('/ipfs') ? 'ipfs' : 'v2'
      if (face === 'ipfs') {
        if (!type.startsWith('text/plain')) failures.push(`${what} -> not text: ${response.raw.slice(0, 300)}`)
        return
      }
      let body: { errors?: Array<{ code?: unknown, message?: unknown }>, statusCode?: unknown, message?: unknown }
      try {
        body = JSON.parse(response.body) as typeof body
      } catch {
        failures.push(`${what} -> not JSON: ${response.raw.slice(0, 300)}`)
        return
      }
      if (face === 'api') {
        if (body.statusCode !== response.status || typeof body.message !== 'string') failures.push(`${what} -> not the API's error body: ${response.body}`)
      } else if (!/^[A-Z_]+$/.test(String(body.errors?.[0]?.code)) || typeof body.errors?.[0]?.message !== 'string') {
        failures.push(`${what} -> not an OCI error body: ${response.raw.slice(0, 300)}`)
      }
    }
    const worker = async (): Promise<void> => {
      while (next < requests.length) {
        const hostile = requests[next++] as Hostile
        check(hostile, await rawRequest(node.port, hostile.bytes, 1_500))
      }
    }
    const started = performance.now()
    await Promise.all(Array.from({ length: CONCURRENCY }, worker))
    const seconds = (performance.now() - started) / 1000

    const total = [...answered.values()].reduce((a, b) => a + b, 0)
    t.diagnostic(`${total} answered in ${seconds.toFixed(1)} s; by category ${JSON.stringify(Object.fromEntries(answered))}; unanswered ${JSON.stringify(Object.fromEntries(unanswered))}; statuses ${JSON.stringify(Object.fromEntries(statuses))}`)
    assert.deepEqual(failures, [], `${failures.length} bad answers of ${total}`)
    assert.ok(total >= 1_000, `${total} requests answered (unanswered by category: ${JSON.stringify(Object.fromEntries(unanswered))})`)
    assert.ok(seconds < 30, `took ${seconds.toFixed(1)} s`)

    // Nothing the hostile requests did was the node's fault, and the node still serves.
    const internal = node.logs.filter(line => (line.level as number) >= 50)
    assert.deepEqual(internal, [], JSON.stringify(internal.slice(0, 3)))
    assert.equal((await registry.request('GET', '/v2/')).status, 200)

    // The known image pulls back whole with skopeo: the same manifest, every blob byte for byte.
    await copyFromRegistry(`${node.host}/${KNOWN_REPOSITORY}:v1`, join(work, 'out'))
    assert.deepEqual((await readLayoutIndex(join(work, 'out'))).manifests.map(m => m.digest), [known.digest])
    for (const blob of known.blobs) assert.ok((await readFile(layoutBlobPath(join(work, 'out'), blob.digest))).equals(blob.bytes), blob.digest)
  })
})
