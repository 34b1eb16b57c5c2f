import { CID } from 'multiformats/cid'
import type { ParsedManifest } from '../oci/manifest.ts'
import type { BlobService } from './blob-service.ts'
import type { ManifestService } from './manifest-service.ts'
import type { Metadata } from './metadata.ts'
import type { RemoteBlocks } from './remote-blocks.ts'

export type { Placement, PlacementLog } from './metadata.ts'

/** An image as the fleet names it: its repository, its manifest digest, its image directory CID. */
export interface ResolvedImage { repository: string, digest: string, imageCid: string }

/** No node of the fleet serves the image (or this node is in no mesh), so it cannot be fetched. */
export class ImageUnavailableError extends Error {
  readonly image: ResolvedImage
  constructor (image: ResolvedImage, reason: string, options?: { cause?: unknown }) {
    super(`image ${image.repository}@${image.digest} (${image.imageCid}) cannot be fetched: ${reason}`, options)
    this.name = 'ImageUnavailableError'
    this.image = image
  }
}

/** The image's records changed under a fetch (a drop ran meanwhile), so it is not whole here. */
export class ImageIncompleteError extends Error {
  readonly image: ResolvedImage
  constructor (image: ResolvedImage, reason: string) {
    super(`image ${image.repository}@${image.digest} is not whole on this node: ${reason}`)
    this.name = 'ImageIncompleteError'
    this.image = image
  }
}

export interface ImageHoldingsOptions {
  metadata: Metadata
  manifests: ManifestService
  blobs: BlobService
  /** The fleet's content; undefined outside a mesh (nothing can be fetched then). */
  remote: RemoteBlocks | undefined
}

/** What an image is made of, as far as its manifests could be read. */
interface ImageContents {
  /** The image's manifest first, then every manifest below it (an index's children), each once. */
  manifests: Array<{ digest: string, blobs: string[] }>
  /** Every blob of those manifests, once, with its size. */
  blobs: Map<string, number>
  /** False when a manifest could not be read (not recorded here). */
  complete: boolean
}

/** Progress is reported about this often, in bytes. */
const PROGRESS_STEP = 256 * 1024
/** Blobs read at once: each costs a provider lookup before its bytes flow, so small ones overlap. */
export const PARALLEL_BLOBS = 3

/**
 * Holding whole images on this node and letting them go, for the replication reconciler. The
 * image is fetched the way a client's pull fetches it (adoption, then reads through the mesh),
 * then kept whole, so the inventory lists it; a drop removes its records only, and garbage
 * collection frees its blocks afterwards.
 */
export class ImageHoldings {
  private readonly metadata: Metadata
  private readonly manifests: ManifestService
  private readonly blobs: BlobService
  private readonly remote: RemoteBlocks | undefined

  constructor (options: ImageHoldingsOptions) {
    this.metadata = options.metadata
    this.manifests = options.manifests
    this.blobs = options.blobs
    this.remote = options.remote
  }

  /** Whether this node holds the image whole: every manifest recorded and not partial, every blob recorded and not remote. */
  async holds (image: ResolvedImage): Promise<boolean> {
    const top = await this.metadata.getManifest(image.digest)
    if (top === undefined || top.imageCid !== image.imageCid) return false
    const contents = await this.localContents(image)
    if (!contents.complete) return false
    for (const { digest } of contents.manifests) {
      if ((await this.metadata.getManifest(digest))?.partial === true) return false
    }
    for (const digest of contents.blobs.keys()) {
      const record = await this.metadata.getBlob(digest)
      if (record === undefined || record.remote === true) return false
    }
    return true
  }

  /**
   * Blob bytes of the image (all manifests' blobs, each digest once) and how many of them are
   * held here. Manifests this node lacks are read from the fleet (and not kept).
   */
  async size (image: ResolvedImage, signal?: AbortSignal): Promise<{ total: number, held: number }> {
    let contents: ImageContents
    try {
      contents = await this.contents(image, async digest => await this.manifests.read(digest, image.imageCid, signal))
    } catch (err) {
      throw unavailable(image, err)
    }
    let total = 0
    let held = 0
    for (const [digest, size] of contents.blobs) {
      total += size
      const record = await this.metadata.getBlob(digest)
      if (record !== undefined && record.remote !== true) held += size
    }
    return { total, held }
  }

