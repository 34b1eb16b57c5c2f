// Where an IPNS name's record comes from: this node's own publications first (the publisher
// answers even alone), then a record a member broadcast or the DHT gave, while its TTL runs, then
// the DHT, asked for a few seconds at most. Names with no record are remembered briefly so a
// client retrying a pull does not turn every retry into a DHT query.
import type { Logger } from 'pino'
import { untilAborted } from '../until-aborted.ts'
import { NameNotResolvedError } from './errors.ts'
import type { IpnsName } from './ipns-name.ts'
import { factsOf, type RecordFacts } from './ipns-record.ts'
import type { NameRouting } from './name-routing.ts'
import type { Publications } from './publications.ts'
import type { RecordCache, RecordSource } from './record-cache.ts'

/** A DHT lookup gives up after this long: most answer in milliseconds in a private mesh. */
const LOOKUP_MS = 4_000
/** How long a name with no record is answered "none" without asking again. */
const NO_RECORD_MS = 3_000
const MAX_NO_RECORD = 4096

export interface ResolvedRecord {
  name: IpnsName
  bytes: Uint8Array
  facts: RecordFacts
  /** Where it came from: this node's publication, a member's broadcast, the DHT. */
  source: 'published here' | RecordSource
}

export interface IpnsResolverOptions {
  publications: Publications
  cache: RecordCache
  /** The mesh; none: only this node's own names resolve. */
  routing: NameRouting | undefined
  logger: Logger
  now?: () => number
}

export class IpnsResolver {
  private readonly options: IpnsResolverOptions
  private readonly now: () => number
  private readonly noRecordUntil = new Map<string, number>()
  private readonly lookups = new Map<string, Promise<void>>()

  constructor (options: IpnsResolverOptions) {
    this.options = options
    this.now = options.now ?? Date.now
  }

  /** The best valid record of `name` this node can find; NameNotResolvedError when none. */
  async record (name: IpnsName, signal: AbortSignal): Promise<ResolvedRecord> {
    const { publications, cache, routing } = this.options
    const own = publications.byName(name.text)
    if (own !== undefined) {
      const bytes = Buffer.from(own.record, 'base64')
      return { name, bytes, facts: factsOf(bytes), source: 'published here' }
    }
    const fresh = cache.get(name, { fresh: true })
    if (fresh !== undefined) return { name, ...fresh }
    if (routing === undefined) throw new NameNotResolvedError(`${name.text} has no record here: this node did not publish it, and it is in no mesh to ask`)
    if ((this.noRecordUntil.get(name.text) ?? 0) <= this.now()) {
      // A member's broadcast arriving meanwhile ends the wait (the lookup goes on for the others).
      const waited = new AbortController()
      try {
        await untilAborted(Promise.race([this.lookUp(name, routing), cache.kept(name, waited.signal)]), signal)
      } finally {
        waited.abort()
      }
    }
    // The DHT's answer, or, when it had none newer, the record kept past its TTL (still valid).
    const known = cache.get(name, { fresh: false })
    if (known !== undefined) return { name, ...known }
    throw new NameNotResolvedError(`${name.text} has no record in the mesh: no member has published it, or its record expired`)
  }

  /** One DHT lookup per name at a time, shared by the callers that want it. */
  private async lookUp (name: IpnsName, routing: NameRouting): Promise<void> {
    let lookup = this.lookups.get(name.text)
    if (lookup === undefined) {
      lookup = this.ask(name, routing).finally(() => this.lookups.delete(name.text))
      this.lookups.set(name.text, lookup)
    }
    await lookup
  }

  private async ask (name: IpnsName, routing: NameRouting): Promise<void> {
    let bytes: Uint8Array | undefined
    try {
      bytes = await routing.get(name.routingKey, AbortSignal.timeout(LOOKUP_MS))
    } catch (err) {
      this.options.logger.debug({ err, name: name.text }, 'DHT lookup of an IPNS name failed')
    }
    // Kept if it checks out and beats what is kept.
    if (bytes !== undefined) await this.options.cache.offer(name, bytes, 'dht')
    // What is kept now is the best the mesh gave (or the lookup failed): good for another TTL.
    if (this.options.cache.confirm(name)) return
    this.noRecordUntil.delete(name.text)
    this.noRecordUntil.set(name.text, this.now() + NO_RECORD_MS)
    while (this.noRecordUntil.size > MAX_NO_RECORD) {
      const oldest = this.noRecordUntil.keys().next().value
      if (oldest === undefined) break
      this.noRecordUntil.delete(oldest)
    }
  }
}
