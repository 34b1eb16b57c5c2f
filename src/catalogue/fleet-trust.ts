// Who may write the catalogue in a fleet with an operator key (issue 12, D13): the writers the
// operator's certificates name, each with its role. Fed with the certificates database's
// statements; asked by the access controller (may an entry enter a log?) and by the indexes (does
// an entry count?).
import { createHash, type KeyObject } from 'node:crypto'
import { certifiedWriters, verifyStatement, type Role, type Signed, type Statement } from '../access/certificates.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'

/** A statement that is not one the operator signed (forged, changed, or of another fleet). */
export class StatementInvalidError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'STATEMENT_INVALID', status: 400, message: 'the statement is not signed by this fleet\'s operator key' }
}

/** A statement given to a node that trusts no operator key. */
export class NoOperatorKeyError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NO_OPERATOR_KEY', status: 409, message: 'this node was started without an operator key (--operator-key)' }
}

/** A fleet-wide write this node's certificate does not allow (a member setting strategies). */
export class FleetRoleError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'DENIED', status: 403, message: 'this node\'s certificate does not allow that write' }
}

/** The catalogue's databases, as the rights tell them apart. */
export type CatalogueKind = 'tag' | 'node' | 'strategy' | 'certificate'

/** How long an entry from a writer with no certificate yet waits for one before it is refused (its certificate may be on its way). */
const CERTIFICATE_WAIT_MS = 5_000

/** The key a statement is stored under in the certificates database: one per statement, so none replaces another. */
export function statementKey (statement: Signed<Statement>): string {
  return `${statement.kind}/${statement.peer}/${statement.signature}`
}

/** A short, stable name of the operator key (SHA-256 of its SPKI form, hex): in database addresses and for people. */
export function operatorKeyId (operator: KeyObject): string {
  return createHash('sha256').update(operator.export({ format: 'der', type: 'spki' })).digest('hex').slice(0, 32)
}

export class FleetTrust {
  readonly operator: KeyObject
  readonly operatorId: string
  /** This node's own writer key: its own writes always count here (they stay local while it holds no certificate). */
  readonly self: string
  private statements: Array<Signed<Statement>> = []
  private current = new Map<string, { peer: string, role: Role }>()
  /** Writers named by any valid certificate, revoked or not: their old entries stay in logs that later entries point at. */
  private ever = new Set<string>()
  /** Writers refused after a wait, refused at once until the certificates change (one wait, not one per entry). */
  private readonly refused = new Set<string>()
  private readonly listeners = new Set<() => void>()

  constructor (operator: KeyObject, self: string) {
    this.operator = operator
    this.operatorId = operatorKeyId(operator)
    this.self = self
  }

  /** Takes the certificates database's values as they are now; calls the listeners when who is certified changed. */
  update (values: unknown[]): void {
    const statements = values.map(value => verifyStatement(value, this.operator)).filter(statement => statement !== undefined)
    const next = certifiedWriters(statements)
    const before = JSON.stringify([...this.current].sort())
    const everBefore = this.ever.size
    this.statements = statements
    this.current = next
    for (const statement of statements) if (statement.kind === 'certificate') this.ever.add(statement.writer)
    if (JSON.stringify([...next].sort()) === before && this.ever.size === everBefore) return
    this.refused.clear()
    for (const listener of this.listeners) listener()
  }

  /** The statement, if the operator key signed it. */
  verify (value: unknown): Signed<Statement> | undefined {
    return verifyStatement(value, this.operator)
  }

  onChange (listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }

  /** The writer's peer and role now, if a valid certificate names it. */
  certified (writer: string): { peer: string, role: Role } | undefined {
    return this.current.get(writer)
  }

  /** Whether `peer` holds a certificate now (whatever its writer key). */
  certifiesPeer (peer: string): boolean {
    return [...this.current.values()].some(holder => holder.peer === peer)
  }

  /** Every verified statement, as the certificates database holds them. */
  allStatements (): Array<Signed<Statement>> {
    return [...this.statements]
  }

  /**
   * Whether a write counts in this node's view: its own always; another's only while its writer
   * holds a certificate, and with the role the database asks for: strategies place images on
   * every node, so only admins set them; a member writes its own identity and tags. `key`
   * undefined asks about a snapshot or carry entry itself (any member writes those: compaction).
   */
  admits (kind: CatalogueKind, writer: string, key: string | undefined, deleted: boolean): boolean {
    if (kind === 'certificate' || writer === this.self) return true
    const holder = this.current.get(writer)
    if (holder === undefined) return false
    if (key === undefined || holder.role === 'admin') return true
    if (kind === 'strategy') return false
    // A member forgets departed nodes (membership.ts), so deletes of others' identities count.
    if (kind === 'node') return deleted || key === holder.peer
    return true
  }

  /**
   * Whether an entry may enter a log at all (the access controller's question). Certificates
   * carry their own proof. Other entries need a writer some certificate named, even one revoked
   * since: later entries point at its earlier ones, and a log that refused those would refuse
   * every entry after them. (A revoked writer's entries still count for nothing: `admits`.)
   */
  async mayAppend (kind: CatalogueKind, writer: string, payload: { op: string, key?: string | null, value?: unknown }, signal?: AbortSignal): Promise<boolean> {
    if (kind === 'certificate') return this.isStatementPayload(payload)
    if (writer === this.self || this.ever.has(writer)) return true
    return await this.waitFor(writer, signal)
  }

  /** A PUT of one statement under its own key, or a snapshot or carry whose every item is one. */
  private isStatementPayload (payload: { op: string, key?: string | null, value?: unknown }): boolean {
    const isStatement = (key: unknown, value: unknown): boolean => {
      const statement = verifyStatement(value, this.operator)
      return statement !== undefined && key === statementKey(statement)
    }
    if (payload.op === 'PUT') return isStatement(payload.key, payload.value)
    if (payload.op !== 'BASE') return false
    const items = (payload.value as { items?: unknown } | undefined)?.items
    return Array.isArray(items) && items.every(item => typeof item === 'object' && item !== null && (item as { deleted?: unknown }).deleted === false &&
      isStatement((item as { key?: unknown }).key, (item as { value?: unknown }).value))
  }

  /** Waits a little for a certificate naming `writer`: an entry can arrive before the certificate it rests on. */
  private async waitFor (writer: string, signal?: AbortSignal): Promise<boolean> {
    if (this.ever.has(writer)) return true
    if (this.refused.has(writer)) return false
    return await new Promise<boolean>(resolve => {
      const done = (answer: boolean): void => {
        if (!answer && signal?.aborted !== true) this.refused.add(writer)
        clearTimeout(timer)
        stop()
        signal?.removeEventListener('abort', onAbort)
        resolve(answer)
      }
      const onAbort = (): void => { done(false) }
      const timer = setTimeout(() => { done(false) }, CERTIFICATE_WAIT_MS)
      const stop = this.onChange(() => { if (this.ever.has(writer)) done(true) })
      signal?.addEventListener('abort', onAbort, { once: true })
    })
  }
}