  /**
   * Fetches the image whole from the fleet and keeps it: adopts its manifests from the image
   * directory (checked against the digest and the image CID), reads every remote blob through
   * the mesh (blocks verified and stored; each blob then recorded as held and announced), marks
   * the manifests whole, so the inventory lists the image, and announces the image CID.
   * `onProgress(done, total)` in blob bytes, about every 256 KiB and once at the end.
   * Throws ImageUnavailableError when no node serves what is missing, ImageIncompleteError when
   * a drop removed part of the image meanwhile, `signal.reason` when aborted.
   */
  async fetch (image: ResolvedImage, onProgress: (done: number, total: number) => void, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted()
    if (await this.holds(image)) {
      const { total } = await this.size(image, signal)
      onProgress(total, total)
      return
    }
    const remote = this.remote
    if (remote === undefined) throw new ImageUnavailableError(image, 'this node is in no mesh')

    let contents = await this.localContents(image)
    if (!(await this.adopted(image, contents))) {
      try {
        await this.manifests.adopt(image.repository, image.digest, image.imageCid, signal)
      } catch (err) {
        signal.throwIfAborted()
        throw unavailable(image, err)
      }
      signal.throwIfAborted()
      contents = await this.localContents(image)
      if (!contents.complete) throw new ImageIncompleteError(image, 'a manifest of it was dropped while it was adopted')
    }

    let total = 0
    let done = 0
    const pending: string[] = []
    for (const [digest, size] of contents.blobs) {
      total += size
      const record = await this.metadata.getBlob(digest)
      if (record === undefined) throw new ImageIncompleteError(image, `blob ${digest} was dropped while the image was adopted`)
      if (record.remote === true) pending.push(digest)
      else done += size
    }
    onProgress(done, total)
    let reported = done

    const readBlob = async (digest: string, reading: AbortSignal): Promise<void> => {
      const record = await this.metadata.getBlob(digest)
      if (record === undefined) throw new ImageIncompleteError(image, `blob ${digest} was dropped while it was fetched`)
      // A client's pull may have read it whole meanwhile.
      if (record.remote !== true) return
      // A whole read of the remote view leaves the blob recorded as held and announced.
      for await (const chunk of this.blobs.view(digest, record).chunks(undefined, reading)) {
        done += chunk.bytes.length
        chunk.release()
        if (done - reported >= PROGRESS_STEP) {
          reported = done
          onProgress(Math.min(done, total), total)
        }
      }
    }
    try {
      await forEachAtOnce(pending, PARALLEL_BLOBS, signal, readBlob)
    } catch (err) {
      signal.throwIfAborted()
      throw unavailable(image, err)
    }

    // Children before the index that names them.
    for (const { digest, blobs } of [...contents.manifests].reverse()) {
      if (!(await this.metadata.markManifestWhole(digest, blobs))) {
        throw new ImageIncompleteError(image, `manifest ${digest} or one of its blobs was dropped while it was fetched`)
      }
    }
    const imageCids: CID[] = []
    for (const { digest } of contents.manifests) {
      const record = await this.metadata.getManifest(digest)
      if (record !== undefined) imageCids.push(CID.parse(record.imageCid))
    }
    remote.announce(imageCids)
    onProgress(total, total)
  }

