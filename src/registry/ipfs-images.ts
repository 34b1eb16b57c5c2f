import { CID } from 'multiformats/cid'
import { fileSize, readFileChunks, readSmallFile, resolvePath, type BlockReadOptions, type BlockSource } from '../content/dag-reader.ts'
import { parseDigest } from '../oci/digest.ts'
import { BlobUnknownError, ManifestUnknownError, NameUnknownError } from '../oci/errors.ts'
import { parseManifest, type Descriptor } from '../oci/manifest.ts'
import { parseReference } from '../oci/names.ts'
import type { BlobView, ByteRange } from './blob-service.ts'
import type { RemoteBlocks } from './remote-blocks.ts'
import type { StoredManifest } from './manifest-service.ts'

export const IPFS_REPOSITORY_PREFIX = 'ipfs/'
/** The one tag an image directory has: its top manifest. */
export const IPFS_IMAGE_TAG = 'latest'

export function isIpfsRepository (repository: string): boolean {
  return repository.startsWith(IPFS_REPOSITORY_PREFIX)
}

/**
 * Serves an image directory (an OCI Image Layout on UnixFS) as the read-only repository
 * `ipfs/<cid>`: `latest` is the top manifest of its index.json, blobs come from `blobs/`.
 * It reads the DAG itself, so it serves any such directory the node holds.
 */
export class IpfsImages {
  private readonly local: Blocks
  /** In a mesh: images other nodes hold are served too, fetched as they are read. */
  private readonly remote: RemoteBlocks | undefined

  constructor (blocks: Blocks, remote?: RemoteBlocks) {
    this.local = blocks
    this.remote = remote
  }

  /** Where the blocks under `root` come from: this node, or the fleet through it. */
  private blocksOf (root: CID): Blocks {
    return this.remote?.source(root) ?? this.local
  }

  /** `signal` (the request's) stops the reads, fetches from peers included. */
  async manifest (repository: string, reference: string, signal?: AbortSignal): Promise<StoredManifest> {
    const root = await this.root(repository, signal)
    const blocks = this.blocksOf(root)
    const ref = parseReference(reference)
    const top = await this.topDescriptor(root, blocks, signal)
    const digest = ref.kind === 'tag' ? top.digest : ref.digest
    if (ref.kind === 'tag' && ref.tag !== IPFS_IMAGE_TAG) throw new ManifestUnknownError(`image ${root.toString()} has only the tag ${IPFS_IMAGE_TAG}`)
    const cid = await blobCid(blocks, root, digest, signal)
    if (cid === undefined) throw new ManifestUnknownError(`manifest ${digest} is not in image ${root.toString()}`)
    const bytes = await readSmallFile(blocks, cid, undefined, signal)
    const mediaType = digest === top.digest ? top.mediaType : parseManifest(bytes, '').mediaType
    return { digest, mediaType, bytes, imageCid: root.toString() }
  }

  async blob (repository: string, digest: string, signal?: AbortSignal): Promise<BlobView> {
    const root = await this.root(repository, signal)
    const blocks = this.blocksOf(root)
    const cid = await blobCid(blocks, root, digest, signal)
    if (cid === undefined) throw new BlobUnknownError(`blob ${digest} is not in image ${root.toString()}`)
    const size = await fileSize(blocks, cid, signal)
    const remote = this.remote
    const chunks = remote === undefined
      ? (range: ByteRange | undefined, reading: AbortSignal) => readFileChunks(this.local, cid, range?.start ?? 0, range?.end ?? size - 1, reading)
      : (range: ByteRange | undefined, reading: AbortSignal) => remote.fileChunks(cid, range?.start ?? 0, range?.end ?? size - 1, reading, async () => [root])
    return { digest, size, cid, chunks }
  }

  async tags (repository: string, signal?: AbortSignal): Promise<string[]> {
    await this.root(repository, signal)
    return [IPFS_IMAGE_TAG]
  }

  private async root (repository: string, signal?: AbortSignal): Promise<CID> {
    const text = repository.slice(IPFS_REPOSITORY_PREFIX.length)
    let cid: CID
    try {
      cid = CID.parse(text)
    } catch {
      throw new NameUnknownError(`${text} is not a CID`)
    }
    const blocks = this.blocksOf(cid)
    let indexJson: CID | undefined
    try {
      indexJson = (await blocks.has(cid, { signal })) ? await resolvePath(blocks, cid, ['index.json'], signal) : undefined
    } catch {
      signal?.throwIfAborted()
      indexJson = undefined
    }
    if (indexJson === undefined) throw new NameUnknownError(`image ${text} is not held by this node${this.remote === undefined ? '' : ' nor by its peers'}`)
    return cid
  }

  private async topDescriptor (root: CID, blocks: Blocks, signal?: AbortSignal): Promise<Descriptor> {
    const indexCid = await resolvePath(blocks, root, ['index.json'], signal)
    if (indexCid === undefined) throw new ManifestUnknownError(`image ${root.toString()} has no index.json`)
    const index = parseManifest(await readSmallFile(blocks, indexCid, undefined, signal), 'application/vnd.oci.image.index.v1+json')
    const top = index.manifests[0]
    if (top === undefined) throw new ManifestUnknownError(`image ${root.toString()} names no manifest`)
    return top
  }
}

type Blocks = BlockSource & { has(cid: CID, options?: BlockReadOptions): Promise<boolean> }

async function blobCid (blocks: BlockSource, root: CID, digest: string, signal?: AbortSignal): Promise<CID | undefined> {
  const { algorithm, hex } = parseDigest(digest)
  return await resolvePath(blocks, root, ['blobs', algorithm, hex], signal)
}
