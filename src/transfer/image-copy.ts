// Copies one image (or a whole index) from a source to a destination: blobs first, a few at a
// time and each once, then the manifests below the top one, then the top one, then the
// destination commits (an archive or a layout appears whole, or not at all). Sources and
// destinations are the transports the CLI names (transfer/image-ref.ts).
import pLimit from 'p-limit'
import { digestOf } from '../oci/digest.ts'
import { parseManifest, type Descriptor } from '../oci/manifest.ts'
import { DOCKER_MANIFEST } from '../oci/media-types.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'

/** A manifest as it was stored: its digest, media type and exact bytes. */
export interface ManifestBytes {
  digest: string
  mediaType: string
  bytes: Buffer
}

export interface ImageSource {
  /** What the reference names: an image manifest or an index. */
  top(signal?: AbortSignal): Promise<ManifestBytes>
  manifest(descriptor: Descriptor, signal?: AbortSignal): Promise<ManifestBytes>
  /** A blob's bytes from `offset` on (a resumed upload needs only the rest). */
  blob(descriptor: Descriptor, offset: number, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>>
  close(): Promise<void>
}

export interface ImageDestination {
  /** Whether the destination holds the blob already (it is then skipped). */
  hasBlob(descriptor: Descriptor, signal?: AbortSignal): Promise<boolean>
  /** Stores a blob, checked against its digest; `read` opens the source from an offset (again, to resume). */
  putBlob(descriptor: Descriptor, read: (offset: number) => Promise<AsyncIterable<Uint8Array>>, progress: (bytes: number) => void, signal?: AbortSignal): Promise<void>
  /** Stores a blob whose descriptor is known only once its bytes have passed (a layer a transform rewrote). */
  putTransformed(body: AsyncIterable<Uint8Array>, described: () => Promise<Descriptor>, signal?: AbortSignal): Promise<void>
  /** Stores a manifest; `top` for the one the reference names (it gets the tag). */
  putManifest(manifest: ManifestBytes, top: boolean, signal?: AbortSignal): Promise<void>
  /** Makes what was stored appear (a layout's index, an archive's file). */
  commit(signal?: AbortSignal): Promise<void>
  /** Removes whatever a copy that did not finish left (temporary files). */
  discard(): Promise<void>
}

/** What a copy reports as it goes (transfer/progress.ts draws it). */
export interface CopyProgress {
  /** Every blob the copy will look at, once known. */
  planned(blobs: Descriptor[]): void
  blobStarted(descriptor: Descriptor): void
  blobProgress(descriptor: Descriptor, bytes: number): void
  blobDone(descriptor: Descriptor, skipped: boolean): void
}

/** Rewrites layers on the way (encrypts or decrypts them, transfer/crypt-transforms.ts). */
export interface LayerTransform {
  /** Whether the copy rewrites this layer. */
  applies(layer: Descriptor): boolean
  /** The layer's new bytes, and its new descriptor once they have been read to their end. */
  apply(layer: Descriptor, bytes: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<{ bytes: AsyncIterable<Uint8Array>, descriptor: () => Promise<Descriptor> }>
}

export class LayerTransformError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'MANIFEST_INVALID', status: 400, message: 'the image cannot carry rewritten layers' }
}

export class NoMatchingPlatformError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'MANIFEST_UNKNOWN', status: 404, message: 'the index has no manifest for this platform' }
}

export interface Platform { os: string, architecture: string, variant?: string }

export interface CopyOptions {
  /** Every manifest of an index; otherwise the one for `platform` alone (as skopeo copies). */
  all?: boolean
  platform?: Platform
  /** Blobs copied at once. */
  concurrency?: number
  progress?: CopyProgress
  /** Layers rewritten on the way; the manifests above them are rewritten to name the new ones. */
  transform?: LayerTransform
  signal?: AbortSignal
}

export interface CopyResult {
  /** The top manifest the destination got (a platform's manifest when one was picked from an index). */
  digest: string
  mediaType: string
  blobs: number
  bytes: number
  skipped: number
}

/** The platform this process runs on, as OCI names it. */
export function hostPlatform (): Platform {
  const architecture = ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ia32: '386', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[process.arch] ?? process.arch
  return { os: process.platform === 'win32' ? 'windows' : process.platform, architecture }
}

