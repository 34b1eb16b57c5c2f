// Where a node is in its life, in one place: whether its storage is open and whether it has joined
// its mesh. The HTTP server listens before the mesh is joined (peers must learn the bound port,
// and orchestrators must be able to ask), so what the node can serve changes once, at the join:
// the parts that need the mesh read it here instead of being rewired by setters.
import type { FastifyInstance } from 'fastify'
import { isUnder } from './http-request.ts'
import { ShoalError, UNAVAILABLE } from './oci/errors.ts'

/** The node cannot serve this yet (joining its mesh) or any more (stopping). */
export class NotReadyError extends ShoalError {
  static override readonly descriptor = UNAVAILABLE
  constructor (message: string) {
    super(message, undefined, { headers: { 'retry-after': '1' } })
  }
}

/** A node's place in a mesh: none configured, joining, joined (with what the mesh gives), or left. */
export type MeshPhase<Joined> =
  | { state: 'off' }
  | { state: 'joining' }
  | { state: 'joined', parts: Joined }
  | { state: 'left' }

export type Readiness = { ready: true } | { ready: false, reason: string }

/** The node's lifecycle; the composition root (node.ts) moves it on, everything else reads it. */
export class Lifecycle<Joined> {
  private storageOpen = false
  private stopping = false
  private meshPhase: MeshPhase<Joined>

  constructor (options: { meshEnabled: boolean }) {
    this.meshPhase = options.meshEnabled ? { state: 'joining' } : { state: 'off' }
  }

  get mesh (): MeshPhase<Joined> {
    return this.meshPhase
  }

  storageOpened (): void {
    this.storageOpen = true
  }

  meshJoined (parts: Joined): void {
    if (this.meshPhase.state !== 'joining') throw new Error(`cannot join a mesh from state ${this.meshPhase.state}`)
    this.meshPhase = { state: 'joined', parts }
  }

  /** The node is stopping: it is no longer ready, and the mesh parts are being taken down. */
  stopped (): void {
    this.stopping = true
    if (this.meshPhase.state !== 'off') this.meshPhase = { state: 'left' }
  }

  /** Ready: storage open, and in a mesh node the mesh joined and the catalogue open. */
  readiness (): Readiness {
    if (this.stopping) return { ready: false, reason: 'the node is stopping' }
    if (!this.storageOpen) return { ready: false, reason: 'the storage is not open yet' }
    if (this.meshPhase.state === 'joining') return { ready: false, reason: 'joining the mesh: the catalogue is not open yet' }
    return { ready: true }
  }
}

/**
 * Until the node is ready, /v2 answers 503 UNAVAILABLE with the reason: a registry that answered
 * before its mesh was joined would take pushes whose tags never reach the fleet, and would tell
 * orchestrators and clients that probe `/v2/` that it is ready when it is not.
 */
export function gateUntilReady (app: FastifyInstance, lifecycle: { readiness(): Readiness }): void {
  app.addHook('onRequest', async req => {
    if (!isUnder(req.url, '/v2')) return
    const readiness = lifecycle.readiness()
    if (!readiness.ready) throw new NotReadyError(readiness.reason)
  })
}
