// Reproducible OCI image layouts for tests and benchmarks.
//
// Layer data is an AES-256-CTR keystream over zeros: incompressible (so no client or registry can
// shrink it) and fully determined by the seed (so the same options give the same digests on every
// machine). Layers are written as single-file ustar archives by a tiny writer below, streamed to
// disk and hashed on the way, so a 1 GiB image never sits in memory.

import { createCipheriv, createHash, randomBytes } from 'node:crypto'
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import type { FileHandle } from 'node:fs/promises'
import path from 'node:path'

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerTar: 'application/vnd.oci.image.layer.v1.tar',
  ociEmpty: 'application/vnd.oci.empty.v1+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerTar: 'application/vnd.docker.image.rootfs.diff.tar'
} as const

export const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'

/** The OCI "empty" descriptor: the two bytes `{}`, used as the config of artifacts. */
export const EMPTY_DESCRIPTOR: Descriptor = {
  mediaType: MEDIA_TYPES.ociEmpty,
  digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a',
  size: 2
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  artifactType?: string
  annotations?: Record<string, string>
}

export interface ImageLayoutOptions {
  /** Byte size of each layer's single file (the tar is slightly larger). */
  layers: number[]
  seed: string
  platform?: Platform
  /** Tag recorded in index.json as org.opencontainers.image.ref.name; default 'latest'. */
  tag?: string
}

export interface ImageLayoutResult {
  manifestDigest: string
  manifestSize: number
  manifestMediaType: string
  configDigest: string
  layerDigests: string[]
  layerSizes: number[]
  /** Bytes of every blob of the image: manifest + config + layers. */
  totalSize: number
}

export interface MultiArchLayoutOptions {
  platforms: Platform[]
  /** Byte size of the one layer file of each platform's image. */
  layerSize: number
  seed: string
  tag?: string
  /** 'oci' (default): OCI index of OCI manifests; 'docker': manifest list of schema2 manifests. */
  format?: ImageFormat
}

export interface MultiArchLayoutResult {
  indexDigest: string
  indexSize: number
  indexMediaType: string
  manifests: Array<ImageLayoutResult & { platform: Platform }>
  /** Bytes of every blob: index + all manifests, configs and layers. */
  totalSize: number
}

export interface ArtifactOptions {
  subjectDigest: string
  subjectSize: number
  subjectMediaType: string
  artifactType: string
  tag?: string
  /** Content of the single layer; default a short text naming the subject. */
  layerContent?: Uint8Array | string
  layerMediaType?: string
  annotations?: Record<string, string>
}

export interface ArtifactResult {
  manifestDigest: string
  manifestSize: number
  manifestMediaType: string
  layerDigest: string
  layerSize: number
}

export type ImageFormat = 'oci' | 'docker'

interface FormatMediaTypes {
  manifest: string
  config: string
  layer: string
  index: string
}

const FORMATS: Record<ImageFormat, FormatMediaTypes> = {
  oci: {
    manifest: MEDIA_TYPES.ociManifest,
    config: MEDIA_TYPES.ociConfig,
    layer: MEDIA_TYPES.ociLayerTar,
    index: MEDIA_TYPES.ociIndex
  },
  docker: {
    manifest: MEDIA_TYPES.dockerManifest,
    config: MEDIA_TYPES.dockerConfig,
    layer: MEDIA_TYPES.dockerLayerTar,
    index: MEDIA_TYPES.dockerManifestList
  }
}

const DEFAULT_PLATFORM: Platform = { os: 'linux', architecture: 'amd64' }
const EPOCH = '1970-01-01T00:00:00Z'
const CHUNK_SIZE = 1024 * 1024
const TAR_BLOCK = 512

// ---------------------------------------------------------------------------------------------
// Public builders

/**
 * Writes a single-platform OCI image (uncompressed tar layers) into the OCI layout at `dir`,
 * creating it or adding to it; an index.json entry with the same tag is replaced.
 */
export async function createImageLayout (dir: string, options: ImageLayoutOptions): Promise<ImageLayoutResult> {
  return await createLayoutWithFormat(dir, options, 'oci')
}

/**
 * createImageLayout with Docker schema2 media types for manifest, config and layers. skopeo 1.9
 * looks up tags in index.json among OCI media types only: give a schema2 image a layout of its own
 * and copy it without a tag (`oci:<dir>`, the layout's only entry).
 */
export async function createDockerSchema2Layout (dir: string, options: ImageLayoutOptions): Promise<ImageLayoutResult> {
  return await createLayoutWithFormat(dir, options, 'docker')
}

