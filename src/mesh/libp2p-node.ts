import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import * as dagCbor from '@ipld/dag-cbor'
import { gossipsub } from '@libp2p/gossipsub'
import { identify } from '@libp2p/identify'
import type { PrivateKey } from '@libp2p/interface'
import { kadDHT, passthroughMapper } from '@libp2p/kad-dht'
import { mdns } from '@libp2p/mdns'
import { ping } from '@libp2p/ping'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import type { Blockstore } from 'interface-blockstore'
import type { Datastore } from 'interface-datastore'
import { createHeliaLight } from 'helia'

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
  const helia = createHeliaLight({ blockstore: options.blockstore, datastore: options.datastore, codecs: [dagCbor] })
  return withBitswap(withLibp2pLight(helia, {
    privateKey: options.privateKey,
    addresses: { listen: options.listen },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: options.swarmKey === undefined ? undefined : preSharedKey({ psk: options.swarmKey }),
    connectionManager: { dialTimeout: DIAL_TIMEOUT_MS, inboundUpgradeTimeout: DIAL_TIMEOUT_MS },
    peerDiscovery: options.mdns ? [mdns()] : [],
    services: {
      identify: identify(),
      ping: ping(),
      dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: passthroughMapper }),
      pubsub: gossipsub({ allowPublishToZeroTopicPeers: true, emitSelf: false })
    }
  }))
}

export type MeshNode = ReturnType<typeof createMeshNode>
