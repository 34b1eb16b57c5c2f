// Member certificates (issue 12, trust inside the fleet): the operator's Ed25519 key signs that a
// peer, writing the catalogue with a given OrbitDB identity key, is a member or an admin of the
// fleet; a revocation, signed the same way, ends that. Nodes check both against the operator's
// public key they started with. (The catalogue database that carries them and the access
// controller that applies them come next; docs/architecture.md, Access.)
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto'

export const ROLES = ['member', 'admin'] as const
export type Role = typeof ROLES[number]

export interface Certificate {
  kind: 'certificate'
  /** The libp2p peer id of the node. */
  peer: string
  /** The OrbitDB identity public key the node writes the catalogue with. */
  writer: string
  role: Role
  /** ISO 8601: when the operator signed it; a revocation signed later ends it. */
  issuedAt: string
}

export interface Revocation {
  kind: 'revocation'
  peer: string
  revokedAt: string
}

export type Statement = Certificate | Revocation

/** A statement with the operator's signature (base64url) over its canonical text. */
export type Signed<T extends Statement> = T & { signature: string }

/** The operator's key pair, as `shoal fleet init` writes it: PKCS#8 and SPKI PEM. */
export function newOperatorKeys (): { privatePem: string, publicPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519')
  return {
    privatePem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    publicPem: publicKey.export({ format: 'pem', type: 'spki' }).toString()
  }
}

/** The bytes a statement is signed over: its fields in a fixed order, whatever order it came in. */
function canonical (statement: Statement): Buffer {
  const fields = statement.kind === 'certificate'
    ? ['certificate', statement.peer, statement.writer, statement.role, statement.issuedAt]
    : ['revocation', statement.peer, statement.revokedAt]
  return Buffer.from(`shoal fleet statement\n${JSON.stringify(fields)}`)
}

export function signStatement<T extends Statement> (statement: T, operatorPrivatePem: string): Signed<T> {
  const key = createPrivateKey(operatorPrivatePem)
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the operator key must be Ed25519, not ${key.asymmetricKeyType ?? 'unknown'}`)
  return { ...statement, signature: sign(null, canonical(statement), key).toString('base64url') }
}

/** The operator's public key, from its PEM; refuses anything but an Ed25519 key. */
export function operatorPublicKey (pem: string): KeyObject {
  const key = createPublicKey(pem)
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the operator key must be Ed25519, not ${key.asymmetricKeyType ?? 'unknown'}`)
  return key
}

/** The statement, checked in shape and signature, or undefined (anything else, from anyone). */
export function verifyStatement (value: unknown, operator: KeyObject): Signed<Statement> | undefined {
  const statement = shapeOf(value)
  if (statement === undefined) return undefined
  try {
    return verify(null, canonical(statement), operator, Buffer.from(statement.signature, 'base64url')) ? statement : undefined
  } catch {
    return undefined
  }
}

function shapeOf (value: unknown): Signed<Statement> | undefined {
  if (typeof value !== 'object' || value === null) return undefined
  const v = value as Record<string, unknown>
  const text = (field: string): field is string => typeof v[field] === 'string' && v[field] !== ''
  if (!text('signature') || !text('peer')) return undefined
  if (v.kind === 'certificate' && text('writer') && text('issuedAt') && (ROLES as readonly unknown[]).includes(v.role) && !Number.isNaN(Date.parse(v.issuedAt as string))) {
    return { kind: 'certificate', peer: v.peer as string, writer: v.writer as string, role: v.role as Role, issuedAt: v.issuedAt as string, signature: v.signature as string }
  }
  if (v.kind === 'revocation' && text('revokedAt') && !Number.isNaN(Date.parse(v.revokedAt as string))) {
    return { kind: 'revocation', peer: v.peer as string, revokedAt: v.revokedAt as string, signature: v.signature as string }
  }
  return undefined
}

/**
 * Who is certified now, from every verified statement: per peer, its newest certificate unless a
 * revocation signed at or after it ends it. Answers the certified writers' keys with their peers
 * and roles.
 */
export function certifiedWriters (statements: ReadonlyArray<Signed<Statement>>): Map<string, { peer: string, role: Role }> {
  const newest = new Map<string, Signed<Certificate>>()
  const revoked = new Map<string, number>()
  for (const statement of statements) {
    if (statement.kind === 'certificate') {
      const known = newest.get(statement.peer)
      if (known === undefined || Date.parse(statement.issuedAt) > Date.parse(known.issuedAt)) newest.set(statement.peer, statement)
    } else {
      revoked.set(statement.peer, Math.max(revoked.get(statement.peer) ?? -Infinity, Date.parse(statement.revokedAt)))
    }
  }
  const writers = new Map<string, { peer: string, role: Role }>()
  for (const certificate of newest.values()) {
    if ((revoked.get(certificate.peer) ?? -Infinity) >= Date.parse(certificate.issuedAt)) continue
    writers.set(certificate.writer, { peer: certificate.peer, role: certificate.role })
  }
  return writers
}
