import { CID } from 'multiformats/cid'
import { readSmallFile, resolveLink, type BlockSource } from '../content/dag-reader.ts'
import { buildImageLayout } from '../content/image-layout.ts'
import { CHUNK_SIZE, ParallelPuts, buildFileDag, putSmallFile, type BlockSink, type DagNode } from '../content/unixfs-dag.ts'
import { digestOf, parseDigest } from '../oci/digest.ts'
import { DigestInvalidError, ManifestBlobUnknownError, ManifestInvalidError, ManifestUnknownError, NameUnknownError } from '../oci/errors.ts'
import { parseManifest, type Descriptor, type ParsedManifest } from '../oci/manifest.ts'
import { OCI_INDEX } from '../oci/media-types.ts'
import { parseReference } from '../oci/names.ts'
import type { ManifestRecord, ManifestReferences, Metadata } from './metadata.ts'
import type { RemoteBlocks } from './remote-blocks.ts'
import type { SharedTags } from './shared-tags.ts'

export const MAX_MANIFEST_BYTES = 4 * 1024 * 1024

export interface StoredManifest {
  digest: string
  mediaType: string
  bytes: Buffer
  imageCid: string
}

export interface PushedManifest {
  digest: string
  imageCid: string
  subject?: string
}

/** Manifests, tags and referrers of repositories; no HTTP here. */
export class ManifestService {
  private readonly metadata: Metadata
  private readonly blocks: BlockSource & BlockSink
  /** In a mesh: tags live in the fleet's catalogue. */
  private readonly shared: SharedTags | undefined
  /** In a mesh: manifests this node lacks are fetched from peers. */
  private readonly remote: RemoteBlocks | undefined

  constructor (options: { metadata: Metadata, blocks: BlockSource & BlockSink, shared?: SharedTags, remote?: RemoteBlocks }) {
    this.metadata = options.metadata
    this.blocks = options.blocks
    this.shared = options.shared
    this.remote = options.remote
  }

  /** `pushedBy`: the signed-in user, recorded with a tag in the fleet's catalogue. */
  async put (repository: string, reference: string, body: Buffer, contentType: string, pushedBy?: string): Promise<PushedManifest> {
    const ref = parseReference(reference)
    const parsed = parseManifest(body, contentType)
    const algorithm = ref.kind === 'digest' ? parseDigest(ref.digest).algorithm : 'sha256'
    const digest = digestOf(body, algorithm)
    if (ref.kind === 'digest' && ref.digest !== digest) {
      throw new DigestInvalidError(`manifest has digest ${digest}, not ${ref.digest}`)
    }
    const tag = ref.kind === 'tag' ? ref.tag : undefined
    if (tag === undefined || this.shared === undefined) return await this.record(repository, digest, body, parsed, tag, true)
    // In a mesh the catalogue is the one authority for tags, so a tag is written there and only
    // there: the push succeeds exactly when that write does. The manifest is recorded first
    // (untagged, as a push by digest) because the tag names its image CID; a failed catalogue
    // write leaves just that, which a retry records again unchanged.
    const pushed = await this.record(repository, digest, body, parsed, undefined, true)
    await this.shared.put({ repository, tag, digest, mediaType: parsed.mediaType, imageCid: pushed.imageCid, ...(pushedBy === undefined ? {} : { pushedBy }) })
    return pushed
  }

