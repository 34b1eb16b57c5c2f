import { Level } from 'level'
import { BlobInUseError, ManifestBlobUnknownError } from '../oci/errors.ts'
import type { Descriptor } from '../oci/manifest.ts'
import type { TagChange } from './shared-tags.ts'

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
  /** Digests of the blobs it references (config, layers); absent in records written before. */
  blobs?: string[]
  /** Digests of the manifests an index references; absent in records written before. */
  children?: string[]
}

/** What a manifest references, as dropping an image needs to know it. */
export interface ManifestReferences {
  blobs: string[]
  children: string[]
}

/** An image this node's reconciler placed here, and why. */
export interface Placement {
  repository: string
  digest: string
  imageCid: string
  /** Ids of the strategies that place it on this node. */
  strategies: string[]
  /** held here before any strategy placed it (pushed or pulled by a client): never dropped by the reconciler */
  kept: boolean
  placedAt: string
}

/** The reconciler's record of what it placed here, keyed by image CID; survives restarts. */
export interface PlacementLog {
  all(): Promise<Placement[]>
  put(placement: Placement): Promise<void>
  delete(imageCid: string): Promise<void>
}

/** An image to drop from a repository: its manifest, the manifests below it, every blob of them. */
export interface ImageRecords {
  digest: string
  /** Manifests an index reaches (children, and theirs); each is dropped unless still used. */
  descendants: string[]
  blobs: string[]
}

/** The global records a drop deleted (those still linked in another repository stay). */
export interface DroppedRecords {
  manifests: string[]
  blobs: string[]
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
 * The lock key of a repository's tags: a tag write (push, delete, drop) holds it, so a tag read
 * under it is still the tag when the write lands. Digests start with an algorithm name, never '#'.
 */
function tagsLock (repository: string): string {
  return `#tags${SEP}${repository}`
}

/**
 * Serializes work on the same keys (digests, and tagsLock). Several keys are taken in sorted order, and no
 * holder asks for more keys while it holds some, so two holders can never wait on each other.
 */
class KeyedMutex {
  private readonly tails = new Map<string, Promise<void>>()

  async run<T> (keys: Iterable<string>, work: () => Promise<T>): Promise<T> {
    const releases: Array<() => void> = []
    try {
      for (const key of [...new Set(keys)].sort()) releases.push(await this.acquire(key))
      return await work()
    } finally {
      for (const release of releases.reverse()) release()
    }
  }

