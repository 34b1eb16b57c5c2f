import assert from 'node:assert/strict'
import { digestOf } from '../../src/oci/digest.ts'

const asBytes = (bytes: Uint8Array | string): Uint8Array => typeof bytes === 'string' ? Buffer.from(bytes) : bytes
export const sha256 = (bytes: Uint8Array | string): string => digestOf(asBytes(bytes), 'sha256')
export const sha512 = (bytes: Uint8Array | string): string => digestOf(asBytes(bytes), 'sha512')
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

/** A thin /v2 client for tests: plain fetch, nothing hidden. */
export class RegistryClient {
  readonly base: string
  constructor (base: string) {
    this.base = base
  }

  async request (method: string, path: string, init: { body?: Uint8Array | string, headers?: Record<string, string> } = {}): Promise<Response> {
    return await fetch(new URL(path, this.base), { method, body: init.body, headers: init.headers })
  }

  /** Monolithic push of a blob into a repository. */
  async pushBlob (repository: string, bytes: Uint8Array | string, digest = sha256(bytes)): Promise<string> {
    const response = await this.request('POST', `/v2/${repository}/blobs/uploads/?digest=${digest}`, {
      body: bytes, headers: { 'content-type': 'application/octet-stream' }
    })
    assert.equal(response.status, 201, await response.text())
    return digest
  }

  async pushManifest (repository: string, reference: string, manifest: object | string, mediaType: string): Promise<Response> {
    const body = typeof manifest === 'string' ? manifest : JSON.stringify(manifest)
    return await this.request('PUT', `/v2/${repository}/manifests/${reference}`, { body, headers: { 'content-type': mediaType } })
  }

  /** Pushes a config and one layer; returns the OCI image manifest naming them (with `extra` fields), not pushed. */
  async pushImageBlobs (repository: string, layer: string | Uint8Array, extra: object = {}): Promise<string> {
    const config = JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha256(layer)] } })
    await this.pushBlob(repository, config)
    await this.pushBlob(repository, layer)
    return JSON.stringify({
      schemaVersion: 2,
      mediaType: OCI_MANIFEST,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: Buffer.byteLength(config) },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(layer), size: Buffer.byteLength(layer) }],
      ...extra
    })
  }

  /** Pulls an image manifest by tag or digest, and asserts every blob it names reads back with its digest. */
  async assertPullable (repository: string, reference: string): Promise<void> {
    const response = await this.request('GET', `/v2/${repository}/manifests/${reference}`, { headers: { accept: OCI_MANIFEST } })
    assert.equal(response.status, 200)
    const manifest = await response.json() as { config: { digest: string }, layers: Array<{ digest: string }> }
    for (const { digest } of [manifest.config, ...manifest.layers]) {
      const blob = await this.request('GET', `/v2/${repository}/blobs/${digest}`)
      assert.equal(blob.status, 200, `${digest} pulls`)
      assert.equal(sha256(Buffer.from(await blob.arrayBuffer())), digest)
    }
  }

  /** Pushes a config and one layer, then an image manifest naming them; returns the manifest digest. */
  async pushImage (repository: string, tag: string, layer: string | Uint8Array, extra: object = {}): Promise<{ digest: string, body: string, response: Response }> {
    const body = await this.pushImageBlobs(repository, layer, extra)
    const response = await this.pushManifest(repository, tag, body, OCI_MANIFEST)
    assert.equal(response.status, 201, await response.text())
    return { digest: sha256(body), body, response }
  }
}

/** Asserts an OCI error response: status and code. */
export async function assertOciError (response: Response, status: number, code: string): Promise<void> {
  const text = await response.text()
  assert.equal(response.status, status, `expected ${status} ${code}, got ${response.status}: ${text}`)
  const body = JSON.parse(text) as { errors: Array<{ code: string, message: string }> }
  assert.equal(body.errors[0]?.code, code, text)
  assert.ok((body.errors[0]?.message ?? '').length > 0, 'error has a message')
}