  /** Checks what a manifest references is in the repository, builds its image directory, records it. */
  /** `whole`: every blob is held here (a push), so the image can be announced as held. */
  private async record (repository: string, digest: string, body: Buffer, parsed: ParsedManifest, tag: string | undefined, whole: boolean): Promise<PushedManifest> {
    // Everything the image needs, keyed by digest, for its layout directory.
    const content = new Map<string, DagNode>()
    await this.collectReferenced(repository, parsed, content)
    const puts = new ParallelPuts(this.blocks)
    const manifestNode = await storeBytes(body, puts)
    content.set(digest, manifestNode)
    const image = await buildImageLayout({ mediaType: parsed.mediaType, digest, size: body.length }, content, puts)
    await puts.flush()
    const record: ManifestRecord = {
      mediaType: parsed.mediaType,
      size: body.length,
      cid: manifestNode.cid.toString(),
      dagSize: manifestNode.dagSize,
      imageCid: image.cid.toString(),
      subject: parsed.subject?.digest,
      artifactType: parsed.artifactType,
      annotations: parsed.annotations,
      blobs: [...new Set(parsed.blobs.map(blob => blob.digest))],
      children: [...new Set(parsed.manifests.map(child => child.digest))]
    }
    if (!whole) record.partial = true
    const referrer: Descriptor = { mediaType: parsed.mediaType, digest, size: body.length }
    if (parsed.artifactType !== undefined) referrer.artifactType = parsed.artifactType
    if (parsed.annotations !== undefined) referrer.annotations = parsed.annotations
    await this.metadata.putManifest(repository, digest, record, tag, referrer)
    if (whole) this.remote?.announce([image.cid])
    return { digest, imageCid: record.imageCid, subject: record.subject }
  }

  /**
   * A manifest this node records (its bytes are here), else, given `imageCid`, the one in that
   * image directory on the nodes that hold it, checked against its digest; nothing is recorded.
   * `signal` stops the fetches from peers.
   */
  async read (digest: string, imageCid?: string, signal?: AbortSignal): Promise<ParsedManifest> {
    const record = await this.metadata.getManifest(digest)
    if (record !== undefined) return parseManifest(await readSmallFile(this.blocks, CID.parse(record.cid), record.size, signal), record.mediaType)
    if (imageCid === undefined || this.remote === undefined) throw new ManifestUnknownError(`manifest ${digest} is not held by this node`)
    const root = CID.parse(imageCid)
    return parseManifest(await this.fetchFromImage(digest, root, this.remote.source(root), signal), '')
  }

  /**
   * The digests a recorded manifest references: from its record, or, for one recorded before
   * records listed them, from its bytes. Nothing for a manifest without a record.
   */
  async referencesOf (digest: string): Promise<ManifestReferences> {
    const record = await this.metadata.getManifest(digest)
    if (record === undefined) return { blobs: [], children: [] }
    if (record.blobs !== undefined && record.children !== undefined) return { blobs: record.blobs, children: record.children }
    const parsed = parseManifest(await readSmallFile(this.blocks, CID.parse(record.cid), record.size), record.mediaType)
    return { blobs: parsed.blobs.map(blob => blob.digest), children: parsed.manifests.map(child => child.digest) }
  }

  /** `signal` (the request's) stops an adoption from peers that the read needs. */
  async get (repository: string, reference: string, signal?: AbortSignal): Promise<StoredManifest> {
    const digest = await this.resolve(repository, reference, signal)
    const record = await this.metadata.getManifest(digest)
    if (record === undefined) throw new ManifestUnknownError(`manifest ${digest} is not in ${repository}`)
    return { digest, mediaType: record.mediaType, bytes: await readSmallFile(this.blocks, CID.parse(record.cid), record.size, signal), imageCid: record.imageCid }
  }

  /** The digest a tag names: in a mesh the fleet's catalogue's, else this node's; undefined: no such tag. */
  async tagged (repository: string, tag: string): Promise<string | undefined> {
    if (this.shared !== undefined) return (await this.shared.get(repository, tag))?.digest
    return await this.metadata.getTag(repository, tag)
  }

  /** Deletes a tag, or a manifest (with its tags) when given a digest. */
  async delete (repository: string, reference: string): Promise<void> {
    const ref = parseReference(reference)
    if (ref.kind === 'tag') {
      const sharedTag = await this.shared?.get(repository, ref.tag)
      const deletedHere = await this.metadata.deleteTag(repository, ref.tag)
      if (sharedTag === undefined && !deletedHere) throw new ManifestUnknownError(`no tag ${ref.tag} in ${repository}`)
      if (sharedTag !== undefined) await this.shared?.delete(repository, ref.tag)
      return
    }
    const sharedTags = (await this.shared?.all() ?? []).filter(t => t.repository === repository && t.digest === ref.digest)
    const held = await this.metadata.hasManifestLink(repository, ref.digest)
    if (!held && sharedTags.length === 0) throw new ManifestUnknownError(`manifest ${ref.digest} is not in ${repository}`)
    if (held) await this.metadata.deleteManifest(repository, ref.digest)
    for (const tag of sharedTags) await this.shared?.delete(repository, tag.tag)
  }

