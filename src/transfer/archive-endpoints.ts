// Archives as sources and destinations: `oci-archive:FILE` (a tar of an OCI layout) and
// `docker-archive:FILE` (what `docker save` writes and `docker load` and `podman load` read). A
// source is unpacked into a temporary directory first; a destination is built in one and packed
// into FILE.<random>.part, which becomes FILE only when whole.
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, mkdtemp, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { createGunzip, createZstdDecompress } from 'node:zlib'
import { digestOf, parseDigest } from '../oci/digest.ts'
import { parseManifest, type Descriptor } from '../oci/manifest.ts'
import { OCI_MANIFEST } from '../oci/media-types.ts'
import type { ImageDestination, ImageSource, ManifestBytes } from './image-copy.ts'
import { ImageFileError, LayoutDestination, LayoutSource } from './layout-endpoint.ts'
import { extractTar, packDirectory } from './tar-files.ts'

const OCI_CONFIG = 'application/vnd.oci.image.config.v1+json'
const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar'
const OCI_LAYER_GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'

async function temporaryDir (): Promise<string> {
  return await mkdtemp(join(tmpdir(), 'shoal-transfer-'))
}

/** Packs `dir` into `file` through a temporary name: FILE is whole or absent. */
async function packInto (dir: string, file: string, signal?: AbortSignal): Promise<void> {
  const partial = `${file}.${randomBytes(6).toString('hex')}.part`
  try {
    await packDirectory(dir, partial, signal)
    await rename(partial, file)
  } finally {
    await rm(partial, { force: true })
  }
}

/** A source over a directory an archive was unpacked into, removed when the copy closes it. */
class UnpackedSource implements ImageSource {
  private readonly unpacking: Promise<ImageSource>
  private readonly dir: Promise<string>

  constructor (file: string, open: (dir: string) => Promise<ImageSource>, signal?: AbortSignal) {
    this.dir = temporaryDir()
    this.unpacking = this.dir.then(async dir => {
      await extractTar(file, dir, signal)
      return await open(dir)
    })
    // A copy that fails before its first read still closes the source.
    this.unpacking.catch(() => {})
  }

  async top (signal?: AbortSignal): Promise<ManifestBytes> { return await (await this.unpacking).top(signal) }
  async manifest (descriptor: Descriptor, signal?: AbortSignal): Promise<ManifestBytes> { return await (await this.unpacking).manifest(descriptor, signal) }
  async blob (descriptor: Descriptor, offset: number, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> { return await (await this.unpacking).blob(descriptor, offset, signal) }
  async close (): Promise<void> {
    await rm(await this.dir, { recursive: true, force: true })
  }
}

export function ociArchiveSource (file: string, tag?: string, signal?: AbortSignal): ImageSource {
  return new UnpackedSource(file, async dir => new LayoutSource(dir, tag), signal)
}

export class OciArchiveDestination implements ImageDestination {
  private readonly file: string
  private readonly dir: Promise<string>
  private readonly layout: Promise<LayoutDestination>

  constructor (file: string, tag?: string) {
    this.file = file
    this.dir = temporaryDir()
    this.layout = this.dir.then(dir => new LayoutDestination(join(dir, 'layout'), tag))
  }

  async hasBlob (): Promise<boolean> { return false }
  async putBlob (descriptor: Descriptor, read: (offset: number) => Promise<AsyncIterable<Uint8Array>>, progress: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
    await (await this.layout).putBlob(descriptor, read, progress, signal)
  }

  async putTransformed (body: AsyncIterable<Uint8Array>, described: () => Promise<Descriptor>, signal?: AbortSignal): Promise<void> {
    await (await this.layout).putTransformed(body, described, signal)
  }

  async putManifest (manifest: ManifestBytes, top: boolean): Promise<void> { await (await this.layout).putManifest(manifest, top) }
  async commit (signal?: AbortSignal): Promise<void> {
    await (await this.layout).commit()
    await packInto(join(await this.dir, 'layout'), this.file, signal)
    await rm(await this.dir, { recursive: true, force: true })
  }

  async discard (): Promise<void> {
    await rm(await this.dir, { recursive: true, force: true })
  }
}

/** One image of a docker archive's manifest.json. */
interface DockerArchiveEntry { Config: string, RepoTags?: string[] | null, Layers: string[] }

/**
 * A docker archive read as an OCI image: its config and its layers (uncompressed tars, as
 * `docker save` writes them, so the layer digests are the config's diff ids) under an OCI manifest.
 */
class DockerArchiveImage implements ImageSource {
  private readonly dir: string
  private readonly name: string | undefined
  private readonly blobs = new Map<string, string>()
  private built: ManifestBytes | undefined

