// DNSLink: a domain names content through the TXT record `_dnslink.<domain>` =
// `dnslink=/ipfs/<cid>` or `dnslink=/ipns/<name>`. Asked of the configured DNS servers
// (`dnsServers`; none: the system's), the answers kept for a while, bounded.
import { Resolver } from 'node:dns/promises'
import { untilAborted } from '../until-aborted.ts'
import { DnsUnavailableError, NameNotResolvedError } from './errors.ts'

/**
 * How long an answer is kept. Node's resolver does not report a TXT record's TTL (only A and
 * AAAA carry it), so a fixed time stands in for it: short enough that a changed DNSLink is seen
 * within a minute, long enough that a pull's hundred requests ask DNS once.
 */
const ANSWER_MS = 60_000
/** A domain with no DNSLink is asked again sooner: it may be being set up. */
const NO_ANSWER_MS = 5_000
const MAX_DOMAINS = 1024
/** Per query: c-ares tries each server `TRIES` times, waiting `TIMEOUT_MS` (then doubling) for each. */
const TIMEOUT_MS = 1_000
const TRIES = 2
/** Everything a lookup may take: a missing or silent server must not hold a pull for long. */
const LOOKUP_MS = 5_000

// The errors c-ares reports for a domain that exists with no such record, or does not exist.
const NOT_FOUND = new Set(['ENODATA', 'ENOTFOUND', 'NOTFOUND', 'ENONAME'])

interface Answer { value: string | undefined, expiresAt: number }

export interface DnslinkOptions {
  /** `host` or `host:port` (`[v6]:port`); none: the system's resolvers. */
  servers: readonly string[]
  now?: () => number
  /** Asks DNS for the TXT records of `name` (a test's stand-in; default: node:dns). */
  resolveTxt?: (name: string, signal: AbortSignal) => Promise<string[][]>
}

export class DnslinkResolver {
  private readonly answers = new Map<string, Answer>()
  private readonly inFlight = new Map<string, Promise<string | undefined>>()
  private readonly now: () => number
  private readonly resolveTxt: (name: string, signal: AbortSignal) => Promise<string[][]>

  constructor (options: DnslinkOptions) {
    this.now = options.now ?? Date.now
    this.resolveTxt = options.resolveTxt ?? nodeResolveTxt(options.servers)
  }

  /** The DNSLink value of `domain` (`/ipfs/…` or `/ipns/…`); throws NameNotResolvedError when it has none. */
  async resolve (domain: string, signal: AbortSignal): Promise<string> {
    const key = domain.toLowerCase()
    const known = this.answers.get(key)
    let value: string | undefined
    if (known !== undefined && known.expiresAt > this.now()) {
      value = known.value
    } else {
      // Clients asking at once (a pull's requests) share one query.
      let asking = this.inFlight.get(key)
      if (asking === undefined) {
        asking = this.lookUp(key).finally(() => this.inFlight.delete(key))
        this.inFlight.set(key, asking)
      }
      value = await untilAborted(asking, signal)
    }
    if (value === undefined) throw new NameNotResolvedError(`${domain} has no DNSLink: no TXT record "dnslink=/ipfs/…" or "dnslink=/ipns/…" at _dnslink.${key}`)
    return value
  }

  private async lookUp (domain: string): Promise<string | undefined> {
    let records: string[][]
    try {
      records = await this.resolveTxt(`_dnslink.${domain}`, AbortSignal.timeout(LOOKUP_MS))
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code === undefined || !NOT_FOUND.has(code)) throw new DnsUnavailableError(`DNS did not answer for _dnslink.${domain} (${code ?? (err as Error).message}): try again`)
      records = []
    }
    // A TXT record may come in several strings; DNSLink takes them joined. Of several DNSLinks
    // the lexically first wins, as the DNSLink specification says, so every node picks the same.
    const values = records.map(parts => parts.join(''))
      .filter(text => text.startsWith('dnslink='))
      .map(text => text.slice('dnslink='.length).trim())
      .filter(value => /^\/(?:ipfs|ipns)\/[^/]+/.test(value))
      .sort()
    const value = values[0]
    this.remember(domain, { value, expiresAt: this.now() + (value === undefined ? NO_ANSWER_MS : ANSWER_MS) })
    return value
  }

  private remember (domain: string, answer: Answer): void {
    this.answers.delete(domain)
    this.answers.set(domain, answer)
    while (this.answers.size > MAX_DOMAINS) {
      const oldest = this.answers.keys().next().value
      if (oldest === undefined) break
      this.answers.delete(oldest)
    }
  }
}

/** node:dns with the configured servers; one resolver per query, so an abort cancels that query alone. */
function nodeResolveTxt (servers: readonly string[]): (name: string, signal: AbortSignal) => Promise<string[][]> {
  return async (name, signal) => {
    const resolver = new Resolver({ timeout: TIMEOUT_MS, tries: TRIES })
    if (servers.length > 0) resolver.setServers([...servers])
    signal.throwIfAborted()
    const cancel = (): void => { resolver.cancel() }
    signal.addEventListener('abort', cancel, { once: true })
    try {
      return await resolver.resolveTxt(name)
    } catch (err) {
      // A cancelled query says ECANCELLED: report why it was cancelled instead.
      if (signal.aborted) throw Object.assign(new Error(`no answer within ${LOOKUP_MS} ms`), { code: 'ETIMEOUT' })
      throw err
    } finally {
      signal.removeEventListener('abort', cancel)
    }
  }
}
