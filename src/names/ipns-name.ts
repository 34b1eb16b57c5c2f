// IPNS names as Shoal reads and writes them: the name is the signing key's identity (its peer
// id), written as a CIDv1 with the libp2p-key codec in base36 (`k51…`, what Kubo prints and what
// fits a lowercase OCI repository name); a peer id (`12D3Koo…`) or another multibase spelling of
// that CID is read too. No authority hands names out: whoever holds the key is the name's owner.
import type { PeerId, PublicKey } from '@libp2p/interface'
import { peerIdFromMultihash, peerIdFromPublicKey, peerIdFromString } from '@libp2p/peer-id'
import { multihashToIPNSRoutingKey } from 'ipns'
import { base36 } from 'multiformats/bases/base36'
import * as Digest from 'multiformats/hashes/digest'
import { looksLikeDomain } from './domain.ts'
import { InvalidNameError } from './errors.ts'

export interface IpnsName {
  /** The name as Shoal shows it: `k51…`. */
  text: string
  /** The key's identity; for Ed25519 keys it holds the public key itself. */
  peerId: PeerId
  /** `/ipns/` and the identity's multihash: the DHT key its records are stored under. */
  routingKey: Uint8Array
}

/** The IPNS name of a public key. */
export function ipnsNameOf (publicKey: PublicKey): IpnsName {
  return fromPeerId(peerIdFromPublicKey(publicKey))
}

/** The name a DHT key (`/ipns/<multihash>`) is for; throws if it is none. */
export function ipnsNameOfRoutingKey (routingKey: Uint8Array): IpnsName {
  if (Buffer.from(routingKey.subarray(0, ROUTING_PREFIX.length)).toString('latin1') !== ROUTING_PREFIX) throw new InvalidNameError('not an IPNS routing key')
  return fromPeerId(peerIdFromMultihash(Digest.decode(routingKey.subarray(ROUTING_PREFIX.length))))
}

const ROUTING_PREFIX = '/ipns/'

/** Reads `k51…`, `bafz…` or a base58 peer id; `field` names what was given in the refusal. */
export function parseIpnsName (text: string, field = 'name'): IpnsName {
  let peerId: PeerId
  try {
    peerId = peerIdFromString(text)
  } catch {
    throw new InvalidNameError(`${field} ${JSON.stringify(text)} is not an IPNS name (k51…, or a peer id 12D3Koo…)${looksLikeDomain(text) ? '' : ' nor a domain'}`)
  }
  if (peerId.type === 'url') throw new InvalidNameError(`${field} ${JSON.stringify(text)} names no key: an IPNS name is a key's identity`)
  return fromPeerId(peerId)
}

function fromPeerId (peerId: PeerId): IpnsName {
  return { text: peerId.toCID().toString(base36), peerId, routingKey: multihashToIPNSRoutingKey(peerId.toMultihash()) }
}