  /**
   * Lets go of an image: its manifest records (and an index's children no other manifest kept
   * in the repository references), its tags and links in its repository, its image entry, and
   * the links of its blobs that no manifest left in the repository references; a record left
   * with no link in any repository is deleted. Blocks stay until garbage collection runs.
   */
  async drop (image: ResolvedImage): Promise<void> {
    const contents = await this.localContents(image)
    const blobCids = new Map<string, string>()
    for (const digest of contents.blobs.keys()) {
      const record = await this.metadata.getBlob(digest)
      if (record !== undefined) blobCids.set(digest, record.cid)
    }
    const dropped = await this.metadata.dropImage(image.repository, {
      digest: image.digest,
      descendants: contents.manifests.slice(1).map(manifest => manifest.digest),
      blobs: [...contents.blobs.keys()]
    }, async digest => await this.manifests.referencesOf(digest))
    // What is gone is no longer announced (blobs still held for other images stay announced).
    const gone = dropped.blobs.flatMap(digest => blobCids.get(digest) ?? [])
    this.remote?.withdraw([image.imageCid, ...gone].map(cid => CID.parse(cid)))
  }

  /** Whether the image is recorded in its repository with every blob, so adopting it again would add nothing. */
  private async adopted (image: ResolvedImage, contents: ImageContents): Promise<boolean> {
    if (!contents.complete || !(await this.metadata.hasManifestLink(image.repository, image.digest))) return false
    if ((await this.metadata.getManifest(image.digest))?.imageCid !== image.imageCid) return false
    for (const digest of contents.blobs.keys()) {
      if ((await this.metadata.getBlob(digest)) === undefined || !(await this.metadata.hasBlobLink(image.repository, digest))) return false
    }
    return true
  }

  /** The image as far as this node records its manifests. */
  private async localContents (image: ResolvedImage): Promise<ImageContents> {
    return await this.contents(image, async digest => {
      if ((await this.metadata.getManifest(digest)) === undefined) return undefined
      return await this.manifests.read(digest)
    })
  }

  /** Walks the image's manifests from the top; `read` answers undefined for one it cannot read. */
  private async contents (image: ResolvedImage, read: (digest: string) => Promise<ParsedManifest | undefined>): Promise<ImageContents> {
    const contents: ImageContents = { manifests: [], blobs: new Map(), complete: true }
    const seen = new Set<string>()
    const queue = [image.digest]
    for (let digest = queue.shift(); digest !== undefined; digest = queue.shift()) {
      if (seen.has(digest)) continue
      seen.add(digest)
      const parsed = await read(digest)
      if (parsed === undefined) {
        contents.complete = false
        continue
      }
      contents.manifests.push({ digest, blobs: [...new Set(parsed.blobs.map(blob => blob.digest))] })
      for (const blob of parsed.blobs) contents.blobs.set(blob.digest, blob.size)
      for (const child of parsed.manifests) queue.push(child.digest)
    }
    return contents
  }
}

/** Runs `work` on every item, at most `limit` at once; the first failure stops the rest. */
async function forEachAtOnce<T> (items: T[], limit: number, signal: AbortSignal, work: (item: T, signal: AbortSignal) => Promise<void>): Promise<void> {
  const failed = new AbortController()
  const running = AbortSignal.any([signal, failed.signal])
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      running.throwIfAborted()
      const item = items[next++] as T
      try {
        await work(item, running)
      } catch (err) {
        failed.abort(err)
        throw err
      }
    }
  }
  const outcomes = await Promise.allSettled(Array.from({ length: Math.min(limit, items.length) }, worker))
  signal.throwIfAborted()
  // The first failure, not the aborts it caused in the other workers.
  if (failed.signal.aborted) throw failed.signal.reason
  for (const outcome of outcomes) if (outcome.status === 'rejected') throw outcome.reason
}

/** A failure to reach the image's content in the fleet, named; others pass through. */
function unavailable (image: ResolvedImage, err: unknown): unknown {
  if (!(err instanceof Error) || err instanceof ImageUnavailableError || err instanceof ImageIncompleteError) return err
  // The mesh's BlockUnavailableError, by name: the registry does not load the mesh's modules.
  if (err.name === 'BlockUnavailableError') return new ImageUnavailableError(image, 'no node of the fleet serves it', { cause: err })
  if (err.name === 'ManifestUnknownError') return new ImageUnavailableError(image, err.message, { cause: err })
  return err
}
