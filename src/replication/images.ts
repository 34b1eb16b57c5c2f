// Which images the fleet knows: whether a strategy's image reference names one, and the list of
// tagged images with the nodes that hold them.
import type { NodeRecord, TagRecord } from '../catalogue/catalogue.ts'

/** The catalogue's tags. */
export interface TagSource {
  allTags(): Promise<TagRecord[]>
}

/** What this node holds itself, for images no tag points at. */
export interface LocalManifests {
  getManifest(digest: string): Promise<object | undefined>
  manifestForImage(imageCid: string): Promise<string | undefined>
}

/** Whether an image reference (`repo:tag`, `repo@digest`, image CID) names an image the fleet has. */
export interface ImageResolver {
  exists(image: string, signal?: AbortSignal): Promise<boolean>
}

/** The three ways a strategy names an image; the reference is already valid (parseStrategyPayload). */
export type ImageReference =
  | { form: 'tag', repository: string, tag: string }
  | { form: 'digest', repository: string, digest: string }
  | { form: 'cid', imageCid: string }

export function parseImageReference (image: string): ImageReference {
  const at = image.indexOf('@')
  if (at >= 0) return { form: 'digest', repository: image.slice(0, at), digest: image.slice(at + 1) }
  const colon = image.lastIndexOf(':')
  if (colon > image.lastIndexOf('/')) return { form: 'tag', repository: image.slice(0, colon), tag: image.slice(colon + 1) }
  return { form: 'cid', imageCid: image }
}

/**
 * Resolves against the catalogue's tags, then this node's own manifests. A digest counts wherever
 * it is tagged, in any repository: content addressing makes the repository a hint.
 */
export function fleetImageResolver (tags: TagSource, local: LocalManifests): ImageResolver {
  return {
    async exists (image, signal) {
      const reference = parseImageReference(image)
      const records = await tags.allTags()
      signal?.throwIfAborted()
      switch (reference.form) {
        case 'tag':
          return records.some(record => record.repository === reference.repository && record.tag === reference.tag)
        case 'digest':
          return records.some(record => record.digest === reference.digest) || await local.getManifest(reference.digest) !== undefined
        case 'cid':
          return records.some(record => record.imageCid === reference.imageCid) || await local.manifestForImage(reference.imageCid) !== undefined
      }
    }
  }
}

/** A tagged image as the API lists it. */
export interface ImageListing {
  repository: string
  tag: string
  digest: string
  imageCid: string
  /** Peer id of the node it was pushed to; absent for a node that is not in a mesh. */
  node?: string
  pushedAt?: string
  /** Ids of the nodes whose inventory says they hold the image whole. */
  heldBy: string[]
}

/** Every tag of the catalogue, by repository and tag, with the nodes holding its image. */
export function listFleetImages (tags: readonly TagRecord[], nodes: readonly Pick<NodeRecord, 'id' | 'images'>[]): ImageListing[] {
  return tags
    .map(record => ({
      repository: record.repository,
      tag: record.tag,
      digest: record.digest,
      imageCid: record.imageCid,
      node: record.node,
      pushedAt: record.pushedAt,
      heldBy: nodes.filter(node => node.images.includes(record.imageCid)).map(node => node.id).sort()
    }))
    .sort((a, b) => compareText(a.repository, b.repository) || compareText(a.tag, b.tag))
}

/** What listLocalImages needs of the node's metadata. */
export interface LocalTags {
  listRepositories(last: string | undefined, limit: number): Promise<string[]>
  listTags(repository: string, last: string | undefined, limit: number): Promise<string[]>
  getTag(repository: string, tag: string): Promise<string | undefined>
  getManifest(digest: string): Promise<{ imageCid: string } | undefined>
}

const PAGE = 1000

/** A single node's tags (no mesh, no catalogue), in the listing's shape. */
export async function listLocalImages (local: LocalTags, signal?: AbortSignal): Promise<ImageListing[]> {
  const images: ImageListing[] = []
  for await (const repository of paged(last => local.listRepositories(last, PAGE))) {
    for await (const tag of paged(last => local.listTags(repository, last, PAGE))) {
      signal?.throwIfAborted()
      const digest = await local.getTag(repository, tag)
      if (digest === undefined) continue
      const manifest = await local.getManifest(digest)
      if (manifest === undefined) continue
      images.push({ repository, tag, digest, imageCid: manifest.imageCid, heldBy: [] })
    }
  }
  return images
}

async function * paged (page: (last: string | undefined) => Promise<string[]>): AsyncGenerator<string> {
  let last: string | undefined
  for (;;) {
    const items = await page(last)
    yield * items
    if (items.length < PAGE) return
    last = items[items.length - 1]
  }
}

function compareText (a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
