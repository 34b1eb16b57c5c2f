// IPNS records over the mesh (names/name-routing.ts says why two ways): the private Kademlia DHT,
// which checks every record with the `ipns` validator as it stores or answers it (libp2p-node.ts
// registers it), and a gossipsub topic that carries each new record to every member at once.
import type { QueryEvent } from '@libp2p/kad-dht'
import type { Logger } from 'pino'
import type { NameRouting } from '../names/name-routing.ts'

/** The topic new records travel on; the version changes if the message's shape does. */
export const NAMES_TOPIC = 'shoal/ipns/1'

/**
 * The message: the DHT key the record is for (a name's public key is in its key, not always in
 * its record), then the record: `[key length, 2 bytes big-endian][key][record]`.
 */
function encodeMessage (key: Uint8Array, record: Uint8Array): Uint8Array {
  const message = new Uint8Array(2 + key.length + record.length)
  new DataView(message.buffer).setUint16(0, key.length)
  message.set(key, 2)
  message.set(record, 2 + key.length)
  return message
}

function decodeMessage (message: Uint8Array): { key: Uint8Array, record: Uint8Array } | undefined {
  if (message.length < 2) return undefined
  const keyLength = new DataView(message.buffer, message.byteOffset, message.byteLength).getUint16(0)
  if (message.length <= 2 + keyLength) return undefined
  return { key: message.subarray(2, 2 + keyLength), record: message.subarray(2 + keyLength) }
}

/** What the routing uses of the libp2p node. */
export interface NameRoutingNode {
  services: {
    dht: {
      put(key: Uint8Array, value: Uint8Array, options?: { signal?: AbortSignal }): AsyncIterable<QueryEvent>
      get(key: Uint8Array, options?: { signal?: AbortSignal }): AsyncIterable<QueryEvent>
    }
    pubsub: {
      publish(topic: string, data: Uint8Array): Promise<unknown>
      subscribe(topic: string): void
      unsubscribe(topic: string): void
      addEventListener(type: 'message', listener: (event: CustomEvent<{ topic: string, data: Uint8Array }>) => void): void
      removeEventListener(type: 'message', listener: (event: CustomEvent<{ topic: string, data: Uint8Array }>) => void): void
      addEventListener(type: 'subscription-change', listener: (event: CustomEvent<{ peerId: { toString(): string }, subscriptions: Array<{ topic: string, subscribe: boolean }> }>) => void): void
      removeEventListener(type: 'subscription-change', listener: (event: CustomEvent<{ peerId: { toString(): string }, subscriptions: Array<{ topic: string, subscribe: boolean }> }>) => void): void
    }
  }
}

/** `node` is asked for the libp2p node at each call: the routing is built before the mesh starts. */
export function meshNameRouting (node: () => NameRoutingNode, logger: Logger): NameRouting {
  return {
    async put (routingKey, record, signal) {
      let peers = 0
      for await (const event of node().services.dht.put(routingKey, record, { signal })) {
        if (event.name === 'PEER_RESPONSE' && event.messageName === 'PUT_VALUE') peers++
      }
      return peers
    },
    async get (routingKey, signal) {
      // The DHT asks its closest peers, checks every answer, and ends with the best (ipnsSelector).
      let best: Uint8Array | undefined
      for await (const event of node().services.dht.get(routingKey, { signal })) {
        if (event.name === 'VALUE') best = event.value
      }
      return best
    },
    async broadcast (routingKey, record) {
      await node().services.pubsub.publish(NAMES_TOPIC, encodeMessage(routingKey, record))
    },
    listen (onRecord, onListener) {
      const pubsub = node().services.pubsub
      const onMessage = (event: CustomEvent<{ topic: string, data: Uint8Array }>): void => {
        if (event.detail.topic !== NAMES_TOPIC) return
        const message = decodeMessage(event.detail.data)
        if (message === undefined) logger.debug('a names message that is not one')
        else onRecord(message.key, message.record)
      }
      const onSubscription = (event: CustomEvent<{ peerId: { toString(): string }, subscriptions: Array<{ topic: string, subscribe: boolean }> }>): void => {
        if (event.detail.subscriptions.some(({ topic, subscribe }) => topic === NAMES_TOPIC && subscribe)) onListener(event.detail.peerId.toString())
      }
      pubsub.addEventListener('message', onMessage)
      pubsub.addEventListener('subscription-change', onSubscription)
      pubsub.subscribe(NAMES_TOPIC)
      return () => {
        pubsub.removeEventListener('message', onMessage)
        pubsub.removeEventListener('subscription-change', onSubscription)
        try { pubsub.unsubscribe(NAMES_TOPIC) } catch { /* the mesh stopped first */ }
      }
    }
  }
}
