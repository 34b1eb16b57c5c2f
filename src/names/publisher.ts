// Publishing this node's names and keeping them alive. A publish signs a record one sequence
// above the key's last, writes it down (publications.ts), broadcasts it to every member, and puts
// it into the DHT. A record expires at the end of its lifetime, so each name is signed again
// (same value, same sequence, a later end: the DHT's selector prefers it) every half lifetime,
// at most an hour apart, and at start for names published before a restart. A member that starts
// listening (joined, restarted) is sent every current record at once.
import type { Logger } from 'pino'
import type { IpnsKeys } from './ipns-keys.ts'
import { ipnsNameOf, parseIpnsName, type IpnsName } from './ipns-name.ts'
import { factsOf, signRecord } from './ipns-record.ts'
import type { NameRouting } from './name-routing.ts'
import type { Publication, Publications } from './publications.ts'
import type { RecordCache } from './record-cache.ts'

/**
 * The longest wait between two signings of a name. The DHT keeps records in memory, so a member
 * that restarts has lost the ones it held; an hourly put gives them back within the hour.
 */
const MAX_REPUBLISH_MS = 3_600_000
/** A DHT put gives up after this long (the record is already written down and broadcast). */
const PUT_MS = 10_000
/** Members that start listening within this long of each other are sent the records once. */
const REBROADCAST_DELAY_MS = 500

export interface PublishRequest {
  key: string
  /** `/ipfs/<cid>`. */
  value: string
  /** What the caller named (`repo:tag`), kept for people. */
  image: string
  lifetimeSeconds: number
  ttlSeconds: number
}

export interface Published {
  publication: Publication
  /** DHT peers that took the record. */
  peers: number
  /** The record's end of life. */
  validUntil: Date
}

export interface NamePublisherOptions {
  keys: IpnsKeys
  publications: Publications
  cache: RecordCache
  routing: NameRouting | undefined
  logger: Logger
}

export class NamePublisher {
  private readonly options: NamePublisherOptions
  private readonly timers = new Map<string, NodeJS.Timeout>()
  /** Per key, the publish or republish in progress: one at a time, so sequences never collide. */
  private readonly busy = new Map<string, Promise<unknown>>()
  private readonly stopping = new AbortController()
  private rebroadcastTimer: NodeJS.Timeout | undefined

  constructor (options: NamePublisherOptions) {
    this.options = options
  }

  /** Republishes every name published before (their records may have expired meanwhile), and keeps doing so. */
  start (): void {
    for (const publication of this.options.publications.all()) {
      void this.republish(publication.key)
    }
  }

  async stop (): Promise<void> {
    this.stopping.abort()
    for (const timer of this.timers.values()) clearTimeout(timer)
    this.timers.clear()
    clearTimeout(this.rebroadcastTimer)
    await Promise.allSettled([...this.busy.values()])
  }

  async publish (request: PublishRequest, signal: AbortSignal): Promise<Published> {
    return await this.exclusive(request.key, async () => {
      const privateKey = await this.options.keys.privateKey(request.key)
      const name = ipnsNameOf(privateKey.publicKey)
      // One above the last this node signed, and above any record of the name it has heard
      // (a key restored from a backup must not publish below what the mesh holds).
      const last = this.options.publications.get(request.key)
      const heard = this.options.cache.get(name, { fresh: false })?.facts.sequence ?? 0n
      const previous = last === undefined ? 0n : BigInt(last.sequence)
      const sequence = (previous > heard ? previous : heard) + 1n
      const now = new Date()
      const validUntil = new Date(now.getTime() + request.lifetimeSeconds * 1000)
      const record = await signRecord(privateKey, request.value, sequence, validUntil, request.ttlSeconds * 1000)
      const publication: Publication = {
        key: request.key,
        name: name.text,
        value: request.value,
        image: request.image,
        sequence: sequence.toString(),
        lifetimeSeconds: request.lifetimeSeconds,
        ttlSeconds: request.ttlSeconds,
        publishedAt: now.toISOString(),
        signedAt: now.toISOString(),
        record: Buffer.from(record).toString('base64')
      }
      // Written down first: a crash after the broadcast must not let the sequence go back.
      await this.options.publications.put(publication)
      this.schedule(publication)
      const peers = await this.spread(name, record, signal)
      return { publication, peers, validUntil }
    })
  }

