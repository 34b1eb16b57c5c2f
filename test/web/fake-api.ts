// A stand-in node for the web UI: fastify with canned /api/v1 answers (every strategy state at
// once, names with markup in them) and a multi-platform image under /v2, plus the real UI routes.
// States a real fleet passes through too fast to look at (fetching, failed, dropping) render here.
import Fastify, { type FastifyInstance } from 'fastify'
import { registerWebUi } from '../../src/web/routes.ts'

export const HOSTILE = '<script>alert("x")</script>'

const now = Date.now()
const ago = (seconds: number): string => new Date(now - seconds * 1000).toISOString()

const ids = { a: '12D3KooWAaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', b: '12D3KooWBbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', c: '12D3KooWCccccccccccccccccccccccccccccccccccccccccccc', d: '12D3KooWDddddddddddddddddddddddddddddddddddddddddddd' }
const imageCid = 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'
const indexDigest = `sha256:${'1'.repeat(64)}`
const amd64Digest = `sha256:${'2'.repeat(64)}`
const arm64Digest = `sha256:${'3'.repeat(64)}`
const attestationDigest = `sha256:${'4'.repeat(64)}`
const signatureDigest = `sha256:${'5'.repeat(64)}`

const node = (id: string, name: string, extra: object = {}): object => ({
  id,
  name,
  // Loopback ports nothing listens on: the UI never reaches another node here.
  url: `http://127.0.0.1:${name.length}`,
  addresses: [`/ip4/127.0.0.1/tcp/4001/p2p/${id}`],
  labels: { zone: 'eu' },
  disk: { usedBytes: 3 * 1024 ** 3, freeBytes: 9 * 1024 ** 3 },
  images: [imageCid],
  heartbeatAt: ago(2),
  standing: 'live',
  silent: false,
  gone: false,
  self: false,
  ...extra
})

const nodes = [
  node(ids.a, 'edge-a', { self: true }),
  node(ids.b, 'edge-b', { labels: { zone: 'us', tier: 'edge' } }),
  node(ids.c, 'edge-c', { images: [], disk: { usedBytes: 11 * 1024 ** 3, freeBytes: 1024 ** 3 } }),
  node(ids.d, HOSTILE, { standing: 'silent', silent: true, heartbeatAt: ago(400), images: [], labels: { [HOSTILE]: HOSTILE } })
]

const strategy = {
  id: '6f1c2b9e-2f55-4c4e-9b7a-3a1d1e0f5a10',
  kind: 'replicas',
  image: 'shop/web:2.1',
  replicas: 3,
  createdAt: ago(600),
  updatedAt: ago(600),
  summary: { desired: 3, pending: 1, fetching: 1, held: 0, failed: 1, dropping: 1 }
}

const status = {
  strategy,
  desired: [
    { node: ids.a, name: 'edge-a', state: 'fetching', imageCid, bytesDone: 157_286_400, bytesTotal: 629_145_600, updatedAt: ago(1) },
    { node: ids.b, name: 'edge-b', state: 'failed', imageCid, reason: 'no holder of bafy… answered within 30 s', updatedAt: ago(12) },
    { node: ids.c, name: 'edge-c', state: 'pending' }
  ],
  extra: [{ node: ids.d, name: HOSTILE, state: 'dropping', reported: 'held', silent: true }]
}

const manifest = (config: number, layers: number[]): string => JSON.stringify({
  schemaVersion: 2,
  mediaType: 'application/vnd.oci.image.manifest.v1+json',
  config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'9'.repeat(64)}`, size: config },
  layers: layers.map((size, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${String(i).repeat(64)}`, size }))
})

const manifests: Record<string, string> = {
  [indexDigest]: JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: amd64Digest, size: 400, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: arm64Digest, size: 400, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: attestationDigest, size: 300, platform: { os: 'unknown', architecture: 'unknown' } }
    ]
  }),
  [amd64Digest]: manifest(1_000, [300 * 1024 ** 2, 1024 ** 2]),
  [arm64Digest]: manifest(1_000, [280 * 1024 ** 2]),
  [attestationDigest]: manifest(100, [2_000])
}

/** The expected size of the image the fake serves: every manifest, config and layer. */
export const FAKE_IMAGE_BYTES = Object.values(manifests).reduce((sum, text) => {
  const document = JSON.parse(text) as { config?: { size: number }, layers?: Array<{ size: number }> }
  return sum + Buffer.byteLength(text) + (document.config?.size ?? 0) + (document.layers ?? []).reduce((total, layer) => total + layer.size, 0)
}, 0)

export const FAKE = { ids, imageCid, strategy, signatureDigest }

export async function startFakeNode (): Promise<{ app: FastifyInstance, url: string }> {
  const app = Fastify()
  app.get('/api/v1/nodes', async () => ({ nodes }))
  app.get('/api/v1/peers', async () => ({
    self: { id: ids.a, addresses: [`/ip4/127.0.0.1/tcp/4001/p2p/${ids.a}`] },
    peers: [{ id: ids.b, addresses: [`/ip4/127.0.0.1/tcp/4001/p2p/${ids.b}`], latencyMs: 3 }, { id: ids.c, addresses: [`/ip4/127.0.0.1/tcp/4001/p2p/${ids.c}`] }]
  }))
  app.get('/api/v1/images', async () => ({
    images: [{ repository: 'shop/web', tag: '2.1', digest: indexDigest, imageCid, node: ids.a, pushedAt: ago(3600), heldBy: [ids.a, ids.b] }]
  }))
  app.get('/api/v1/strategies', async () => ({ strategies: [strategy] }))
  app.get(`/api/v1/strategies/${strategy.id}/status`, async () => status)
  app.get('/api/v1/datastore', async () => ({
    databases: [
      { name: 'shoal.tags', address: '/orbitdb/zdpuTags', entries: [{ key: 'shop/web:2.1', value: { repository: 'shop/web', tag: '2.1', node: ids.a }, hash: 'zdpuEntry1', clock: { id: 'key-a', time: 7 }, writer: { identity: 'key-a', node: ids.a, name: 'edge-a' }, writtenAt: ago(3600) }] },
      { name: 'shoal.nodes', address: '/orbitdb/zdpuNodes', entries: [{ key: HOSTILE, value: { name: HOSTILE }, clock: { id: 'key-d', time: 9 }, writer: { identity: 'key-d' } }] },
      { name: 'shoal.strategies', address: '/orbitdb/zdpuStrategies', entries: [] }
    ]
  }))
  // This node holds the image: its details are read here.
  app.get('/v2/*', async (req, reply) => {
    const path = (req.params as { '*': string })['*']
    const manifestMatch = /^ipfs\/[^/]+\/manifests\/(.+)$/.exec(path)
    const body = manifestMatch === null ? undefined : manifests[manifestMatch[1] ?? '']
    if (body !== undefined) return await reply.type('application/vnd.oci.image.manifest.v1+json').send(body)
    if (path === `shop/web/referrers/${indexDigest}`) {
      return await reply.type('application/vnd.oci.image.index.v1+json').send(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: signatureDigest, artifactType: 'application/vnd.dev.cosign.artifact.sig.v1+json' }] }))
    }
    return await reply.code(404).send({ errors: [] })
  })
  registerWebUi(app)
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  return { app, url }
}
