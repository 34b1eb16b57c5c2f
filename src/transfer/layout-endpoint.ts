// An OCI image layout directory as a source or a destination (`oci:DIR[:tag]`), as skopeo and
// umoci read and write it: blobs under blobs/<alg>/<hex>, index.json naming the images, a tag in
// each entry's org.opencontainers.image.ref.name annotation.
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { digestOf, parseDigest } from '../oci/digest.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import type { Descriptor } from '../oci/manifest.ts'
import type { ImageDestination, ImageSource, ManifestBytes } from './image-copy.ts'

export const REF_NAME = 'org.opencontainers.image.ref.name'

/** A layout, archive or file that cannot be read as the image it should hold. */
export class ImageFileError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'IMAGE_FILE_INVALID', status: 400, message: 'the image file or directory cannot be read' }
}

interface LayoutIndex { schemaVersion: number, mediaType?: string, manifests: Descriptor[] }

function blobPath (dir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest)
  return join(dir, 'blobs', algorithm, hex)
}

async function readIndex (dir: string): Promise<LayoutIndex> {
  let text: string
  try {
    text = await readFile(join(dir, 'index.json'), 'utf8')
  } catch (err) {
    throw new ImageFileError(`${dir} is not an OCI image layout (no index.json): ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
  }
  try {
    const index = JSON.parse(text) as LayoutIndex
    if (!Array.isArray(index.manifests)) throw new Error('no manifests')
    return index
  } catch (err) {
    throw new ImageFileError(`${dir}/index.json is not an OCI index: ${(err as Error).message}`)
  }
}

/** Reads a manifest blob and checks it against its digest. */
async function readManifest (dir: string, descriptor: Descriptor): Promise<ManifestBytes> {
  let bytes: Buffer
  try {
    bytes = await readFile(blobPath(dir, descriptor.digest))
  } catch {
    throw new ImageFileError(`${dir} lacks the manifest ${descriptor.digest}`)
  }
  if (digestOf(bytes, parseDigest(descriptor.digest).algorithm) !== descriptor.digest) throw new ImageFileError(`${dir}: the manifest ${descriptor.digest} does not match its digest`)
  return { digest: descriptor.digest, mediaType: descriptor.mediaType, bytes }
}

export class LayoutSource implements ImageSource {
  private readonly dir: string
  private readonly tag: string | undefined

  constructor (dir: string, tag?: string) {
    this.dir = dir
    this.tag = tag
  }

  async top (): Promise<ManifestBytes> {
    const { manifests } = await readIndex(this.dir)
    const tags = manifests.map(entry => entry.annotations?.[REF_NAME]).filter(tag => tag !== undefined)
    const chosen = this.tag === undefined
      ? (manifests.length === 1 ? manifests[0] : undefined)
      : manifests.find(entry => entry.annotations?.[REF_NAME] === this.tag)
    if (chosen === undefined) {
      throw new ImageFileError(this.tag === undefined
        ? `${this.dir} holds ${manifests.length} images: name one with oci:${this.dir}:<tag> (tags: ${tags.join(', ') || 'none'})`
        : `${this.dir} has no image tagged ${this.tag} (tags: ${tags.join(', ') || 'none'})`)
    }
    return await readManifest(this.dir, chosen)
  }

  async manifest (descriptor: Descriptor): Promise<ManifestBytes> {
    return await readManifest(this.dir, descriptor)
  }

  async blob (descriptor: Descriptor, offset: number): Promise<AsyncIterable<Uint8Array>> {
    const path = blobPath(this.dir, descriptor.digest)
    try {
      await stat(path)
    } catch {
      throw new ImageFileError(`${this.dir} lacks the blob ${descriptor.digest}`)
    }
    return createReadStream(path, { start: offset, highWaterMark: 1 << 20 })
  }

  async close (): Promise<void> {}
}

/**
 * Writes into a layout: each blob to a temporary file, checked, then renamed into place; the
 * index last. A copy that stops removes its temporary files, and the directory itself if it
 * made it; blobs already whole stay (a second try skips them).
 */
export class LayoutDestination implements ImageDestination {
  private readonly dir: string
  private readonly tag: string | undefined
  /** Whether this copy made the directory (a copy that stops removes it then). */
  private created = false
  private ready: Promise<void> | undefined
  private top: Descriptor | undefined
  private readonly temporary = new Set<string>()

  /** `tag`: the image's ref.name in index.json (none: an entry without one). */
  constructor (dir: string, tag?: string) {
    this.dir = dir
    this.tag = tag
  }

  private async ensureDir (): Promise<void> {
    this.ready ??= this.prepare()
    await this.ready
  }

  private async prepare (): Promise<void> {
    const isLayout = await stat(join(this.dir, 'index.json')).then(() => true, () => false)
    if (!isLayout) {
      // Only a missing or empty directory is made into a layout.
      const entries = await readdir(this.dir).catch(() => undefined)
      if (entries !== undefined && entries.length > 0) throw new ImageFileError(`${this.dir} exists and is not an OCI image layout`)
      this.created = entries === undefined
    }
    await mkdir(join(this.dir, 'blobs'), { recursive: true })
    await writeFile(join(this.dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  }

  async hasBlob (descriptor: Descriptor): Promise<boolean> {
    await this.ensureDir()
    const found = await stat(blobPath(this.dir, descriptor.digest)).catch(() => undefined)
    return found !== undefined && found.size === descriptor.size
  }

  async putBlob (descriptor: Descriptor, read: (offset: number) => Promise<AsyncIterable<Uint8Array>>, progress: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
    await this.ensureDir()
    await this.writeVerified(await read(0), async () => descriptor, progress, signal)
  }

  /** The transform hashed the bytes it made (its descriptor says so): they are not hashed twice. */
  async putTransformed (body: AsyncIterable<Uint8Array>, described: () => Promise<Descriptor>, signal?: AbortSignal): Promise<void> {
    await this.ensureDir()
    await this.writeVerified(body, described, () => {}, signal, false)
  }

  async putManifest (manifest: ManifestBytes, top: boolean): Promise<void> {
    await this.ensureDir()
    const descriptor = { digest: manifest.digest, size: manifest.bytes.length, mediaType: manifest.mediaType }
    await this.writeVerified([manifest.bytes], async () => descriptor, () => {})
    if (top) this.top = descriptor
  }

  async commit (): Promise<void> {
    if (this.top === undefined) throw new ImageFileError('nothing to commit: no manifest was written')
    const index = await readIndex(this.dir).catch((): LayoutIndex => ({ schemaVersion: 2, manifests: [] }))
    // The tag moves to this image; an image without a tag is listed once.
    const others = index.manifests.filter(entry => this.tag === undefined
      ? !(entry.digest === this.top?.digest && entry.annotations?.[REF_NAME] === undefined)
      : entry.annotations?.[REF_NAME] !== this.tag)
    const entry: Descriptor = { ...this.top, ...(this.tag === undefined ? {} : { annotations: { [REF_NAME]: this.tag } }) }
    const next = { schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [...others, entry] }
    const temporary = join(this.dir, `.index.json.${randomBytes(6).toString('hex')}`)
    await writeFile(temporary, JSON.stringify(next))
    await rename(temporary, join(this.dir, 'index.json'))
  }

  async discard (): Promise<void> {
    await Promise.all([...this.temporary].map(async path => { await rm(path, { force: true }) }))
    if (this.created) await rm(this.dir, { recursive: true, force: true })
  }

  /** Writes a blob under a temporary name, hashing it, and renames it into place once it matches its descriptor (known by then). */
  private async writeVerified (body: AsyncIterable<Uint8Array> | Uint8Array[], described: () => Promise<Descriptor>, progress: (bytes: number) => void, signal?: AbortSignal, hashing = true): Promise<void> {
    const temporary = join(this.dir, 'blobs', `.blob.${randomBytes(8).toString('hex')}`)
    this.temporary.add(temporary)
    const hash = createHash('sha256')
    let size = 0
    const counting = new Transform({
      transform (chunk: Buffer, _encoding, done) {
        if (hashing) hash.update(chunk)
        size += chunk.length
        progress(chunk.length)
        done(null, chunk)
      }
    })
    try {
      await pipeline(body, counting, createWriteStream(temporary), { signal })
      const descriptor = await described()
      const { algorithm, hex } = parseDigest(descriptor.digest)
      if (size !== descriptor.size) throw new ImageFileError(`${descriptor.digest}: got ${size} bytes, the manifest says ${descriptor.size}`)
      if (hashing && (algorithm !== 'sha256' || hash.digest('hex') !== hex)) throw new ImageFileError(`${descriptor.digest}: the bytes do not match the digest`)
      const path = blobPath(this.dir, descriptor.digest)
      await mkdir(dirname(path), { recursive: true })
      await rename(temporary, path)
    } finally {
      await rm(temporary, { force: true })
      this.temporary.delete(temporary)
    }
  }
}
