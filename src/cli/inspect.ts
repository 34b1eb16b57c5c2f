import { MANIFEST_MEDIA_TYPES } from '../oci/media-types.ts'
import { CID } from 'multiformats/cid'
import { CliError, describeAnswer, requestNode } from './api-client.ts'

export interface ImageInfo {
  repository: string
  tag?: string
  digest: string
  mediaType: string
  imageCid: string
  /** Manifests, configs and layers, each counted once. */
  size: number
}

/** Asks a node's /v2 API about an image: its digest, its image CID and its total size. */
export async function inspectImage (node: string, image: string, signal?: AbortSignal): Promise<ImageInfo> {
  const { repository, reference, tag } = splitImage(image)
  const top = await fetchManifest(node, repository, reference, signal)
  const imageCid = top.headers.get('shoal-image-cid')
  if (imageCid === null) throw new CliError(`${node} did not return an image CID: is it a Shoal node?`)
  const seen = new Set<string>()
  let size = 0
  const visit = async (digest: string, bytes: Buffer): Promise<void> => {
    if (seen.has(digest)) return
    seen.add(digest)
    size += bytes.length
    const json = JSON.parse(bytes.toString('utf8')) as { manifests?: Array<{ digest: string }>, config?: { digest: string, size: number }, layers?: Array<{ digest: string, size: number }> }
    for (const blob of [json.config, ...(json.layers ?? [])]) {
      if (blob !== undefined && !seen.has(blob.digest)) {
        seen.add(blob.digest)
        size += blob.size
      }
    }
    for (const child of json.manifests ?? []) {
      const response = await fetchManifest(node, repository, child.digest, signal)
      await visit(child.digest, Buffer.from(await response.arrayBuffer()))
    }
  }
  const digest = top.headers.get('docker-content-digest') ?? ''
  const mediaType = top.headers.get('content-type') ?? ''
  await visit(digest, Buffer.from(await top.arrayBuffer()))
  return { repository, tag, digest, mediaType, imageCid, size }
}

/**
 * `repo:tag`, `repo@digest`, `repo` (tag latest), or a bare image CID: the node serves every image
 * it holds as `ipfs/<cid>:latest`, so that is what a CID names.
 */
function splitImage (image: string): { repository: string, reference: string, tag?: string } {
  if (isCid(image)) return { repository: `ipfs/${image}`, reference: 'latest', tag: 'latest' }
  const at = image.indexOf('@')
  if (at > 0) return { repository: image.slice(0, at), reference: image.slice(at + 1) }
  const colon = image.lastIndexOf(':')
  if (colon > image.lastIndexOf('/') && colon > 0) {
    const tag = image.slice(colon + 1)
    return { repository: image.slice(0, colon), reference: tag, tag }
  }
  return { repository: image, reference: 'latest', tag: 'latest' }
}

async function fetchManifest (node: string, repository: string, reference: string, signal?: AbortSignal): Promise<Response> {
  const response = await requestNode(node, `/v2/${repository}/manifests/${reference}`, {
    headers: { accept: MANIFEST_MEDIA_TYPES.join(', ') },
    signal
  })
  if (!response.ok) throw new CliError(`${repository}:${reference}: ${describeAnswer(node, response, await response.text())}`)
  return response
}

function isCid (text: string): boolean {
  if (text.includes('/') || text.includes(':') || text.includes('@')) return false
  try {
    CID.parse(text)
    return true
  } catch {
    return false
  }
}
