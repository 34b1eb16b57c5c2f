// The upstream client's handling of rate limits, against a stand-in HTTP server (logic only: the
// real upstreams are in mirror.test.ts).
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { RegistryInvalidError, RegistryClient, challengeParams } from '../../src/oci/registry-client.ts'

const MANIFEST = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${'0'.repeat(64)}`, size: 2 }, layers: [] }))
const DIGEST = `sha256:${createHash('sha256').update(MANIFEST).digest('hex')}`

describe('RegistryClient', () => {
  let server: Server
  let url: string
  let requests = 0
  before(async () => {
    server = createServer((req, res) => {
      requests++
      if (req.url === '/v2/limited/app/manifests/1') {
        // Rate limited twice, then answered.
        if (requests <= 2) {
          res.writeHead(429, { 'retry-after': '1' }).end()
          return
        }
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': DIGEST }).end(req.method === 'HEAD' ? undefined : MANIFEST)
        return
      }
      if (req.url === '/v2/lying/app/manifests/1') {
        res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'docker-content-digest': `sha256:${'1'.repeat(64)}` }).end(MANIFEST)
        return
      }
      res.writeHead(404).end()
    })
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  after(async () => { await new Promise(resolve => server.close(resolve)) })

  it('waits out 429s as Retry-After says, and reports each', async () => {
    const waits: number[] = []
    const upstream = new RegistryClient({ registry: 'test.io', url }, { onRateLimited: (_registry, waitMs) => { waits.push(waitMs) } })
    const started = performance.now()
    assert.deepEqual(await upstream.resolve('limited/app', '1'), { digest: DIGEST, mediaType: 'application/vnd.oci.image.manifest.v1+json' })
    assert.deepEqual(waits, [1000, 1000])
    assert.ok(performance.now() - started >= 1900)
    await upstream.close()
  })

  it('refuses a manifest whose bytes are not the digest the upstream names', async () => {
    const upstream = new RegistryClient({ registry: 'test.io', url })
    await assert.rejects(upstream.manifest('lying/app', '1'), RegistryInvalidError)
    await upstream.close()
  })

  it('reads a Bearer challenge', () => {
    assert.deepEqual(challengeParams('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull"'),
      { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/nginx:pull' })
  })
})
