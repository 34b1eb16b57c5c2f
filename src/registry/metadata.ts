import { Level } from 'level'
import type { Descriptor } from '../oci/manifest.ts'

/** A blob as stored: the root of its UnixFS DAG and its size. */
export interface BlobRecord {
  cid: string
  size: number
  /** Bytes of every block of the DAG (the dag-pb Tsize of a link to it). */
  dagSize: number
  /** Known from a fleet image but not (yet) held whole: reads fetch the missing blocks. */
  remote?: boolean
  /** For a remote blob: the image CID it came with, whose holders can serve it. */
  from?: string
}

export interface ManifestRecord {
  mediaType: string
  size: number
  /** Root of the manifest bytes as a UnixFS file. */
  cid: string
  dagSize: number
  /** Root of the image's OCI Image Layout directory. */
  imageCid: string
  subject?: string
  artifactType?: string
  annotations?: Record<string, string>
  /** Adopted from the fleet: its blobs may not all be held here. */
  partial?: boolean
}

const SEP = '\x00'
const AFTER = '\x01'
/** A sublevel holding JSON values of one type. */
interface Sub<V> {
  get(key: string): Promise<V | undefined>
  put(key: string, value: V, options?: { sync?: boolean }): Promise<void>
  del(key: string, options?: { sync?: boolean }): Promise<void>
  keys(options?: RangeOptions): AsyncIterable<string>
  values(options?: RangeOptions): AsyncIterable<V>
  iterator(options?: RangeOptions): AsyncIterable<[string, V]>
}
interface RangeOptions { gt?: string, lt?: string, limit?: number }

/**
 * Registry metadata in LevelDB: blob and manifest records (global, content-addressed),
 * per-repository links, tags and referrers. Writes that acknowledge a push are synced.
 */
export class Metadata {
  private readonly db: Level<string, unknown>
  readonly blobs: Sub<BlobRecord>
  readonly manifests: Sub<ManifestRecord>
  private readonly blobLinks: Sub<number>
  private readonly manifestLinks: Sub<number>
  private readonly tags: Sub<string>
  private readonly referrerIndex: Sub<Descriptor>
  private readonly images: Sub<string>
  private readonly repositories: Sub<number>

  constructor (path: string) {
    this.db = new Level<string, unknown>(path, { valueEncoding: 'json' })
    const sub = <V>(name: string): Sub<V> => this.db.sublevel<string, V>(name, { valueEncoding: 'json' }) as unknown as Sub<V>
    this.blobs = sub('blobs')
    this.manifests = sub('manifests')
    this.blobLinks = sub('blob-links')
    this.manifestLinks = sub('manifest-links')
    this.tags = sub('tags')
    this.referrerIndex = sub('referrers')
    this.images = sub('images')
    this.repositories = sub('repositories')
  }

  async start (): Promise<void> {
    await this.db.open()
  }

  async stop (): Promise<void> {
    await this.db.close()
  }

  async getBlob (digest: string): Promise<BlobRecord | undefined> {
    return await this.blobs.get(digest)
  }

  /** Records a blob and links it into a repository in one synced batch. */
  async linkBlob (repository: string, digest: string, record: BlobRecord): Promise<void> {
    await this.db.batch([
      { type: 'put', sublevel: this.blobs, key: digest, value: record },
      { type: 'put', sublevel: this.blobLinks, key: repository + SEP + digest, value: 1 }
    ] as never, { sync: true })
  }

  /** Links a blob known from an image elsewhere; a blob held whole here stays as it is. */
  async linkRemoteBlob (repository: string, digest: string, record: BlobRecord): Promise<void> {
    const held = await this.blobs.get(digest)
    await this.linkBlob(repository, digest, held !== undefined && held.remote !== true ? held : { ...record, remote: true })
  }

  /** A remote blob now held whole. */
  async markBlobHeld (digest: string): Promise<void> {
    const record = await this.blobs.get(digest)
    if (record?.remote !== true) return
    const { remote: _remote, from: _from, ...held } = record
    await this.blobs.put(digest, held, { sync: true })
  }

  async hasBlobLink (repository: string, digest: string): Promise<boolean> {
    return (await this.blobLinks.get(repository + SEP + digest)) !== undefined
  }

  async unlinkBlob (repository: string, digest: string): Promise<void> {
    await this.blobLinks.del(repository + SEP + digest, { sync: true })
  }

  async getManifest (digest: string): Promise<ManifestRecord | undefined> {
    return await this.manifests.get(digest)
  }

