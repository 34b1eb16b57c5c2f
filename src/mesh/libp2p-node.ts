import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import * as dagCbor from '@ipld/dag-cbor'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import type { RPC } from '@libp2p/gossipsub/message'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'
import { MemoryDatastore } from 'datastore-core'
import { createHeliaLight } from 'helia'
import { sendWindowUpdatesAtHalf } from './yamux-window.ts'

/** Shoal's own DHT: never the public IPFS one (D5). */
export const DHT_PROTOCOL = '/shoal/kad/1.0.0'
// A wrong pre-shared key can look like a hang rather than an error: keep the waits short.
const DIAL_TIMEOUT_MS = 5_000

export interface MeshNodeOptions {
  privateKey: PrivateKey
  listen: string[]
  mdns: boolean
  swarmKey?: Uint8Array
  blockstore: Blockstore
  datastore: Datastore
}

/**
 * helia on libp2p with exactly the parts Shoal uses (D5): TCP, noise, yamux, identify, ping, a
 * private Kademlia DHT, gossipsub (named `pubsub`, as OrbitDB wants it), optional pnet and mDNS,
 * and bitswap only so other IPFS nodes can fetch from Shoal (D4). No public bootstrap, no
 * delegated routing, no public gateways.
 */
export function createMeshNode (options: MeshNodeOptions) {
  sendWindowUpdatesAtHalf()
  const helia = createHeliaLight({ blockstore: options.blockstore, datastore: options.datastore, codecs: [dagCbor] })
  return withBitswap(withLibp2pLight(helia, {
    privateKey: options.privateKey,
    // The peer store and DHT records live in memory: libp2p updates the peer store on every
    // stream and DHT answer, and in LevelDB that was a large share of a pulling node's CPU.
    // Nothing there needs a restart: configured peers are redialled, held content re-provided.
    datastore: new MemoryDatastore(),
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    // No yamux keepalive pings: they close nothing when unanswered (yamux 8 only logs), presence
    // already crosses every member connection every heartbeat, and membership pings a quiet
    // member. At 30 nodes the pings were 6 % of an idle node's CPU.
    streamMuxers: [yamux({ enableKeepAlive: false })],
    connectionProtector: options.swarmKey === undefined ? undefined : preSharedKey({ psk: options.swarmKey }),
    connectionManager: { dialTimeout: DIAL_TIMEOUT_MS, inboundUpgradeTimeout: DIAL_TIMEOUT_MS },
    connectionMonitor: { enabled: false },
    peerDiscovery: options.mdns ? [mdns()] : [],
    services: {
      identify: identify(),
      ping: ping(),
      // Members keep a connection to every other member (membership.ts), and connected peers
      // enter the routing table: the self-query that finds close peers runs at start and then
      // every half hour, not every 5 minutes (each one asks most of a small fleet).
      // libp2p's k 20, alpha 10: k 5, alpha 3 and one path cut what a push costs the others by
      // a quarter (bench/RESULTS.md), but a late joiner then missed the catalogue within 10 s
      // under two busy loops, 2 runs of 2 (test/mesh/fleet.test.ts; it passed in the one such
      // run with the defaults).
      // IPNS records (issue 14): every record is checked against its name as it is stored or
      // answered, and of several the higher sequence (then the later end of life) wins.
      dht: kadDHT({
        protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper, querySelfInterval: 30 * 60_000,
        validators: { ipns: ipnsValidator }, selectors: { ipns: ipnsSelector }
      }),
      pubsub: gossipsub({
        allowPublishToZeroTopicPeers: true,
        emitSelf: false,
        fastMsgIdFn: signatureId,
        // Shoal's messages are small (catalogue entries, pull notices): each is forwarded to D
        // mesh peers, and an IDONTWANT would cost as much as the copy it saves.
        D: 4,
        Dlo: 3,
        Dhi: 8,
        idontwantMinDataSize: 64 * 1024,
        // Gossipsub scores down peers that share an IP (a Sybil defence for open networks): past
        // 14 nodes on one address every peer was graylisted and their messages dropped, and a
        // 30-node fleet on one machine never formed. Shoal's mesh is closed by the swarm key, and
        // many nodes behind one address (one host, NAT) are normal.
        scoreParams: { IPColocationFactorWeight: 0 }
      })
    }
  }))
}

/**
 * Gossipsub checks a message's signature before it looks for duplicates unless it has a cheap id
 * to look up first; every message arrives from several mesh peers, so without one each copy cost
 * an ed25519 verification (the largest CPU item of a pulling node). The signature is unique per
 * message, and a forged copy cannot take its place: ids are cached only for messages that verified.
 */
function signatureId (message: RPC.Message): string {
  const id = message.signature ?? message.seqno ?? message.data ?? new Uint8Array()
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('base64')
}

export type MeshNode = ReturnType<typeof createMeshNode>
