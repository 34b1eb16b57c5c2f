// A node proves to a peer's /ipfs/ that a block request is its own (issue 12: with authentication
// on, blocks go to fleet members and signed-in users only): the request's method, target (the
// host it is sent to, the path and the query) and time, signed with the node's libp2p key, which
// its peer id names. A captured signature opens only that one request on that one node, for a
// minute, and the serving node answers signed requests with raw blocks only.
import { KeyObject, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto'
import type { PrivateKey, PublicKey } from '@libp2p/interface'

export const PEER_SIGNATURE_HEADER = 'shoal-peer-signature'
export const PEER_TIME_HEADER = 'shoal-peer-time'
/** Clocks of a fleet may differ this much; a captured signature is good for the same block only, this long. */
const MAX_SKEW_MS = 60_000

function signedText (method: string, target: string, time: string): Uint8Array {
  return new TextEncoder().encode(`shoal block request\n${method}\n${target}\n${time}`)
}

/**
 * Every block request is signed and checked, a thousand per GiB: libp2p's Ed25519 keys build an
 * OpenSSL key from JWK at every sign and verify, which cost a fetching node 5 % of its CPU in a
 * fleet pull (bench/fleet.ts, --cpu-prof). Shoal keeps one key object per key instead; the
 * signatures are the same bytes (Ed25519 is deterministic).
 */
const signingKeys = new WeakMap<PrivateKey, KeyObject>()
/** Peers' verifying keys by peer id; a fleet's members are few, so the oldest go past this many. */
const verifyingKeys = new Map<string, KeyObject>()
const MAX_VERIFYING_KEYS = 1024

function signingKeyOf (key: PrivateKey): KeyObject | undefined {
  if (key.type !== 'Ed25519') return undefined
  let object = signingKeys.get(key)
  if (object === undefined) {
    // libp2p's raw Ed25519 private key is the 32-byte seed followed by the 32-byte public key.
    const raw = Buffer.from(key.raw)
    object = createPrivateKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', d: raw.subarray(0, 32).toString('base64url'), x: raw.subarray(32, 64).toString('base64url') } })
    signingKeys.set(key, object)
  }
  return object
}

/** The headers that prove a request for `target` (`host:port/path?query`) comes from the holder of `key`. */
export async function signRequest (key: PrivateKey, method: string, target: string, now = Date.now()): Promise<Record<string, string>> {
  const time = String(now)
  const text = signedText(method, target, time)
  const keyObject = signingKeyOf(key)
  const signature = keyObject === undefined ? await key.sign(text) : sign(null, text, keyObject)
  return { [PEER_TIME_HEADER]: time, [PEER_SIGNATURE_HEADER]: Buffer.from(signature).toString('base64url') }
}

/** A peer's verifying key: an OpenSSL key object for Ed25519 (kept), else libp2p's own key. */
async function verifyingKeyOf (peer: string): Promise<KeyObject | PublicKey | undefined> {
  const known = verifyingKeys.get(peer)
  if (known !== undefined) return known
  // Loaded here: a node outside a mesh carries none of libp2p until a peer asks.
  const { peerIdFromString } = await import('@libp2p/peer-id')
  const publicKey = peerIdFromString(peer).publicKey
  if (publicKey?.type !== 'Ed25519') return publicKey
  const object = createPublicKey({ format: 'jwk', key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey.raw).toString('base64url') } })
  if (verifyingKeys.size >= MAX_VERIFYING_KEYS) verifyingKeys.delete(verifyingKeys.keys().next().value as string)
  verifyingKeys.set(peer, object)
  return object
}

/** The peer that signed this request, or undefined when the signature, its time or the peer id does not hold. */
export async function verifyRequest (peer: string, method: string, target: string, time: string, signature: string, now = Date.now()): Promise<string | undefined> {
  if (!/^\d{1,15}$/.test(time) || Math.abs(now - Number(time)) > MAX_SKEW_MS) return undefined
  try {
    const key = await verifyingKeyOf(peer)
    if (key === undefined) return undefined
    const text = signedText(method, target, time)
    const bytes = Buffer.from(signature, 'base64url')
    const valid = key instanceof KeyObject ? verify(null, text, key, bytes) : await key.verify(text, bytes)
    return valid ? peer : undefined
  } catch {
    return undefined
  }
}