  async hasManifestLink (repository: string, digest: string): Promise<boolean> {
    return (await this.manifestLinks.get(repository + SEP + digest)) !== undefined
  }

  /** Records a pushed manifest, its links, its tag and its referrer entry atomically. */
  async putManifest (repository: string, digest: string, record: ManifestRecord, tag: string | undefined, referrer: Descriptor | undefined): Promise<void> {
    const ops: unknown[] = [
      { type: 'put', sublevel: this.manifests, key: digest, value: record },
      { type: 'put', sublevel: this.manifestLinks, key: repository + SEP + digest, value: 1 },
      { type: 'put', sublevel: this.images, key: record.imageCid, value: digest },
      { type: 'put', sublevel: this.repositories, key: repository, value: 1 }
    ]
    if (tag !== undefined) ops.push({ type: 'put', sublevel: this.tags, key: repository + SEP + tag, value: digest })
    if (referrer !== undefined && record.subject !== undefined) {
      ops.push({ type: 'put', sublevel: this.referrerIndex, key: repository + SEP + record.subject + SEP + digest, value: referrer })
    }
    await this.db.batch(ops as never, { sync: true })
  }

  async getTag (repository: string, tag: string): Promise<string | undefined> {
    return await this.tags.get(repository + SEP + tag)
  }

  async deleteTag (repository: string, tag: string): Promise<boolean> {
    const key = repository + SEP + tag
    if ((await this.tags.get(key)) === undefined) return false
    await this.tags.del(key, { sync: true })
    return true
  }

  /** Unlinks a manifest from a repository with every tag on it and its referrer entry. */
  async deleteManifest (repository: string, digest: string): Promise<void> {
    const ops: unknown[] = [{ type: 'del', sublevel: this.manifestLinks, key: repository + SEP + digest }]
    for await (const [key, value] of this.tags.iterator({ gt: repository + SEP, lt: repository + AFTER })) {
      if (value === digest) ops.push({ type: 'del', sublevel: this.tags, key })
    }
    const record = await this.manifests.get(digest)
    if (record?.subject !== undefined) {
      ops.push({ type: 'del', sublevel: this.referrerIndex, key: repository + SEP + record.subject + SEP + digest })
    }
    await this.db.batch(ops as never, { sync: true })
  }

  /** Tags of a repository in lexical order, after `last`, at most `limit`. */
  async listTags (repository: string, last: string | undefined, limit: number): Promise<string[]> {
    const prefix = repository + SEP
    const tags: string[] = []
    const gt = last === undefined ? prefix : prefix + last
    for await (const key of this.tags.keys({ gt, lt: repository + AFTER, limit })) tags.push(key.slice(prefix.length))
    return tags
  }

  async hasRepository (repository: string): Promise<boolean> {
    return (await this.repositories.get(repository)) !== undefined
  }

  async listRepositories (last: string | undefined, limit: number): Promise<string[]> {
    const names: string[] = []
    for await (const key of this.repositories.keys(last === undefined ? { limit } : { gt: last, limit })) names.push(key)
    return names
  }

  async referrers (repository: string, subject: string): Promise<Descriptor[]> {
    const result: Descriptor[] = []
    const prefix = repository + SEP + subject + SEP
    for await (const value of this.referrerIndex.values({ gt: prefix, lt: repository + SEP + subject + AFTER })) result.push(value)
    return result
  }

  async manifestForImage (imageCid: string): Promise<string | undefined> {
    return await this.images.get(imageCid)
  }

  /** CIDs of the image directories the node holds whole (pushed here, not adopted). */
  async listImages (): Promise<string[]> {
    const cids: string[] = []
    for await (const [key, digest] of this.images.iterator()) {
      if ((await this.manifests.get(digest))?.partial !== true) cids.push(key)
    }
    return cids
  }

  /**
   * The CIDs of every DAG the records name: each blob's root, each manifest's own root and its
   * image directory. Garbage collection keeps the blocks these reach.
   */
  async * contentRoots (): AsyncGenerator<string> {
    for await (const record of this.manifests.values()) {
      yield record.cid
      yield record.imageCid
    }
    for await (const record of this.blobs.values()) yield record.cid
  }

  async countBlobs (): Promise<{ blobs: number, bytes: number }> {
    let blobs = 0
    let bytes = 0
    for await (const record of this.blobs.values()) {
      blobs++
      bytes += record.size
    }
    return { blobs, bytes }
  }
}
