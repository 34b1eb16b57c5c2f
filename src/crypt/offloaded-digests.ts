// The ciphertext's HMAC and SHA-256 computed on another thread: a layer's AES pass stays on the
// copy's thread while its two hash passes run beside it, so an encrypted copy costs a second core
// rather than twice the time (bench/transfer.ts).
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
  if (message.op === 'open') open.set(message.id, { mac: createHmac('sha256', Buffer.from(message.key)), hash: createHash('sha256'), ring: message.ring })
  else if (message.op === 'update') {
    const state = open.get(message.id)
    const chunk = Buffer.from(state.ring, message.offset, message.length)
    state.mac.update(chunk)
    state.hash.update(chunk)
    parentPort.postMessage({ id: message.id, op: 'hashed', bytes: chunk.length })
  } else if (message.op === 'finish') {
    const state = open.get(message.id)
    open.delete(message.id)
    parentPort.postMessage({ id: message.id, op: 'finished', hmac: state.mac.digest(), sha256: state.hash.digest('hex') })
  } else if (message.op === 'drop') open.delete(message.id)
})
`

interface Pending { queued: number, wake?: () => void, finished?: (digests: { hmac: Buffer, sha256: string }) => void }

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
        pending.finished?.({ hmac: Buffer.from(message.hmac ?? new Uint8Array()), sha256: message.sha256 ?? '' })
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

/** HMAC-SHA256 (keyed with `key`) and SHA-256 of a stream of chunks, on the worker. */
export class OffloadedDigests {
  private readonly state = acquire()
  private readonly id = this.state.next++
  private readonly pending: Pending = { queued: 0 }
  private readonly ring = new SharedArrayBuffer(RING_BYTES)
  /** Where the next bytes go in the ring. */
  private head = 0
  private done = false

  constructor (key: Uint8Array) {
    this.state.pending.set(this.id, this.pending)
    this.state.worker.postMessage({ id: this.id, op: 'open', key, ring: this.ring })
  }

  /** Copies a chunk into the ring for the worker (the caller may go on using it), waiting for room. */
  async update (chunk: Uint8Array): Promise<void> {
    let offset = 0
    while (offset < chunk.byteLength) {
      // A piece never wraps around the ring's end, and never overwrites bytes not yet hashed.
      const length = Math.min(chunk.byteLength - offset, RING_BYTES - this.head, RING_BYTES / 4)
      while (this.pending.queued + length > RING_BYTES) await new Promise<void>(resolve => { this.pending.wake = resolve })
      new Uint8Array(this.ring, this.head, length).set(chunk.subarray(offset, offset + length))
      this.state.worker.postMessage({ id: this.id, op: 'update', offset: this.head, length })
      this.pending.queued += length
      this.head = (this.head + length) % RING_BYTES
      offset += length
    }
  }

  async digests (): Promise<{ hmac: Buffer, sha256: string }> {
    const finished = new Promise<{ hmac: Buffer, sha256: string }>(resolve => { this.pending.finished = resolve })
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