  /** Sends every current record again: a member started listening and has heard none (batched). */
  rebroadcastSoon (): void {
    if (this.rebroadcastTimer !== undefined || this.stopping.signal.aborted) return
    this.rebroadcastTimer = setTimeout(() => {
      this.rebroadcastTimer = undefined
      for (const publication of this.options.publications.all()) {
        const name = parseIpnsName(publication.name)
        void this.options.routing?.broadcast(name.routingKey, Buffer.from(publication.record, 'base64'))
          .catch((err: unknown) => { this.options.logger.debug({ err, name: publication.name }, 'could not broadcast an IPNS record') })
      }
    }, REBROADCAST_DELAY_MS)
    this.rebroadcastTimer.unref()
  }

  /** Signs the key's record again with a later end of life (same value and sequence) and spreads it. */
  private async republish (key: string): Promise<void> {
    try {
      await this.exclusive(key, async () => {
        const publication = this.options.publications.get(key)
        if (publication === undefined || this.stopping.signal.aborted) return
        const privateKey = await this.options.keys.privateKey(key)
        const now = new Date()
        const record = await signRecord(privateKey, publication.value, BigInt(publication.sequence), new Date(now.getTime() + publication.lifetimeSeconds * 1000), publication.ttlSeconds * 1000)
        const renewed = { ...publication, signedAt: now.toISOString(), record: Buffer.from(record).toString('base64') }
        await this.options.publications.put(renewed)
        this.schedule(renewed)
        const peers = await this.spread(ipnsNameOf(privateKey.publicKey), record, this.stopping.signal)
        this.options.logger.debug({ key, name: publication.name, sequence: publication.sequence, validUntil: factsOf(record).validUntil, peers }, 'IPNS name republished')
      })
    } catch (err) {
      if (this.stopping.signal.aborted) return
      this.options.logger.warn({ err, key }, 'could not republish an IPNS name: trying again later')
      const publication = this.options.publications.get(key)
      if (publication !== undefined) this.schedule(publication)
    }
  }

  /** Broadcast first (members see it at once), then the DHT (for whoever asks later); answers the DHT peers that took it. */
  private async spread (name: IpnsName, record: Uint8Array, signal: AbortSignal): Promise<number> {
    const routing = this.options.routing
    if (routing === undefined) return 0
    await routing.broadcast(name.routingKey, record).catch((err: unknown) => { this.options.logger.debug({ err, name: name.text }, 'could not broadcast an IPNS record') })
    try {
      return await routing.put(name.routingKey, record, AbortSignal.any([signal, AbortSignal.timeout(PUT_MS)]))
    } catch (err) {
      // Members heard the broadcast; the next republish puts it again.
      this.options.logger.debug({ err, name: name.text }, 'DHT put of an IPNS record failed')
      return 0
    }
  }

  private schedule (publication: Publication): void {
    clearTimeout(this.timers.get(publication.key))
    if (this.stopping.signal.aborted) return
    const delay = Math.min(publication.lifetimeSeconds * 500, MAX_REPUBLISH_MS)
    const timer = setTimeout(() => { void this.republish(publication.key) }, delay)
    timer.unref()
    this.timers.set(publication.key, timer)
  }

  private async exclusive<T> (key: string, work: () => Promise<T>): Promise<T> {
    const before = this.busy.get(key) ?? Promise.resolve()
    const mine = before.catch(() => {}).then(work)
    const settled = mine.catch(() => {})
    this.busy.set(key, settled)
    try {
      return await mine
    } finally {
      if (this.busy.get(key) === settled) this.busy.delete(key)
    }
  }
}