/**
 * Writes an index (or Docker manifest list) with one image of one distinct layer per platform, and
 * tags the index in index.json. A Docker manifest list has the same skopeo limit as a schema2 image
 * (own layout, no tag), and skopeo 1.9 cannot pull one back into `oci:` with --preserve-digests.
 */
export async function createMultiArchLayout (dir: string, options: MultiArchLayoutOptions): Promise<MultiArchLayoutResult> {
  const format = options.format ?? 'oci'
  await initLayout(dir)
  const manifests: MultiArchLayoutResult['manifests'] = []
  for (const platform of options.platforms) {
    const image = await writeImageBlobs(dir, {
      layers: [options.layerSize],
      seed: `${options.seed}/${platformString(platform)}`,
      platform
    }, format)
    manifests.push({ ...image, platform })
  }
  const index = {
    schemaVersion: 2,
    mediaType: FORMATS[format].index,
    manifests: manifests.map((m) => ({
      mediaType: m.manifestMediaType,
      digest: m.manifestDigest,
      size: m.manifestSize,
      platform: m.platform
    }))
  }
  const indexDescriptor = await writeJsonBlob(dir, FORMATS[format].index, index)
  await setIndexEntry(dir, indexDescriptor, options.tag ?? 'latest')
  return {
    indexDigest: indexDescriptor.digest,
    indexSize: indexDescriptor.size,
    indexMediaType: indexDescriptor.mediaType,
    manifests,
    totalSize: indexDescriptor.size + manifests.reduce((sum, m) => sum + m.totalSize, 0)
  }
}

/** Adds to the layout at `dir` an artifact manifest whose `subject` is the given manifest. */
export async function addArtifactWithSubject (dir: string, options: ArtifactOptions): Promise<ArtifactResult> {
  await initLayout(dir)
  await writeBlob(dir, Buffer.from('{}'))
  const content = options.layerContent ?? `shoal test artifact ${options.artifactType} for ${options.subjectDigest}\n`
  const layer = await writeBlob(dir, typeof content === 'string' ? Buffer.from(content) : content)
  const manifest = {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES.ociManifest,
    artifactType: options.artifactType,
    config: EMPTY_DESCRIPTOR,
    layers: [{ mediaType: options.layerMediaType ?? 'text/plain', digest: layer.digest, size: layer.size }],
    subject: { mediaType: options.subjectMediaType, digest: options.subjectDigest, size: options.subjectSize },
    ...(options.annotations === undefined ? {} : { annotations: options.annotations })
  }
  const descriptor = await writeJsonBlob(dir, MEDIA_TYPES.ociManifest, manifest)
  await setIndexEntry(dir, { ...descriptor, artifactType: options.artifactType }, options.tag ?? 'artifact')
  return {
    manifestDigest: descriptor.digest,
    manifestSize: descriptor.size,
    manifestMediaType: descriptor.mediaType,
    layerDigest: layer.digest,
    layerSize: layer.size
  }
}

/**
 * createImageLayout, skipped when `dir` already holds the same image: the options and result are
 * kept beside the layout in `<dir>.done.json`, written last, so an interrupted build is redone.
 */
export async function cachedImageLayout (dir: string, options: ImageLayoutOptions): Promise<ImageLayoutResult> {
  const markerPath = `${dir}.done.json`
  const wanted = JSON.stringify(options)
  const marker = await readJsonIfExists<{ options: string, result: ImageLayoutResult }>(markerPath)
  if (marker !== undefined && marker.options === wanted && await isFile(layoutBlobPath(dir, marker.result.manifestDigest))) {
    return marker.result
  }
  await rm(markerPath, { force: true })
  await rm(dir, { recursive: true, force: true })
  const result = await createImageLayout(dir, options)
  await writeFile(markerPath, JSON.stringify({ options: wanted, result }, null, 2))
  return result
}

// ---------------------------------------------------------------------------------------------
// Layout helpers, also useful to tests that push blobs by hand

export function layoutBlobPath (dir: string, digest: string): string {
  const [algorithm, hex] = digest.split(':')
  if (algorithm === undefined || hex === undefined) throw new Error(`not a digest: ${digest}`)
  return path.join(dir, 'blobs', algorithm, hex)
}

export interface LayoutIndex {
  schemaVersion: 2
  mediaType?: string
  manifests: Descriptor[]
}

export async function readLayoutIndex (dir: string): Promise<LayoutIndex> {
  return JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as LayoutIndex
}