  async tags (repository: string, last: string | undefined, limit: number): Promise<string[]> {
    if (this.shared !== undefined) {
      const tags = (await this.shared.all()).filter(t => t.repository === repository).map(t => t.tag)
      if (tags.length === 0 && !(await this.metadata.hasRepository(repository))) throw new NameUnknownError(`repository ${repository} is not known`)
      return page(tags, last, limit)
    }
    if (!(await this.metadata.hasRepository(repository))) throw new NameUnknownError(`repository ${repository} is not known`)
    return await this.metadata.listTags(repository, last, limit)
  }

  async repositories (last: string | undefined, limit: number): Promise<string[]> {
    if (this.shared === undefined) return await this.metadata.listRepositories(last, limit)
    const names = new Set((await this.shared.all()).map(t => t.repository))
    for (const name of await this.metadata.listRepositories(undefined, Number.MAX_SAFE_INTEGER)) names.add(name)
    return page([...names], last, limit)
  }

  /** The referrers index of a subject, optionally filtered by artifactType. */
  async referrers (repository: string, subject: string, artifactType: string | undefined): Promise<object> {
    parseDigest(subject)
    let manifests = await this.metadata.referrers(repository, subject)
    if (artifactType !== undefined) manifests = manifests.filter(m => m.artifactType === artifactType)
    return { schemaVersion: 2, mediaType: OCI_INDEX, manifests }
  }

  private async resolve (repository: string, reference: string, signal?: AbortSignal): Promise<string> {
    const ref = parseReference(reference)
    if (ref.kind === 'tag' && this.shared !== undefined) {
      const shared = await this.shared.get(repository, ref.tag)
      if (shared === undefined) throw new ManifestUnknownError(`no tag ${ref.tag} in ${repository}`)
      if (!(await this.metadata.hasManifestLink(repository, shared.digest))) await this.adopt(repository, shared.digest, shared.imageCid, signal)
      return shared.digest
    }
    if (ref.kind === 'tag') {
      const digest = await this.metadata.getTag(repository, ref.tag)
      if (digest === undefined) throw new ManifestUnknownError(`no tag ${ref.tag} in ${repository}`)
      return digest
    }
    if (!(await this.metadata.hasManifestLink(repository, ref.digest))) {
      // In a mesh, a manifest a tag of the fleet names is adopted from the nodes that hold it.
      const shared = await this.fleetTagOf(repository, ref.digest)
      if (shared === undefined) throw new ManifestUnknownError(`manifest ${ref.digest} is not in ${repository}`)
      await this.adopt(repository, ref.digest, shared.imageCid, signal)
    }
    return ref.digest
  }

  /** A tag of the fleet's catalogue that names `digest` in `repository`, if any (a scan: digest reads of manifests a node lacks are rare). */
  async fleetTagOf (repository: string, digest: string): Promise<{ imageCid: string } | undefined> {
    return (await this.shared?.all())?.find(tag => tag.repository === repository && tag.digest === digest)
  }

  /**
   * Brings in a manifest the fleet has and this node lacks, from its image directory on the
   * nodes that hold it: the manifests are fetched and checked against their digests, the blobs
   * are recorded as remote (fetched when read), and the image directory rebuilt here must come
   * out with the CID the catalogue named.
   */
  async adopt (repository: string, digest: string, imageCid: string, signal?: AbortSignal): Promise<void> {
    if (this.remote === undefined) throw new ManifestUnknownError(`manifest ${digest} is not held by this node`)
    const root = CID.parse(imageCid)
    const source = this.remote.source(root)
    const adopted = await this.adoptManifest(repository, digest, root, source, signal)
    if (adopted.imageCid !== imageCid) {
      throw new ManifestInvalidError(`image ${imageCid} rebuilt here as ${adopted.imageCid}: the fleet's copy does not match its name`)
    }
  }