  private async acquire (key: string): Promise<() => void> {
    const previous = this.tails.get(key) ?? Promise.resolve()
    const { promise: released, resolve: release } = Promise.withResolvers<void>()
    const tail = previous.then(async () => await released)
    this.tails.set(key, tail)
    await previous
    return () => {
      release()
      if (this.tails.get(key) === tail) this.tails.delete(key)
    }
  }
}

/**
 * Registry metadata in LevelDB: blob and manifest records (global, content-addressed),
 * per-repository links, tags and referrers. Writes that acknowledge a push are synced.
 *
 * A dropped record lets garbage collection free its blocks, so whatever reads a record and
 * writes it (or a link to it) back runs under that digest's lock, as does the drop: a mount or a
 * pull can then never bring back a record a drop removed.
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
  private readonly placementRecords: Sub<Placement>
  private readonly locks = new KeyedMutex()
  /** What the replication reconciler placed on this node. */
  readonly placements: PlacementLog

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
    this.placementRecords = sub('placements')
    const records = this.placementRecords
    this.placements = {
      async all () {
        const placements: Placement[] = []
        for await (const placement of records.values()) placements.push(placement)
        return placements
      },
      async put (placement) { await records.put(placement.imageCid, placement, { sync: true }) },
      async delete (imageCid) { await records.del(imageCid, { sync: true }) }
    }
  }

  async start (): Promise<void> {
    await this.db.open()
  }

  /**
   * Calls `listener` for every tag written or deleted here, once the write is durable; returns
   * the function that stops it. Read from the database's write events: tags change in several
   * batches (a push, a tag or manifest delete, a drop), and none can be missed this way.
   */
  onTagChange (listener: (change: TagChange) => void): () => void {
    // Every write reaches the root database as a batch of fully qualified keys: !tags!<repo>\0<tag>.
    const prefix = '!tags!'
    const onWrite = (operations: Array<{ type: 'put' | 'del', key: unknown }>): void => {
      for (const operation of operations) {
        if (typeof operation.key !== 'string' || !operation.key.startsWith(prefix)) continue
        const key = operation.key.slice(prefix.length)
        const at = key.indexOf(SEP)
        listener({ repository: key.slice(0, at), tag: key.slice(at + 1), deleted: operation.type === 'del' })
      }
    }
    this.db.on('write', onWrite)
    return () => { this.db.off('write', onWrite) }
  }

  async stop (): Promise<void> {
    await this.db.close()
  }

  async getBlob (digest: string): Promise<BlobRecord | undefined> {
    return await this.blobs.get(digest)
  }

  /**
   * Records a blob and links it into a repository in one synced batch. For a blob just written
   * (an upload): its blocks are new, so the record may replace whatever was there.
   */
  async linkBlob (repository: string, digest: string, record: BlobRecord): Promise<void> {
    await this.locks.run([digest], async () => { await this.writeBlobLink(repository, digest, record) })
  }

  /** Links a blob known from an image elsewhere; a blob held whole here stays as it is. */
  async linkRemoteBlob (repository: string, digest: string, record: BlobRecord): Promise<void> {
    await this.locks.run([digest], async () => {
      const held = await this.blobs.get(digest)
      await this.writeBlobLink(repository, digest, held !== undefined && held.remote !== true ? held : { ...record, remote: true })
    })
  }

  /**
   * Links a blob this node has a record of into another repository; false when it has none.
   * Only the link is written: writing back the record read could revive one a drop just removed.
   */
  async mountBlob (repository: string, digest: string): Promise<boolean> {
    return await this.locks.run([digest], async () => {
      if ((await this.blobs.get(digest)) === undefined) return false
      await this.blobLinks.put(repository + SEP + digest, 1, { sync: true })
      return true
    })
  }

  private async writeBlobLink (repository: string, digest: string, record: BlobRecord): Promise<void> {
    await this.db.batch([
      { type: 'put', sublevel: this.blobs, key: digest, value: record },
      { type: 'put', sublevel: this.blobLinks, key: repository + SEP + digest, value: 1 }
    ] as never, { sync: true })
  }

  /** A remote blob now held whole (nothing, if its record was dropped meanwhile). */
  async markBlobHeld (digest: string): Promise<void> {
    await this.locks.run([digest], async () => {
      const record = await this.blobs.get(digest)
      if (record?.remote !== true) return
      const { remote: _remote, from: _from, ...held } = record
      await this.blobs.put(digest, held, { sync: true })
    })
  }

  /**
   * The adopted manifests that the blob `digest`, now held, completes: each whose blobs are all
   * held here is marked whole, and so is an index whose children all are. Answers the CIDs of
   * the images that became whole: this node holds them now, as much as the node they were pushed
   * to, and says so in its presence (their holders are how the fleet finds their blobs).
   */
  async completeAdopted (digest: string): Promise<string[]> {
    const partial = new Map<string, ManifestRecord>()
    for await (const [key, record] of this.manifests.iterator()) if (record.partial === true) partial.set(key, record)
    const completed: string[] = []
    for (const [key, record] of partial) {
      if (record.blobs?.includes(digest) !== true || (record.children?.length ?? 0) > 0) continue
      if (await this.markManifestWhole(key, record.blobs)) completed.push(key)
    }
    for (const [key, record] of partial) {
      const children = record.children ?? []
      if (children.length === 0 || !children.some(child => completed.includes(child))) continue
      const whole = await Promise.all(children.map(async child => (await this.manifests.get(child))?.partial !== true))
      if (whole.every(Boolean) && await this.markManifestWhole(key, record.blobs ?? [])) completed.push(key)
    }
    const images: string[] = []
    for (const key of completed) {
      const imageCid = partial.get(key)?.imageCid
      if (imageCid !== undefined && await this.images.get(imageCid) === key) images.push(imageCid)
    }
    return images
  }

  async hasBlobLink (repository: string, digest: string): Promise<boolean> {
    return (await this.blobLinks.get(repository + SEP + digest)) !== undefined
  }

  /**
   * Unlinks a blob from a repository, unless a manifest linked there references it (BlobInUseError):
   * the image would stay tagged but could no longer be pulled. Under the blob's lock, which a
   * manifest push naming it also takes, so neither can slip past the other.
   */
  async unlinkBlob (repository: string, digest: string): Promise<void> {
    await this.locks.run([digest], async () => {
      const user = await this.manifestReferencing(repository, digest)
      if (user !== undefined) {
        throw new BlobInUseError(`blob ${digest} is referenced by manifest ${user} of ${repository}: delete the manifest first`, { manifest: user })
      }
      await this.blobLinks.del(repository + SEP + digest, { sync: true })
    })
  }

  /** A manifest linked in the repository whose record lists the blob (records from before `blobs` was kept are not known). */
  private async manifestReferencing (repository: string, blob: string): Promise<string | undefined> {
    const prefix = repository + SEP
    for await (const key of this.manifestLinks.keys({ gt: prefix, lt: repository + AFTER })) {
      const digest = key.slice(prefix.length)
      if ((await this.manifests.get(digest))?.blobs?.includes(blob) === true) return digest
    }
    return undefined
  }

  async getManifest (digest: string): Promise<ManifestRecord | undefined> {
    return await this.manifests.get(digest)
  }

  async hasManifestLink (repository: string, digest: string): Promise<boolean> {
    return (await this.manifestLinks.get(repository + SEP + digest)) !== undefined
  }

  /**
   * Records a pushed manifest, its links, its tag and its referrer entry atomically. What the
   * record says it references is checked again under the locks of those digests, so a manifest
   * is never recorded over blobs or manifests a drop removed since the caller looked. A record
   * that was whole stays whole when the same manifest is adopted into another repository.
   */
  async putManifest (repository: string, digest: string, record: ManifestRecord, tag: string | undefined, referrer: Descriptor | undefined): Promise<void> {
    const blobs = record.blobs ?? []
    const children = record.children ?? []
    const locks = [digest, ...blobs, ...children]
    if (tag !== undefined) locks.push(tagsLock(repository))
    await this.locks.run(locks, async () => {
      for (const blob of blobs) {
        if ((await this.blobs.get(blob)) === undefined || !(await this.hasBlobLink(repository, blob))) {
          throw new ManifestBlobUnknownError(`blob ${blob} is not in ${repository}`, { digest: blob })
        }
      }
      for (const child of children) {
        if ((await this.manifests.get(child)) === undefined || !(await this.hasManifestLink(repository, child))) {
          throw new ManifestBlobUnknownError(`manifest ${child} is not in ${repository}`, { digest: child })
        }
      }
      let value = record
      if (record.partial === true) {
        const existing = await this.manifests.get(digest)
        if (existing !== undefined && existing.partial !== true) {
          const { partial: _partial, ...whole } = record
          value = whole
        }
      }
      const ops: unknown[] = [
        { type: 'put', sublevel: this.manifests, key: digest, value },
        { type: 'put', sublevel: this.manifestLinks, key: repository + SEP + digest, value: 1 },
        { type: 'put', sublevel: this.images, key: record.imageCid, value: digest },
        { type: 'put', sublevel: this.repositories, key: repository, value: 1 }
      ]
      if (tag !== undefined) ops.push({ type: 'put', sublevel: this.tags, key: repository + SEP + tag, value: digest })
      if (referrer !== undefined && record.subject !== undefined) {
        ops.push({ type: 'put', sublevel: this.referrerIndex, key: repository + SEP + record.subject + SEP + digest, value: referrer })
      }
      await this.db.batch(ops as never, { sync: true })
    })
  }

  /**
   * Marks an adopted manifest whole once every blob it references (`blobs`) is held here; false
   * (and nothing written) when its record is gone or one of them is not held.
   */
  async markManifestWhole (digest: string, blobs: string[]): Promise<boolean> {
    return await this.locks.run([digest, ...blobs], async () => {
      const record = await this.manifests.get(digest)
      if (record === undefined) return false
      for (const blob of blobs) {
        const held = await this.blobs.get(blob)
        if (held === undefined || held.remote === true) return false
      }
      if (record.partial !== true) return true
      const { partial: _partial, ...whole } = record
      await this.manifests.put(digest, whole, { sync: true })
      return true
    })
  }

  /**
   * Lets go of an image in a repository, in one synced batch under the locks of every digest it
   * names. Its manifest and descendants are unlinked, except those another manifest linked in
   * the repository still references (and descendants tagged there); tags on what is unlinked go,
   * and so do the links of its blobs that no manifest left in the repository references. A
   * record with no link left in any repository is deleted (with the image entry of a manifest),
   * so garbage collection can free its blocks. `referencesOf` reads what a manifest references.
   */
  async dropImage (repository: string, image: ImageRecords, referencesOf: (digest: string) => Promise<ManifestReferences>): Promise<DroppedRecords> {
    const candidates = new Set([image.digest, ...image.descendants])
    return await this.locks.run([...candidates, ...image.blobs, tagsLock(repository)], async () => {
      const prefix = repository + SEP
      const linked = new Set<string>()
      for await (const key of this.manifestLinks.keys({ gt: prefix, lt: repository + AFTER })) linked.add(key.slice(prefix.length))
      const tagged = new Map<string, string>()
      for await (const [key, digest] of this.tags.iterator({ gt: prefix, lt: repository + AFTER })) tagged.set(key, digest)
      const taggedDigests = new Set(tagged.values())

      const references = new Map<string, ManifestReferences>()
      const referencesOfLinked = async (digest: string): Promise<ManifestReferences> => {
        let known = references.get(digest)
        if (known === undefined) references.set(digest, known = await referencesOf(digest))
        return known
      }
      // What stays can only grow as more candidates turn out to be used, so this settles.
      const dropped = new Set([...candidates].filter(digest => digest === image.digest || linked.has(digest)))
      for (let changed = true; changed;) {
        changed = false
        const usedByKept = new Set<string>()
        for (const digest of linked) if (!dropped.has(digest)) for (const child of (await referencesOfLinked(digest)).children) usedByKept.add(child)
        for (const digest of dropped) {
          if (usedByKept.has(digest) || (digest !== image.digest && taggedDigests.has(digest))) {
            dropped.delete(digest)
            changed = true
          }
        }
      }
      const keptBlobs = new Set<string>()
      for (const digest of linked) if (!dropped.has(digest)) for (const blob of (await referencesOfLinked(digest)).blobs) keptBlobs.add(blob)
      const unlinkedBlobs = new Set<string>()
      for (const blob of image.blobs) if (!keptBlobs.has(blob) && await this.hasBlobLink(repository, blob)) unlinkedBlobs.add(blob)

      const ops: unknown[] = []
      for (const [key, digest] of tagged) if (digest === image.digest || dropped.has(digest)) ops.push({ type: 'del', sublevel: this.tags, key })
      const records = new Map<string, ManifestRecord>()
      for (const digest of dropped) {
        const record = await this.manifests.get(digest)
        if (record !== undefined) records.set(digest, record)
        if (!linked.has(digest)) continue
        ops.push({ type: 'del', sublevel: this.manifestLinks, key: prefix + digest })
        if (record?.subject !== undefined) ops.push({ type: 'del', sublevel: this.referrerIndex, key: prefix + record.subject + SEP + digest })
      }
      for (const blob of unlinkedBlobs) ops.push({ type: 'del', sublevel: this.blobLinks, key: prefix + blob })
      if ([...linked].every(digest => dropped.has(digest))) ops.push({ type: 'del', sublevel: this.repositories, key: repository })

      // Records still linked from another repository stay; the rest are deleted.
      const deleted: DroppedRecords = { manifests: [], blobs: [] }
      const elsewhere = async (links: Sub<number>, digests: Set<string>): Promise<Set<string>> => {
        const found = new Set<string>()
        if (digests.size === 0) return found
        for await (const key of links.keys()) {
          const at = key.indexOf(SEP)
          if (key.slice(0, at) !== repository && digests.has(key.slice(at + 1))) found.add(key.slice(at + 1))
        }
        return found
      }
      const manifestsElsewhere = await elsewhere(this.manifestLinks, dropped)
      for (const [digest, record] of records) {
        if (manifestsElsewhere.has(digest)) continue
        ops.push({ type: 'del', sublevel: this.manifests, key: digest })
        if ((await this.images.get(record.imageCid)) === digest) ops.push({ type: 'del', sublevel: this.images, key: record.imageCid })
        deleted.manifests.push(digest)
      }
      const blobsElsewhere = await elsewhere(this.blobLinks, unlinkedBlobs)
      for (const blob of unlinkedBlobs) {
        if (blobsElsewhere.has(blob)) continue
        ops.push({ type: 'del', sublevel: this.blobs, key: blob })
        deleted.blobs.push(blob)
      }
      await this.db.batch(ops as never, { sync: true })
      return deleted
    })
  }

  async getTag (repository: string, tag: string): Promise<string | undefined> {
    return await this.tags.get(repository + SEP + tag)
  }

  /** Deletes a tag; false when there was none. Under the repository's tag lock: the tag it finds is the one it deletes. */
  async deleteTag (repository: string, tag: string): Promise<boolean> {
    return await this.locks.run([tagsLock(repository)], async () => {
      const key = repository + SEP + tag
      if ((await this.tags.get(key)) === undefined) return false
      await this.tags.del(key, { sync: true })
      return true
    })
  }

  /**
   * Unlinks a manifest from a repository with every tag on it and its referrer entry, under the
   * manifest's lock and the repository's tag lock (a push of it or of a tag waits, or goes first).
   */
  async deleteManifest (repository: string, digest: string): Promise<void> {
    await this.locks.run([digest, tagsLock(repository)], async () => {
      const ops: unknown[] = [{ type: 'del', sublevel: this.manifestLinks, key: repository + SEP + digest }]
      for await (const [key, value] of this.tags.iterator({ gt: repository + SEP, lt: repository + AFTER })) {
        if (value === digest) ops.push({ type: 'del', sublevel: this.tags, key })
      }
      const record = await this.manifests.get(digest)
      if (record?.subject !== undefined) {
        ops.push({ type: 'del', sublevel: this.referrerIndex, key: repository + SEP + record.subject + SEP + digest })
      }
      await this.db.batch(ops as never, { sync: true })
    })
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

  /**
   * CIDs of the image directories whose manifests reference the blob (manifest records written
   * before they listed their blobs are not found). Reads every manifest record: for the rare
   * read that finds a blob's blocks missing here, not for every read.
   */
  async imagesWithBlob (digest: string): Promise<string[]> {
    const cids = new Set<string>()
    for await (const record of this.manifests.values()) {
      if (record.blobs?.includes(digest) === true) cids.add(record.imageCid)
    }
    return [...cids]
  }

  /**
   * CIDs of the image directories the node holds whole: pushed here, or adopted and then made
   * whole (placed by a strategy, or every blob read: completeAdopted).
   */
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