/** The index.json entry tagged `tag`, or the only entry when no tag is given. */
export async function findLayoutEntry (dir: string, tag?: string): Promise<Descriptor> {
  const { manifests } = await readLayoutIndex(dir)
  const found = tag === undefined
    ? (manifests.length === 1 ? manifests[0] : undefined)
    : manifests.find((m) => m.annotations?.[REF_NAME_ANNOTATION] === tag)
  if (found === undefined) throw new Error(`no ${tag === undefined ? 'single entry' : `tag ${tag}`} in ${dir}/index.json`)
  return found
}

export function sha256Digest (bytes: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

// ---------------------------------------------------------------------------------------------
// Images

async function createLayoutWithFormat (dir: string, options: ImageLayoutOptions, format: ImageFormat): Promise<ImageLayoutResult> {
  await initLayout(dir)
  const image = await writeImageBlobs(dir, options, format)
  await setIndexEntry(dir, {
    mediaType: image.manifestMediaType,
    digest: image.manifestDigest,
    size: image.manifestSize
  }, options.tag ?? 'latest')
  return image
}

/** Writes layers, config and manifest as blobs; leaves index.json alone. */
async function writeImageBlobs (dir: string, options: Omit<ImageLayoutOptions, 'tag'>, format: ImageFormat): Promise<ImageLayoutResult> {
  const mediaTypes = FORMATS[format]
  const platform = options.platform ?? DEFAULT_PLATFORM
  const layers: Descriptor[] = []
  for (const [index, size] of options.layers.entries()) {
    const layer = await writeLayerBlob(dir, {
      seed: `${options.seed}/layer/${index}/${size}`,
      fileName: `layer-${index}.bin`,
      size
    })
    layers.push({ mediaType: mediaTypes.layer, ...layer })
  }
  const config = await writeJsonBlob(dir, mediaTypes.config, imageConfig(platform, layers))
  const manifest = await writeJsonBlob(dir, mediaTypes.manifest, {
    schemaVersion: 2,
    mediaType: mediaTypes.manifest,
    config,
    layers
  })
  return {
    manifestDigest: manifest.digest,
    manifestSize: manifest.size,
    manifestMediaType: manifest.mediaType,
    configDigest: config.digest,
    layerDigests: layers.map((l) => l.digest),
    layerSizes: layers.map((l) => l.size),
    totalSize: manifest.size + config.size + layers.reduce((sum, l) => sum + l.size, 0)
  }
}

/** An image config valid for both OCI and Docker: the layers are uncompressed, so diff_id = digest. */
function imageConfig (platform: Platform, layers: Descriptor[]): object {
  return {
    created: EPOCH,
    architecture: platform.architecture,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    os: platform.os,
    config: {},
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    history: layers.map((_, index) => ({ created: EPOCH, created_by: `shoal test layer ${index}` }))
  }
}

function platformString (platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter((p) => p !== undefined).join('/')
}

// ---------------------------------------------------------------------------------------------
// Layout files

async function initLayout (dir: string): Promise<void> {
  await mkdir(path.join(dir, 'blobs', 'sha256'), { recursive: true })
  await writeFile(path.join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
}

/** Records `descriptor` in index.json under `tag`, replacing whatever had that tag before. */
async function setIndexEntry (dir: string, descriptor: Descriptor, tag: string): Promise<void> {
  const existing = await readJsonIfExists<LayoutIndex>(path.join(dir, 'index.json'))
  const others = (existing?.manifests ?? []).filter((m) => m.annotations?.[REF_NAME_ANNOTATION] !== tag)
  const entry: Descriptor = { ...descriptor, annotations: { ...descriptor.annotations, [REF_NAME_ANNOTATION]: tag } }
  const index: LayoutIndex = { schemaVersion: 2, mediaType: MEDIA_TYPES.ociIndex, manifests: [...others, entry] }
  await writeFileAtomically(path.join(dir, 'index.json'), Buffer.from(JSON.stringify(index)))
}

async function writeJsonBlob (dir: string, mediaType: string, value: object): Promise<Descriptor> {
  const blob = await writeBlob(dir, Buffer.from(JSON.stringify(value)))
  return { mediaType, ...blob }
}

async function writeBlob (dir: string, bytes: Uint8Array): Promise<{ digest: string, size: number }> {
  const digest = sha256Digest(bytes)
  const blobPath = layoutBlobPath(dir, digest)
  if (!await isFile(blobPath)) await writeFileAtomically(blobPath, bytes)
  return { digest, size: bytes.byteLength }
}

async function writeFileAtomically (filePath: string, bytes: Uint8Array): Promise<void> {
  const temporary = `${filePath}.tmp-${randomBytes(6).toString('hex')}`
  await writeFile(temporary, bytes)
  await rename(temporary, filePath)
}

// ---------------------------------------------------------------------------------------------
// Layers: a ustar archive holding one file of keystream bytes

interface LayerSpec {
  seed: string
  fileName: string
  size: number
}

/** Streams the layer tar to a temporary file, hashing as it goes, then renames it to its digest. */
async function writeLayerBlob (dir: string, spec: LayerSpec): Promise<{ digest: string, size: number }> {
  const temporary = path.join(dir, 'blobs', 'sha256', `.layer-${randomBytes(6).toString('hex')}`)
  const hash = createHash('sha256')
  const file = await open(temporary, 'w')
  let size = 0
  try {
    const write = async (bytes: Uint8Array): Promise<void> => {
      hash.update(bytes)
      size += bytes.byteLength
      await writeAll(file, bytes)
    }
    await write(tarHeader(spec.fileName, spec.size))
    await writeKeystream(spec.seed, spec.size, write)
    await write(Buffer.alloc(tarPadding(spec.size)))
    await write(Buffer.alloc(2 * TAR_BLOCK)) // end-of-archive marker
  } finally {
    await file.close()
  }
  const digest = `sha256:${hash.digest('hex')}`
  await rename(temporary, layoutBlobPath(dir, digest))
  return { digest, size }
}

async function writeAll (file: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await file.write(bytes, offset, bytes.byteLength - offset)
    offset += bytesWritten
  }
}

/** AES-256-CTR over zeros, key and IV derived from the seed: deterministic, incompressible. */
async function writeKeystream (seed: string, size: number, write: (bytes: Uint8Array) => Promise<void>): Promise<void> {
  const key = createHash('sha256').update(`shoal-test-image key\0${seed}`).digest()
  const iv = createHash('sha256').update(`shoal-test-image iv\0${seed}`).digest().subarray(0, 16)
  const cipher = createCipheriv('aes-256-ctr', key, iv)
  const zeros = Buffer.alloc(Math.min(CHUNK_SIZE, size))
  for (let remaining = size; remaining > 0; remaining -= CHUNK_SIZE) {
    await write(cipher.update(zeros.subarray(0, Math.min(CHUNK_SIZE, remaining))))
  }
}

function tarPadding (size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK
}

/** A POSIX ustar header for a regular file owned by 0:0, mode 0644, mtime 0. */
export function tarHeader (fileName: string, size: number): Buffer {
  if (Buffer.byteLength(fileName) > 100) throw new Error(`tar name too long: ${fileName}`)
  if (size >= 8 ** 11) throw new Error(`file too large for a ustar header: ${size}`)
  const header = Buffer.alloc(TAR_BLOCK)
  header.write(fileName, 0, 100, 'utf8')
  writeOctal(header, 0o644, 100, 8) // mode
  writeOctal(header, 0, 108, 8) // uid
  writeOctal(header, 0, 116, 8) // gid
  writeOctal(header, size, 124, 12)
  writeOctal(header, 0, 136, 12) // mtime
  header.write('0', 156, 1, 'ascii') // typeflag: regular file
  header.write('ustar\0', 257, 6, 'ascii')
  header.write('00', 263, 2, 'ascii')
  header.write('root', 265, 32, 'ascii') // uname
  header.write('root', 297, 32, 'ascii') // gname
  writeOctal(header, 0, 329, 8) // devmajor
  writeOctal(header, 0, 337, 8) // devminor
  // The checksum is summed with its own field read as eight spaces, then stored as 6 digits, NUL, space.
  header.fill(' ', 148, 156, 'ascii')
  const checksum = header.reduce((sum, byte) => sum + byte, 0)
  header.write(`${checksum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'ascii')
  return header
}

/** Zero-padded octal digits filling the field, terminated by NUL. */
function writeOctal (header: Buffer, value: number, offset: number, length: number): void {
  header.write(`${value.toString(8).padStart(length - 1, '0')}\0`, offset, length, 'ascii')
}

// ---------------------------------------------------------------------------------------------

async function readJsonIfExists<T> (filePath: string): Promise<T | undefined> {
  try {
    return JSON.parse(await readFile(filePath, 'utf8')) as T
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

async function isFile (filePath: string): Promise<boolean> {
  try {
    return (await stat(filePath)).isFile()
  } catch {
    return false
  }
}