  constructor (dir: string, name: string | undefined) {
    this.dir = dir
    this.name = name
  }

  async top (signal?: AbortSignal): Promise<ManifestBytes> {
    if (this.built !== undefined) return this.built
    let entries: DockerArchiveEntry[]
    try {
      entries = JSON.parse(await readFile(join(this.dir, 'manifest.json'), 'utf8')) as DockerArchiveEntry[]
      if (!Array.isArray(entries)) throw new Error('not a list')
    } catch (err) {
      throw new ImageFileError(`not a docker archive (its manifest.json: ${(err as Error).message})`)
    }
    const names = entries.flatMap(entry => entry.RepoTags ?? [])
    const entry = this.name === undefined
      ? (entries.length === 1 ? entries[0] : undefined)
      : entries.find(each => (each.RepoTags ?? []).some(tag => tag === this.name || tag === `docker.io/${this.name ?? ''}` || tag === `localhost/${this.name ?? ''}`))
    if (entry === undefined) {
      throw new ImageFileError(this.name === undefined
        ? `the archive holds ${entries.length} images: name one with docker-archive:FILE:<name:tag> (${names.join(', ') || 'none named'})`
        : `the archive has no image ${this.name} (${names.join(', ') || 'none named'})`)
    }
    const config = await this.describe(entry.Config, OCI_CONFIG, signal)
    const layers: Descriptor[] = []
    for (const layer of entry.Layers) layers.push(await this.describe(layer, await isGzip(join(this.dir, layer)) ? OCI_LAYER_GZIP : OCI_LAYER, signal))
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config, layers }))
    this.built = { digest: digestOf(bytes), mediaType: OCI_MANIFEST, bytes }
    return this.built
  }

  async manifest (descriptor: Descriptor): Promise<ManifestBytes> {
    throw new ImageFileError(`a docker archive holds no manifest ${descriptor.digest}`)
  }

  async blob (descriptor: Descriptor, offset: number): Promise<AsyncIterable<Uint8Array>> {
    const path = this.blobs.get(descriptor.digest)
    if (path === undefined) throw new ImageFileError(`the archive has no blob ${descriptor.digest}`)
    return createReadStream(path, { start: offset, highWaterMark: 1 << 20 })
  }

  async close (): Promise<void> {}

  /** A file of the archive as a descriptor: its digest from its name when the name is one (blobs/sha256/<hex>), else hashed. */
  private async describe (name: string, mediaType: string, signal?: AbortSignal): Promise<Descriptor> {
    const path = join(this.dir, name)
    // docker save 25+ names blobs by digest: read once, by the destination, which checks it.
    const named = /^blobs\/sha256\/([0-9a-f]{64})$/.exec(name)
    if (named !== null) {
      const info = await stat(path).catch(() => undefined)
      if (info === undefined) throw new ImageFileError(`the archive lacks ${name}`)
      const digest = `sha256:${named[1] ?? ''}`
      this.blobs.set(digest, path)
      return { mediaType, digest, size: info.size }
    }
    const hash = createHash('sha256')
    let size = 0
    try {
      await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), new Transform({
        transform (chunk: Buffer, _encoding, done) { hash.update(chunk); size += chunk.length; done() }
      }), { signal })
    } catch (err) {
      signal?.throwIfAborted()
      throw new ImageFileError(`the archive lacks ${name}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
    const digest = `sha256:${hash.digest('hex')}`
    this.blobs.set(digest, path)
    return { mediaType, digest, size }
  }
}

export function dockerArchiveSource (file: string, name?: string, signal?: AbortSignal): ImageSource {
  return new UnpackedSource(file, async dir => new DockerArchiveImage(dir, name), signal)
}

async function isGzip (path: string): Promise<boolean> {
  const handle = await open(path, 'r').catch(() => undefined)
  if (handle === undefined) return false
  try {
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(2), 0, 2, 0)
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b
  } finally {
    await handle.close()
  }
}

/**
 * Writes a docker archive: `<config hex>.json`, each layer uncompressed as `<diff id hex>.tar`
 * (docker load and podman load check layers against the config's diff ids), and manifest.json
 * naming them with the image's `name:tag`.
 */
export class DockerArchiveDestination implements ImageDestination {
  private readonly file: string
  private readonly repoTag: string | undefined
  private readonly dir: Promise<string>
  /** Blobs as they were written: the file name in the archive. */
  private readonly written = new Map<string, string>()
  private manifest: ManifestBytes | undefined

  constructor (file: string, repoTag?: string) {
    this.file = file
    this.repoTag = repoTag
    this.dir = temporaryDir()
  }

  async hasBlob (): Promise<boolean> { return false }

  async putBlob (descriptor: Descriptor, read: (offset: number) => Promise<AsyncIterable<Uint8Array>>, progress: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
    await this.store(await read(0), async () => descriptor, progress, signal)
  }

  async putTransformed (body: AsyncIterable<Uint8Array>, described: () => Promise<Descriptor>, signal?: AbortSignal): Promise<void> {
    await this.store(body, described, () => {}, signal)
  }

  /** A blob, checked against its descriptor once it has passed; a layer uncompressed on the way and named by its diff id. */
  private async store (body: AsyncIterable<Uint8Array>, described: () => Promise<Descriptor>, progress: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
    const dir = await this.dir
    const received = createHash('sha256')
    const uncompressed = createHash('sha256')
    let size = 0
    const checking = new Transform({
      transform (chunk: Buffer, _encoding, done) { received.update(chunk); size += chunk.length; progress(chunk.length); done(null, chunk) }
    })
    const hashing = new Transform({
      transform (chunk: Buffer, _encoding, done) { uncompressed.update(chunk); done(null, chunk) }
    })
    const temporary = join(dir, `.blob.${randomBytes(8).toString('hex')}`)
    await pipeline(body, checking, uncompressing, hashing, createWriteStream(temporary), { signal })
    const descriptor = await described()
    const { algorithm, hex } = parseDigest(descriptor.digest)
    if (size !== descriptor.size || algorithm !== 'sha256' || received.digest('hex') !== hex) throw new ImageFileError(`${descriptor.digest}: the bytes do not match the digest`)
    const isLayer = /layer|rootfs/.test(descriptor.mediaType)
    const name = isLayer ? `${uncompressed.digest('hex')}.tar` : `${hex}.json`
    await rename(temporary, join(dir, name))
    this.written.set(descriptor.digest, name)
  }

  async putManifest (manifest: ManifestBytes, top: boolean): Promise<void> {
    if (!top) throw new ImageFileError('a docker archive holds one image, not an index (copy one platform)')
    const parsed = parseManifest(manifest.bytes, manifest.mediaType)
    if (parsed.isIndex) throw new ImageFileError('a docker archive holds one image, not an index (copy one platform)')
    this.manifest = manifest
  }

  async commit (signal?: AbortSignal): Promise<void> {
    if (this.manifest === undefined) throw new ImageFileError('nothing to commit: no manifest was written')
    const dir = await this.dir
    const [config, ...layers] = parseManifest(this.manifest.bytes, this.manifest.mediaType).blobs
    const nameOf = (digest: string): string => {
      const name = this.written.get(digest)
      if (name === undefined) throw new ImageFileError(`the blob ${digest} was not written`)
      return name
    }
    if (config === undefined) throw new ImageFileError('the image has no config')
    const entry: DockerArchiveEntry = { Config: nameOf(config.digest), RepoTags: this.repoTag === undefined ? null : [this.repoTag], Layers: layers.map(layer => nameOf(layer.digest)) }
    await writeFile(join(dir, 'manifest.json'), JSON.stringify([entry]))
    await mkdir(dirname(this.file), { recursive: true })
    await packInto(dir, this.file, signal)
    await rm(dir, { recursive: true, force: true })
  }

  async discard (): Promise<void> {
    await rm(await this.dir, { recursive: true, force: true })
  }
}

/**
 * Passes bytes through, uncompressed when they start as gzip or zstd does (docker load wants plain
 * tars). A generator stage: the file's pace holds back the decompressor, and it the source.
 */
async function * uncompressing (source: AsyncIterable<Buffer>, options?: { signal?: AbortSignal }): AsyncGenerator<Buffer> {
  const chunks = source[Symbol.asyncIterator]()
  const first = await chunks.next()
  if (first.done === true) return
  const head = first.value
  const decompressor = head[0] === 0x1f && head[1] === 0x8b
    ? createGunzip()
    : head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528 ? createZstdDecompress() : undefined
  const rest = (async function * () {
    yield head
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) yield next.value
  })()
  if (decompressor === undefined) {
    yield * rest
    return
  }
  const feeding = pipeline(rest, decompressor, { ...(options?.signal === undefined ? {} : { signal: options.signal }), end: true }).catch((err: unknown) => { decompressor.destroy(err as Error) })
  for await (const out of decompressor) yield out as Buffer
  await feeding
}
