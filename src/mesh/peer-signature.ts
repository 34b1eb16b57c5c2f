// A node proves to a peer's /ipfs/ that a block request is its own (issue 12: with authentication
// on, blocks go to fleet members and signed-in users only): the request's method, target (the
// host it is sent to, the path and the query) and time, signed with the node's libp2p key, which
// its peer id names. A captured signature opens only that one request on that one node, for a
// minute, and the serving node answers signed requests with raw blocks only.
import type { PrivateKey } from '@libp2p/interface'

export const PEER_SIGNATURE_HEADER = 'shoal-peer-signature'
export const PEER_TIME_HEADER = 'shoal-peer-time'
/** Clocks of a fleet may differ this much; a captured signature is good for the same block only, this long. */
const MAX_SKEW_MS = 60_000

function signedText (method: string, target: string, time: string): Uint8Array {
  return new TextEncoder().encode(`shoal block request\n${method}\n${target}\n${time}`)
}

/** The headers that prove a request for `target` (`host:port/path?query`) comes from the holder of `key`. */
export async function signRequest (key: PrivateKey, method: string, target: string, now = Date.now()): Promise<Record<string, string>> {
  const time = String(now)
  const signature = await key.sign(signedText(method, target, time))
  return { [PEER_TIME_HEADER]: time, [PEER_SIGNATURE_HEADER]: Buffer.from(signature).toString('base64url') }
}

/** The peer that signed this request, or undefined when the signature, its time or the peer id does not hold. */
export async function verifyRequest (peer: string, method: string, target: string, time: string, signature: string, now = Date.now()): Promise<string | undefined> {
  if (!/^\d{1,15}$/.test(time) || Math.abs(now - Number(time)) > MAX_SKEW_MS) return undefined
  try {
    // Loaded here: a node outside a mesh carries none of libp2p until a peer asks.
    const { peerIdFromString } = await import('@libp2p/peer-id')
    const publicKey = peerIdFromString(peer).publicKey
    if (publicKey === undefined) return undefined
    return await publicKey.verify(signedText(method, target, time), Buffer.from(signature, 'base64url')) ? peer : undefined
  } catch {
    return undefined
  }
}
