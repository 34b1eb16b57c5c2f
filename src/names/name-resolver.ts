// From a name to content: `/ipns/<name>` through its record, `/ipns/<domain>` and
// `dnslink/<domain>` through DNSLink, hop after hop (a record may point at another name, a
// DNSLink at an IPNS name) until an `/ipfs/<cid>` path, a few hops at most.
import { CID } from 'multiformats/cid'
import { InvalidNameError, NameNotResolvedError } from './errors.ts'
import type { DnslinkResolver } from './dnslink.ts'
import { looksLikeDomain } from './domain.ts'
import { parseIpnsName } from './ipns-name.ts'
import type { IpnsResolver } from './ipns-resolver.ts'

/** Hops after the first: a chain longer than this is a loop or a mistake. */
const MAX_HOPS = 4

export interface ContentPath {
  cid: CID
  /** The path below the CID, segment by segment (none: the CID itself). */
  segments: string[]
  /** Every path on the way, the name first, `/ipfs/<cid>…` last. */
  chain: string[]
}

export class NameResolver {
  private readonly ipns: IpnsResolver
  private readonly dnslink: DnslinkResolver

  constructor (options: { ipns: IpnsResolver, dnslink: DnslinkResolver }) {
    this.ipns = options.ipns
    this.dnslink = options.dnslink
  }

  /**
   * `/ipns/<name or domain>[/path]` or `/dnslink/<domain>[/path]` (a DNSLink only) to the content
   * it names now. `field` names the name in a refusal.
   */
  async resolve (path: string, signal: AbortSignal, field = 'name'): Promise<ContentPath> {
    const chain = [path]
    let current = split(path)
    if (current.namespace === 'dnslink') {
      if (!looksLikeDomain(current.name)) throw new InvalidNameError(`${field} ${JSON.stringify(current.name)} is not a domain name`)
      current = this.follow(await this.dnslink.resolve(current.name, signal), current.rest, chain)
    }
    for (let hop = 0; hop <= MAX_HOPS; hop++) {
      if (current.namespace === 'ipfs') {
        let cid: CID
        try {
          cid = CID.parse(current.name)
        } catch {
          throw new NameNotResolvedError(`${chain[0] ?? path} points at ${chain.at(-1) ?? path}, and ${JSON.stringify(current.name)} is not a CID`)
        }
        return { cid, segments: current.rest, chain }
      }
      if (current.namespace !== 'ipns') throw new NameNotResolvedError(`${chain[0] ?? path} points at ${chain.at(-1) ?? path}: neither /ipfs/ nor /ipns/`)
      current = this.follow(await this.valueOf(current.name, signal, hop === 0 ? field : undefined, chain), current.rest, chain)
    }
    throw new NameNotResolvedError(`${chain[0] ?? path} takes more than ${MAX_HOPS} hops (${chain.join(' -> ')}): a loop?`)
  }

  /** What an `/ipns/` name points at: a domain's DNSLink or a key's record. `field`: the client gave the name (else a record or DNSLink did). */
  private async valueOf (name: string, signal: AbortSignal, field: string | undefined, chain: string[]): Promise<string> {
    if (looksLikeDomain(name)) return await this.dnslink.resolve(name, signal)
    let ipnsName
    try {
      ipnsName = parseIpnsName(name, field)
    } catch (err) {
      if (field !== undefined) throw err
      throw new NameNotResolvedError(`${chain[0] ?? name} points at ${chain.at(-1) ?? name}, and ${JSON.stringify(name)} is neither an IPNS name nor a domain`)
    }
    return (await this.ipns.record(ipnsName, signal)).facts.value
  }

  /** The next hop: `value` with the path left over from this one below it. */
  private follow (value: string, rest: string[], chain: string[]): Hop {
    const next = split(value)
    const hop = { ...next, rest: [...next.rest, ...rest] }
    chain.push(`/${hop.namespace}/${[hop.name, ...hop.rest].join('/')}`)
    return hop
  }
}

interface Hop { namespace: string, name: string, rest: string[] }

function split (path: string): Hop {
  const [namespace = '', name = '', ...rest] = path.split('/').filter(part => part !== '')
  return { namespace, name, rest }
}
