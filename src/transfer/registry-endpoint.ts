// A repository of a registry (a Shoal node, or any OCI registry) as a source or a destination
// (`host:port/repo:tag`). Uploads resume: after a dropped connection from where the registry
// says the upload stands, and after an interruption from the journal (transfer/upload-journal.ts).
import { setTimeout as sleep } from 'node:timers/promises'
import { RegistryClient, RegistryRefusedError } from '../oci/registry-client.ts'
import type { Descriptor } from '../oci/manifest.ts'
import { counted, type ImageDestination, type ImageSource, type ManifestBytes } from './image-copy.ts'
import type { UploadJournal } from './upload-journal.ts'

/** Tries of one blob's upload before the push gives up. */
const UPLOAD_TRIES = 5
const RETRY_WAIT_MS = 500

export interface RegistryRef {
  /** http(s)://host:port */
  url: string
  repository: string
  /** A tag or a digest. */
  reference: string
  credentials?: { username: string, password: string }
}

function clientOf (ref: RegistryRef, ca?: string[]): RegistryClient {
  return new RegistryClient({ registry: new URL(ref.url).host, url: ref.url, ...(ref.credentials === undefined ? {} : { credentials: ref.credentials }) }, {
    credentialsHint: 'user:password@ in the reference, or SHOAL_USER=user:password',
    ...(ca === undefined ? {} : { ca })
  })
}

export class RegistrySource implements ImageSource {
  private readonly ref: RegistryRef
  private readonly client: RegistryClient

  constructor (ref: RegistryRef, options: { ca?: string[] } = {}) {
    this.ref = ref
    this.client = clientOf(ref, options.ca)
  }

  async top (signal?: AbortSignal): Promise<ManifestBytes> {
    return await this.client.manifest(this.ref.repository, this.ref.reference, signal)
  }

  async manifest (descriptor: Descriptor, signal?: AbortSignal): Promise<ManifestBytes> {
    return await this.client.manifest(this.ref.repository, descriptor.digest, signal)
  }

  async blob (descriptor: Descriptor, offset: number, signal?: AbortSignal): Promise<AsyncIterable<Uint8Array>> {
    return (await this.client.blob(this.ref.repository, descriptor.digest, signal, offset)).body
  }

  /** The copy is over, whether it finished or failed: a failed one may leave a response unread. */
  async close (): Promise<void> {
    await this.client.close(true)
  }
}

export class RegistryDestination implements ImageDestination {
  private readonly ref: RegistryRef
  private readonly client: RegistryClient
  private readonly journal: UploadJournal | undefined
  /** Upload sessions a refused mount opened, by digest: the upload goes on in them. */
  private readonly opened = new Map<string, string>()

  constructor (ref: RegistryRef, options: { journal?: UploadJournal, ca?: string[] } = {}) {
    this.ref = ref
    this.client = clientOf(ref, options.ca)
    this.journal = options.journal
  }

  /** Held in the repository, or elsewhere on the registry (then mounted, not sent). */
  async hasBlob (descriptor: Descriptor, signal?: AbortSignal): Promise<boolean> {
    if (await this.client.hasBlob(this.ref.repository, descriptor.digest, signal)) return true
    const session = await this.client.mountBlob(this.ref.repository, descriptor.digest, signal)
    if (session === undefined) return true
    this.opened.set(descriptor.digest, session)
    return false
  }

  async putBlob (descriptor: Descriptor, read: (offset: number) => Promise<AsyncIterable<Uint8Array>>, progress: (bytes: number) => void, signal?: AbortSignal): Promise<void> {
    const { repository } = this.ref
    const key = `${this.ref.url}/${repository}@${descriptor.digest}`
    let location: string | undefined
    let offset = 0
    // An upload an earlier run left: continue it where the registry says it stands.
    const journaled = await this.journal?.get(key)
    if (journaled !== undefined) {
      try {
        offset = await this.client.uploadOffset(repository, journaled, signal)
        location = journaled
        progress(offset)
      } catch {
        // Expired or gone: the upload starts again.
        offset = 0
      }
    }
    location ??= this.opened.get(descriptor.digest) ?? await this.client.startUpload(repository, signal)
    this.opened.delete(descriptor.digest)
    await this.journal?.set(key, location)
    let sent = offset
    for (let attempt = 1; offset < descriptor.size; attempt++) {
      try {
        const body = await read(offset)
        const answer = await this.client.appendUpload(repository, location, counted(body, bytes => { sent += bytes; progress(bytes) }), offset, descriptor.size - offset, signal)
        location = answer.location
        offset = answer.offset
      } catch (err) {
        if (signal?.aborted === true || attempt >= UPLOAD_TRIES) throw err
        await sleep(RETRY_WAIT_MS * attempt, undefined, { signal })
        // The connection dropped, or an earlier run's request still feeds the upload: the
        // registry kept what it took, and says how much.
        try {
          offset = await this.client.uploadOffset(repository, location, signal)
        } catch {
          if (err instanceof RegistryRefusedError && location !== journaled) throw err
          // The session is gone (expired, or taken by another run): a fresh one.
          location = await this.client.startUpload(repository, signal)
          await this.journal?.set(key, location)
          offset = 0
        }
      }
      // What the progress counted past where the upload stands is sent again.
      if (sent !== offset) progress(offset - sent)
      sent = offset
    }
    await this.client.finishUpload(repository, location, descriptor.digest, signal)
    await this.journal?.set(key, undefined)
  }

  /** One upload, streamed without a length; its digest is named when the bytes have passed (no resume: a rewrite is not the same twice). */
  async putTransformed (body: AsyncIterable<Uint8Array>, described: () => Promise<Descriptor>, signal?: AbortSignal): Promise<void> {
    const { repository } = this.ref
    const { location } = await this.client.appendUpload(repository, await this.client.startUpload(repository, signal), body, 0, undefined, signal)
    await this.client.finishUpload(repository, location, (await described()).digest, signal)
  }

  async putManifest (manifest: ManifestBytes, top: boolean, signal?: AbortSignal): Promise<void> {
    await this.client.putManifest(this.ref.repository, top ? this.ref.reference : manifest.digest, manifest.bytes, manifest.mediaType, signal)
  }

  async commit (): Promise<void> {
    await this.client.close()
  }

  async discard (): Promise<void> {
    // Unfinished uploads stay for the next run (the journal has them); the registry expires them.
    await this.client.close(true)
  }
}
