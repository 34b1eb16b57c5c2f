// Which images the fleet knows: whether a strategy's image reference names one, and the list of
// tagged images with the nodes that hold them.
import type { TagRecord } from '../catalogue/catalogue.ts'
import type { ResolvedImage } from '../registry/image-holdings.ts'

/** The catalogue's tags. */
export interface TagSource {
  allTags(): Promise<TagRecord[]>
}

/** What this node holds itself, for images no tag points at. */
export interface LocalManifests {
  getManifest(digest: string): Promise<{ imageCid: string } | undefined>
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
 * Where an image reference points now: the catalogue's tags first (a tag follows its updates),
 * then this node's own manifests. A digest or CID counts wherever it is tagged, in any
 * repository (content addressing makes the repository a hint), preferring the one named.
 */
export async function resolveImage (image: string, tags: TagSource, local: LocalManifests, signal?: AbortSignal): Promise<ResolvedImage | undefined> {
  const reference = parseImageReference(image)
  const records = await tags.allTags()
  signal?.throwIfAborted()
  const located = (record: TagRecord): ResolvedImage => ({ repository: record.repository, digest: record.digest, imageCid: record.imageCid })
  switch (reference.form) {
    case 'tag': {
      const record = records.find(r => r.repository === reference.repository && r.tag === reference.tag)
      return record === undefined ? undefined : located(record)
    }
    case 'digest': {
      const record = records.find(r => r.digest === reference.digest && r.repository === reference.repository) ??
        records.find(r => r.digest === reference.digest)
      if (record !== undefined) return { ...located(record), repository: reference.repository }
      const manifest = await local.getManifest(reference.digest)
      return manifest === undefined ? undefined : { repository: reference.repository, digest: reference.digest, imageCid: manifest.imageCid }
    }
    case 'cid': {
      const record = records.find(r => r.imageCid === reference.imageCid)
      if (record !== undefined) return located(record)
      const digest = await local.manifestForImage(reference.imageCid)
      return digest === undefined ? undefined : { repository: `ipfs/${reference.imageCid}`, digest, imageCid: reference.imageCid }
    }
  }
}

/** Resolves against the catalogue's tags, then this node's own manifests (see resolveImage). */
export function fleetImageResolver (tags: TagSource, local: LocalManifests): ImageResolver {
  return {
    async exists (image, signal) {
      return (await resolveImage(image, tags, local, signal)) !== undefined
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
  /** The signed-in user who pushed it. */
  pushedBy?: string
  /** Ids of the nodes whose inventory says they hold the image whole. */
  heldBy: string[]
  /** The node answering holds the image whole (in a mesh: its inventory record says so). */
  heldHere: boolean
}

/** Every tag of the catalogue, by repository and tag, with the nodes holding its image. */
export function listFleetImages (tags: readonly TagRecord[], nodes: ReadonlyArray<{ id: string, images: readonly string[], self: boolean }>): ImageListing[] {
  return tags
    .map(record => ({
      repository: record.repository,
      tag: record.tag,
      digest: record.digest,
      imageCid: record.imageCid,
      node: record.node,
      pushedAt: record.pushedAt,
      ...(record.pushedBy === undefined ? {} : { pushedBy: record.pushedBy }),
      heldBy: nodes.filter(node => node.images.includes(record.imageCid)).map(node => node.id).sort(),
      heldHere: nodes.some(node => node.self && node.images.includes(record.imageCid))
    }))
    .sort((a, b) => compareText(a.repository, b.repository) || compareText(a.tag, b.tag))
}

/** What listLocalImages needs of the node's metadata. */
export interface LocalTags {
  listRepositories(last: string | undefined, limit: number): Promise<string[]>
  listTags(repository: string, last: string | undefined, limit: number): Promise<string[]>
  getTag(repository: string, tag: string): Promise<string | undefined>
  getManifest(digest: string): Promise<{ imageCid: string } | undefined>
  /** CIDs of the images this node holds whole. */
  listImages(): Promise<string[]>
}

const PAGE = 1000

/** A single node's tags (no mesh, no catalogue), in the listing's shape. */
export async function listLocalImages (local: LocalTags, signal?: AbortSignal): Promise<ImageListing[]> {
  const images: ImageListing[] = []
  const held = new Set(await local.listImages())
  for await (const repository of paged(last => local.listRepositories(last, PAGE))) {
    for await (const tag of paged(last => local.listTags(repository, last, PAGE))) {
      signal?.throwIfAborted()
      const digest = await local.getTag(repository, tag)
      if (digest === undefined) continue
      const manifest = await local.getManifest(digest)
      if (manifest === undefined) continue
      images.push({ repository, tag, digest, imageCid: manifest.imageCid, heldBy: [], heldHere: held.has(manifest.imageCid) })
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