export async function copyImage (source: ImageSource, destination: ImageDestination, options: CopyOptions = {}): Promise<CopyResult> {
  // The first blob that fails stops the others, and the copy waits for them all before the
  // destination discards what they wrote (one still writing would race the removal).
  const failing = new AbortController()
  const signal = options.signal === undefined ? failing.signal : AbortSignal.any([options.signal, failing.signal])
  const result = { blobs: 0, bytes: 0, skipped: 0 }
  try {
    let top = await source.top(signal)
    let parsed = parseManifest(top.bytes, top.mediaType)
    if (parsed.isIndex && options.all !== true) {
      const wanted = options.platform ?? hostPlatform()
      const chosen = parsed.manifests.find(child => matches(child.platform, wanted))
      if (chosen === undefined) throw new NoMatchingPlatformError(`the index ${top.digest} has no manifest for ${wanted.os}/${wanted.architecture}${wanted.variant === undefined ? '' : `/${wanted.variant}`} (--all copies every one)`)
      top = await source.manifest(chosen, signal)
      parsed = parseManifest(top.bytes, top.mediaType)
    }
    // Every manifest below the top one, depth first, each before the index that lists it.
    const below: ManifestBytes[] = []
    const blobs = new Map<string, Descriptor>()
    const layers = new Set<string>()
    const collect = async (manifest: ManifestBytes): Promise<void> => {
      const each = parseManifest(manifest.bytes, manifest.mediaType)
      for (const blob of each.blobs) blobs.set(blob.digest, blob)
      for (const layer of each.blobs.slice(1)) layers.add(layer.digest)
      for (const child of each.manifests) {
        const fetched = await source.manifest(child, signal)
        await collect(fetched)
        below.push(fetched)
      }
    }
    await collect(top)
    options.progress?.planned([...blobs.values()])
    const { transform } = options
    /** Blobs (then manifests) the copy rewrote: their new descriptors, by their old digests. */
    const replaced = new Map<string, Descriptor>()
    const limit = pLimit(options.concurrency ?? 4)
    const copies = await Promise.allSettled([...blobs.values()].map(async blob => await limit(async () => {
      signal?.throwIfAborted()
      options.progress?.blobStarted(blob)
      const counting = (bytes: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> => counted(bytes, count => { options.progress?.blobProgress(blob, count) })
      if (transform !== undefined && layers.has(blob.digest) && transform.applies(blob)) {
        const bytes = await source.blob(blob, 0, signal)
        const rewritten = await transform.apply(blob, counting(bytes), signal).catch(async (err: unknown) => {
          // Refused before reading (no key for it): the source's stream is closed, not left open.
          await bytes[Symbol.asyncIterator]().return?.()
          throw err
        })
        await destination.putTransformed(rewritten.bytes, rewritten.descriptor, signal)
        replaced.set(blob.digest, await rewritten.descriptor())
      } else if (await destination.hasBlob(blob, signal)) {
        result.skipped++
        options.progress?.blobDone(blob, true)
        return
      } else {
        await destination.putBlob(blob, async offset => await source.blob(blob, offset, signal), bytes => { options.progress?.blobProgress(blob, bytes) }, signal)
      }
      result.blobs++
      result.bytes += blob.size
      options.progress?.blobDone(blob, false)
    }).catch((err: unknown) => {
      if (!failing.signal.aborted) failing.abort(err)
      throw err
    })))
    if (copies.some(copy => copy.status === 'rejected')) throw options.signal?.aborted === true ? options.signal.reason : failing.signal.reason
    for (const manifest of below) await destination.putManifest(rewrite(manifest, replaced), false, signal)
    top = rewrite(top, replaced)
    await destination.putManifest(top, true, signal)
    await destination.commit(signal)
    return { digest: top.digest, mediaType: top.mediaType, ...result }
  } catch (err) {
    await destination.discard()
    throw err
  } finally {
    await source.close()
  }
}

/**
 * A manifest naming the rewritten layers (and an index naming its rewritten manifests), with its
 * new digest recorded for the index above it; unchanged when nothing below it changed.
 */
function rewrite (manifest: ManifestBytes, replaced: Map<string, Descriptor>): ManifestBytes {
  if (replaced.size === 0) return manifest
  const json = JSON.parse(manifest.bytes.toString('utf8')) as { layers?: Descriptor[], manifests?: Descriptor[] }
  let changed = false
  const swap = (entry: Descriptor, whole: boolean): Descriptor => {
    const next = replaced.get(entry.digest)
    if (next === undefined) return entry
    changed = true
    // A layer takes its new descriptor whole; an index entry keeps its platform and annotations.
    return whole ? next : { ...entry, mediaType: next.mediaType, digest: next.digest, size: next.size }
  }
  if (Array.isArray(json.layers)) json.layers = json.layers.map(layer => swap(layer, true))
  if (Array.isArray(json.manifests)) json.manifests = json.manifests.map(child => swap(child, false))
  if (!changed) return manifest
  if (manifest.mediaType === DOCKER_MANIFEST) throw new LayerTransformError('a Docker schema 2 manifest cannot name encrypted layers: push the image as OCI')
  const bytes = Buffer.from(JSON.stringify(json))
  const rewritten = { digest: digestOf(bytes), mediaType: manifest.mediaType, bytes }
  replaced.set(manifest.digest, { mediaType: manifest.mediaType, digest: rewritten.digest, size: bytes.length })
  return rewritten
}

/** The bytes as they pass, each chunk counted. */
export async function * counted (body: AsyncIterable<Uint8Array>, count: (bytes: number) => void): AsyncIterable<Uint8Array> {
  for await (const chunk of body) {
    count(chunk.length)
    yield chunk
  }
}

function matches (platform: Record<string, unknown> | undefined, wanted: Platform): boolean {
  if (platform === undefined) return false
  if (platform.os !== wanted.os || platform.architecture !== wanted.architecture) return false
  return wanted.variant === undefined || platform.variant === wanted.variant
}
