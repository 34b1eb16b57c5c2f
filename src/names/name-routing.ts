// How IPNS records travel between members: what the names need of the mesh (mesh/name-routing.ts
// gives it over libp2p). Two ways, for two jobs: the private DHT holds records for whoever asks
// later (a node that was away, a new member), and a broadcast carries each new record to every
// member now, so a name resolves on another node within milliseconds of its publish.
export interface NameRouting {
  /** Stores a record with the DHT's closest peers (and this node); answers how many peers took it. */
  put(routingKey: Uint8Array, record: Uint8Array, signal: AbortSignal): Promise<number>
  /** The best record the DHT holds for the key (each checked by the DHT's IPNS validator), or undefined. */
  get(routingKey: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined>
  /** Sends a record to every member now. */
  broadcast(routingKey: Uint8Array, record: Uint8Array): Promise<void>
  /**
   * Calls `onRecord` for each record a member broadcasts (unchecked: the receiver checks it), and
   * `onListener` when a member starts listening (it joined or restarted: it has heard nothing
   * yet). Returns the function that stops both.
   */
  listen(onRecord: (routingKey: Uint8Array, record: Uint8Array) => void, onListener: (peer: string) => void): () => void
}
