import { createHash } from 'node:crypto'
import { DigestInvalidError } from './errors.ts'

export type DigestAlgorithm = 'sha256' | 'sha512'

const HEX_LENGTH: Record<DigestAlgorithm, number> = { sha256: 64, sha512: 128 }
const DIGEST_PATTERN = /^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$/

export interface Digest {
  algorithm: DigestAlgorithm
  hex: string
  /** `algorithm:hex`, the form used on the wire. */
  value: string
}

/** Parses an OCI digest; only sha256 and sha512 are accepted. */
export function parseDigest (text: string): Digest {
  const match = DIGEST_PATTERN.exec(text)
  if (match == null) throw new DigestInvalidError(`invalid digest: ${JSON.stringify(text)}`)
  const algorithm = match[1]
  const hex = match[2] ?? ''
  if (algorithm !== 'sha256' && algorithm !== 'sha512') {
    throw new DigestInvalidError(`unsupported digest algorithm: ${algorithm ?? ''}`)
  }
  if (hex.length !== HEX_LENGTH[algorithm] || !/^[a-f0-9]+$/.test(hex)) {
    throw new DigestInvalidError(`invalid ${algorithm} digest: ${text}`)
  }
  return { algorithm, hex, value: text }
}

export function digestOf (bytes: Uint8Array, algorithm: DigestAlgorithm = 'sha256'): string {
  return `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`
}
