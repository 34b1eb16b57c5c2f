// A layer's ciphertext hashed on another thread: its HMAC, and for an encryption its SHA-256 (the
// new digest), while the AES pass stays on the copy's thread, so an encrypted copy costs a second
// core rather than twice the time (bench/transfer.ts).
import { Worker } from 'node:worker_threads'

/**
 * Each stream's ring of shared memory the worker hashes from: chunks are copied in, never posted
 * (posted chunks became garbage in the worker's heap faster than it collected them: +40 MiB for a
 * 64 MiB layer). `update` waits while the ring holds bytes not yet hashed.
 */
const RING_BYTES = 4 * 1024 * 1024

const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash, createHmac } = require('node:crypto')
const open = new Map()
parentPort.on('message', message => {
  if (message.op === 'open') open.set(message.id, { mac: message.hmacKey === undefined ? undefined : createHmac('sha256', Buffer.from(message.hmacKey)), hash: message.sha256 ? createHash('sha256') : undefined, ring: message.ring })
  else if (message.op === 'update') {
    const state = open.get(message.id)
    const chunk = Buffer.from(state.ring, message.offset, message.length)
    state.mac?.update(chunk)
    state.hash?.update(chunk)
    parentPort.postMessage({ id: message.id, op: 'hashed', bytes: chunk.length })
  } else if (message.op === 'finish') {
    const state = open.get(message.id)
    open.delete(message.id)
    parentPort.postMessage({ id: message.id, op: 'finished', hmac: state.mac?.digest(), sha256: state.hash?.digest('hex') })
  } else if (message.op === 'drop') open.delete(message.id)
})
`

/** What the worker computed: what it was asked for. */
export interface Digests { hmac?: Buffer, sha256?: string }

interface Pending { queued: number, wake?: () => void, finished?: (digests: Digests) => void }

/** How long the worker outlives its last layer (the next layer of a copy reuses it). */
const IDLE_MS = 2_000

let shared: { worker: Worker, users: number, next: number, pending: Map<number, Pending>, idle?: NodeJS.Timeout } | undefined

/** The process's one hashing worker, started on first use and stopped once no layer has used it for a while. */
function acquire (): NonNullable<typeof shared> {
  if (shared !== undefined) {
    clearTimeout(shared.idle)
    shared.worker.ref()
  }
  if (shared === undefined) {
    const worker = new Worker(WORKER_SOURCE, { eval: true })
    const state = { worker, users: 0, next: 0, pending: new Map<number, Pending>() }
    worker.on('message', (message: { id: number, op: string, bytes?: number, hmac?: Uint8Array, sha256?: string }) => {
      const pending = state.pending.get(message.id)
      if (pending === undefined) return
      if (message.op === 'hashed') {
        pending.queued -= message.bytes ?? 0
        pending.wake?.()
      } else if (message.op === 'finished') {
        pending.finished?.({
          ...(message.hmac === undefined ? {} : { hmac: Buffer.from(message.hmac) }),
          ...(message.sha256 === undefined ? {} : { sha256: message.sha256 })
        })
      }
    })
    // Ref'd while a layer uses it (a copy waiting on its digests is alive); stopped when none does.
    shared = state
  }
  shared.users++
  return shared
}

function release (): void {
  if (shared === undefined || --shared.users > 0) return
  const idle = shared
  // Unref'd: an idle worker never keeps the process alive.
  idle.worker.unref()
  idle.idle = setTimeout(() => {
    if (shared === idle && idle.users === 0) {
      void idle.worker.terminate()
      shared = undefined
    }
  }, IDLE_MS).unref()
}

/** HMAC-SHA256 (keyed with `hmacKey`) and SHA-256 of a stream of chunks, either or both, on the worker. */
export class OffloadedDigests {
  private readonly state = acquire()
  private readonly id = this.state.next++
  private readonly pending: Pending = { queued: 0 }
  private readonly ring = new SharedArrayBuffer(RING_BYTES)
  /** Where the next bytes go in the ring. */
  private head = 0
  private done = false

  constructor ({ hmacKey, sha256 }: { hmacKey?: Uint8Array, sha256: boolean }) {
    this.state.pending.set(this.id, this.pending)
    this.state.worker.postMessage({ id: this.id, op: 'open', hmacKey, sha256, ring: this.ring })
  }

  /** Copies a chunk into the ring for the worker (the caller may go on using it), waiting for room. */
  async update (chunk: Uint8Array): Promise<void> {
    let offset = 0
    while (offset < chunk.byteLength) {
      // A piece never wraps around the ring's end, and never overwrites bytes not yet hashed.
      const length = Math.min(chunk.byteLength - offset, RING_BYTES - this.head, RING_BYTES / 4)
      await this.room(length)
      new Uint8Array(this.ring, this.head, length).set(chunk.subarray(offset, offset + length))
      this.handOver(this.head, length)
      offset += length
    }
  }

  /**
   * The chunks of `source` gathered into pieces of `size` bytes (the last one shorter) in the ring
   * itself, each handed to the worker once full: one copy where gathering the socket's small chunks
   * and then copying them into the ring were two (and a 1 MiB buffer of garbage a piece). A piece is
   * a view of the ring, valid until the next one is asked for.
   */
  async * gather (source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>, size = RING_BYTES / 4): AsyncGenerator<Buffer> {
    // Pieces start at multiples of `size`, so none wraps around the ring's end.
    if (RING_BYTES % size !== 0 || this.head % size !== 0) throw new RangeError(`pieces of ${size} bytes do not tile the ring`)
    let start = this.head
    let filled = 0
    await this.room(size)
    for await (const chunk of source) {
      let offset = 0
      while (offset < chunk.byteLength) {
        const length = Math.min(chunk.byteLength - offset, size - filled)
        new Uint8Array(this.ring, start + filled, length).set(chunk.subarray(offset, offset + length))
        filled += length
        offset += length
        if (filled === size) {
          yield this.handOver(start, size)
          start = this.head
          filled = 0
          await this.room(size)
        }
      }
    }
    if (filled > 0) yield this.handOver(start, filled)
  }

  /** Waits until the ring has `length` bytes the worker is done with after the head. */
  private async room (length: number): Promise<void> {
    while (this.pending.queued + length > RING_BYTES) await new Promise<void>(resolve => { this.pending.wake = resolve })
  }

  /** Gives the worker the ring's bytes at `start`, and the caller a view of them. */
  private handOver (start: number, length: number): Buffer {
    this.state.worker.postMessage({ id: this.id, op: 'update', offset: start, length })
    this.pending.queued += length
    this.head = (start + length) % RING_BYTES
    return Buffer.from(this.ring, start, length)
  }

  async digests (): Promise<Digests> {
    const finished = new Promise<Digests>(resolve => { this.pending.finished = resolve })
    this.state.worker.postMessage({ id: this.id, op: 'finish' })
    try {
      return await finished
    } finally {
      this.close()
    }
  }

  /** Lets the worker go (a stream that stopped early never asks for its digests). */
  close (): void {
    if (this.done) return
    this.done = true
    this.state.worker.postMessage({ id: this.id, op: 'drop' })
    this.state.pending.delete(this.id)
    release()
  }
}