  private async adoptManifest (repository: string, digest: string, root: CID, source: BlockSource, signal?: AbortSignal): Promise<PushedManifest> {
    const body = await this.fetchFromImage(digest, root, source, signal)
    const parsed = parseManifest(body, '')
    const roots: CID[] = []
    for (const blob of parsed.blobs) {
      const { algorithm: blobAlgorithm, hex: blobHex } = parseDigest(blob.digest)
      const blobLink = await resolveLink(source, root, ['blobs', blobAlgorithm, blobHex], signal)
      if (blobLink === undefined) throw new ManifestBlobUnknownError(`blob ${blob.digest} is not in image ${root.toString()}`)
      await this.metadata.linkRemoteBlob(repository, blob.digest, {
        cid: blobLink.cid.toString(), size: blob.size, dagSize: blobLink.dagSize, from: root.toString()
      })
      if ((await this.metadata.getBlob(blob.digest))?.remote === true) roots.push(blobLink.cid)
    }
    this.remote?.willPull(roots, root)
    for (const child of parsed.manifests) {
      if (!(await this.metadata.hasManifestLink(repository, child.digest))) await this.adoptManifest(repository, child.digest, root, source, signal)
    }
    signal?.throwIfAborted()
    return await this.record(repository, digest, body, parsed, undefined, false)
  }

  /** The bytes of a manifest in an image directory, checked against its digest. */
  private async fetchFromImage (digest: string, root: CID, source: BlockSource, signal?: AbortSignal): Promise<Buffer> {
    const { algorithm, hex } = parseDigest(digest)
    const link = await resolveLink(source, root, ['blobs', algorithm, hex], signal)
    if (link === undefined) throw new ManifestUnknownError(`manifest ${digest} is not in image ${root.toString()}`)
    const body = await readSmallFile(source, link.cid, undefined, signal)
    if (digestOf(body, algorithm) !== digest) throw new ManifestInvalidError(`image ${root.toString()} holds other bytes under ${digest}`)
    return body
  }

  /** Checks every referenced blob and manifest is in the repository, gathering their DAGs. */
  private async collectReferenced (repository: string, parsed: ParsedManifest, content: Map<string, DagNode>): Promise<void> {
    for (const blob of parsed.blobs) {
      const record = await this.metadata.getBlob(blob.digest)
      if (record === undefined || !(await this.metadata.hasBlobLink(repository, blob.digest))) {
        throw new ManifestBlobUnknownError(`blob ${blob.digest} is not in ${repository}`, { digest: blob.digest })
      }
      if (record.size !== blob.size) {
        throw new ManifestInvalidError(`blob ${blob.digest} has ${record.size} bytes, the manifest says ${blob.size}`)
      }
      content.set(blob.digest, { cid: CID.parse(record.cid), dagSize: record.dagSize, fileSize: record.size })
    }
    for (const child of parsed.manifests) {
      const record = await this.metadata.getManifest(child.digest)
      if (record === undefined || !(await this.metadata.hasManifestLink(repository, child.digest))) {
        throw new ManifestBlobUnknownError(`manifest ${child.digest} is not in ${repository}`, { digest: child.digest })
      }
      if (content.has(child.digest)) continue
      content.set(child.digest, { cid: CID.parse(record.cid), dagSize: record.dagSize, fileSize: record.size })
      const bytes = await readSmallFile(this.blocks, CID.parse(record.cid), record.size)
      await this.collectReferenced(repository, parseManifest(bytes, record.mediaType), content)
    }
  }

}

/** Stores bytes held in memory (a manifest) as a UnixFS file under the profile. */
async function storeBytes (bytes: Buffer, sink: BlockSink): Promise<DagNode> {
  const leaves: DagNode[] = []
  for (let offset = 0; offset === 0 || offset < bytes.length; offset += CHUNK_SIZE) {
    leaves.push(await putSmallFile(bytes.subarray(offset, offset + CHUNK_SIZE), sink))
  }
  return await buildFileDag(leaves, sink)
}

/** Lexical page of names after `last`, at most `limit`. */
function page (names: string[], last: string | undefined, limit: number): string[] {
  return [...new Set(names)].sort().filter(name => last === undefined || name > last).slice(0, limit)
}
