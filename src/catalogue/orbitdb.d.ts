// The part of @orbitdb/core (which ships no types) that Shoal uses.
declare module '@orbitdb/core' {
  import type { EventEmitter } from 'node:events'

  export interface LogEntry<T = unknown> {
    hash: string
    identity: string
    payload: { op: 'PUT' | 'DEL' | 'ADD' | 'BASE', key?: string, value: T }
    clock: { id: string, time: number }
    next: string[]
    refs: string[]
  }

  export interface KeyValueDatabase<T = unknown> {
    address: string
    events: EventEmitter
    /** Appends any operation to the log (put and del are two such). */
    addOperation(operation: { op: string, key: string | null, value: unknown }): Promise<string>
    put(key: string, value: T): Promise<string>
    del(key: string): Promise<string>
    get(key: string): Promise<T | undefined>
    all(): Promise<Array<{ key: string, value: T, hash: string }>>
    iterator(filters?: { amount?: number }): AsyncIterable<{ key: string, value: T, hash: string }>
    close(): Promise<void>
    /** The database's exchange with peers (pubsub and the heads protocol). */
    sync: { stop(): Promise<void> }
    /** Clears the log's heads and index (not the entries' blocks, which stay pinned). */
    drop(): Promise<void>
    log: {
      heads(): Promise<Array<LogEntry<T>>>
      get(hash: string): Promise<LogEntry<T> | undefined>
      traverse(): AsyncIterable<LogEntry<T>>
      /** Verifies an entry (and what it points at) and adds it; false when the log had it. */
      joinEntry(entry: LogEntry<T>): Promise<boolean>
      storage: { get(hash: string): Promise<Uint8Array | undefined> }
    }
  }

  export interface OrbitDB {
    id: string
    identity: { id: string, publicKey: string }
    open<T = unknown>(address: string, options?: { type?: string, Database?: unknown, AccessController?: unknown }): Promise<KeyValueDatabase<T>>
    stop(): Promise<void>
  }

  /** A storage of OrbitDB's own (entries, heads, keys) kept in memory. */
  export interface Storage {
    put(key: string, value: unknown): Promise<void>
    get(key: string): Promise<unknown>
  }
  export function MemoryStorage (): Promise<Storage>
  export function KeyStore (options: { storage: Storage }): Promise<unknown>

  export interface Identity { id: string }
  export interface Identities {
    createIdentity(options: { id: string }): Promise<Identity>
  }
  export function Identities (options: { keystore: unknown, storage?: Storage }): Promise<Identities>

  /** An access controller as a log asks it. */
  export interface LogAccess {
    canAppend(entry: LogEntry): Promise<boolean>
  }
  export interface Log {
    append(payload: unknown): Promise<LogEntry>
    joinEntry(entry: LogEntry): Promise<boolean>
    heads(): Promise<LogEntry[]>
  }
  export function Log (identity: Identity, options: { logId: string, access?: LogAccess, entryStorage?: Storage }): Promise<Log>

  export function createOrbitDB (options: { ipfs: unknown, directory?: string, id?: string }): Promise<OrbitDB>
  export function IPFSAccessController (options?: { write?: string[] }): unknown
  /** OrbitDB's storage of raw blocks in helia (access controllers keep their manifests there). */
  export function IPFSBlockStorage (options: { ipfs: unknown, pin?: boolean }): Promise<{ put(hash: string, bytes: Uint8Array): Promise<void> }>
}

// OrbitDB's signature helpers (not re-exported by its index), for the test of its patched check.
declare module '@orbitdb/core/src/key-store.js' {
  export function signMessage (key: unknown, data: Uint8Array): Promise<string>
  export function verifyMessage (signature: string, publicKey: string, data: Uint8Array): Promise<boolean>
}
