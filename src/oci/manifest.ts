import { ManifestInvalidError } from './errors.ts'
import { parseDigest } from './digest.ts'
import { MANIFEST_MEDIA_TYPES, OCI_INDEX, OCI_MANIFEST, isIndexMediaType } from './media-types.ts'

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  artifactType?: string
  annotations?: Record<string, string>
  platform?: Record<string, unknown>
  urls?: string[]
}

/** What the registry needs to know of a manifest, whatever its flavour. */
export interface ParsedManifest {
  mediaType: string
  isIndex: boolean
  /** Blobs an image manifest references (config first, then layers). */
  blobs: Descriptor[]
  /** Manifests an index references. */
  manifests: Descriptor[]
  subject?: Descriptor
  /** The manifest's artifactType, else its config's media type (per the referrers API). */
  artifactType?: string
  annotations?: Record<string, string>
}

/**
 * Validates a manifest body against the media type it was pushed with.
 * `contentType` may be empty, in which case the body's own mediaType decides.
 */
export function parseManifest (body: Uint8Array, contentType: string): ParsedManifest {
  let json: unknown
  try {
    json = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8'))
  } catch {
    throw new ManifestInvalidError('manifest is not valid JSON')
  }
  if (!isObject(json)) throw new ManifestInvalidError('manifest must be a JSON object')
  if (json.schemaVersion !== 2) throw new ManifestInvalidError('manifest schemaVersion must be 2')

  const declared = typeof json.mediaType === 'string' ? json.mediaType : undefined
  const header = contentType.split(';')[0]?.trim() ?? ''
  const mediaType = pickMediaType(header, declared, json)
  if (!MANIFEST_MEDIA_TYPES.includes(mediaType)) {
    throw new ManifestInvalidError(`unsupported manifest media type: ${mediaType}`)
  }
  if (declared !== undefined && declared !== mediaType) {
    throw new ManifestInvalidError(`manifest mediaType ${declared} does not match Content-Type ${mediaType}`)
  }

  const subject = json.subject === undefined ? undefined : descriptor(json.subject, 'subject')
  const annotations = stringMap(json.annotations, 'annotations')
  if (isIndexMediaType(mediaType)) {
    if (!Array.isArray(json.manifests)) throw new ManifestInvalidError('index must have a manifests array')
    return {
      mediaType,
      isIndex: true,
      blobs: [],
      manifests: json.manifests.map((m, i) => descriptor(m, `manifests[${i}]`)),
      subject,
      artifactType: optionalString(json.artifactType, 'artifactType'),
      annotations
    }
  }
  if (json.config === undefined) throw new ManifestInvalidError('image manifest must have a config')
  const config = descriptor(json.config, 'config')
  if (!Array.isArray(json.layers)) throw new ManifestInvalidError('image manifest must have a layers array')
  const layers = json.layers.map((l, i) => descriptor(l, `layers[${i}]`))
  return {
    mediaType,
    isIndex: false,
    blobs: [config, ...layers],
    manifests: [],
    subject,
    artifactType: optionalString(json.artifactType, 'artifactType') ?? config.mediaType,
    annotations
  }
}

function pickMediaType (header: string, declared: string | undefined, json: Record<string, unknown>): string {
  if (header !== '' && header !== 'application/json' && header !== 'application/octet-stream') return header
  if (declared !== undefined) return declared
  // OCI manifests may omit mediaType; infer from shape.
  if (Array.isArray(json.manifests)) return OCI_INDEX
  if (json.config !== undefined) return OCI_MANIFEST
  throw new ManifestInvalidError('cannot tell the manifest media type')
}

function descriptor (value: unknown, where: string): Descriptor {
  if (!isObject(value)) throw new ManifestInvalidError(`${where} must be a descriptor object`)
  const { mediaType, digest, size } = value
  if (typeof mediaType !== 'string' || mediaType === '') throw new ManifestInvalidError(`${where}.mediaType is missing`)
  if (typeof digest !== 'string') throw new ManifestInvalidError(`${where}.digest is missing`)
  try {
    parseDigest(digest)
  } catch {
    throw new ManifestInvalidError(`${where}.digest is invalid: ${digest}`)
  }
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw new ManifestInvalidError(`${where}.size must be a non-negative integer`)
  }
  const result: Descriptor = { mediaType, digest, size }
  const artifactType = optionalString(value.artifactType, `${where}.artifactType`)
  if (artifactType !== undefined) result.artifactType = artifactType
  const annotations = stringMap(value.annotations, `${where}.annotations`)
  if (annotations !== undefined) result.annotations = annotations
  if (isObject(value.platform)) result.platform = value.platform
  if (Array.isArray(value.urls)) result.urls = value.urls.filter((u): u is string => typeof u === 'string')
  return result
}

function optionalString (value: unknown, where: string): string | undefined {
  if (value === undefined) return undefined
  if (typeof value !== 'string') throw new ManifestInvalidError(`${where} must be a string`)
  return value
}

function stringMap (value: unknown, where: string): Record<string, string> | undefined {
  if (value === undefined) return undefined
  if (!isObject(value) || !Object.values(value).every(v => typeof v === 'string')) {
    throw new ManifestInvalidError(`${where} must map strings to strings`)
  }
  return value as Record<string, string>
}

function isObject (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

