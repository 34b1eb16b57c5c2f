// Signed IPNS records (the `ipns` package's V2 records): made, checked and compared here only, so
// the rest of Shoal handles them as bytes with the few facts it reads.
import type { PrivateKey } from '@libp2p/interface'
import { createIPNSRecordWithExpiration, marshalIPNSRecord, unmarshalIPNSRecord } from 'ipns'
import { ipnsSelector } from 'ipns/selector'
import { ipnsValidator } from 'ipns/validator'
import type { IpnsName } from './ipns-name.ts'

const NANOSECONDS_PER_MS = 1_000_000n

/** What a record says, read from its signed data. */
export interface RecordFacts {
  /** `/ipfs/<cid>[/path]` or `/ipns/<name>[/path]`. */
  value: string
  sequence: bigint
  /** Until when the record is valid (its end of life). */
  validUntil: Date
  /** How long a resolver may keep it before asking again. */
  ttlMs: number
}

/** Signs a V2 record (the form every current implementation checks), valid until `validUntil`. */
export async function signRecord (key: PrivateKey, value: string, sequence: bigint, validUntil: Date, ttlMs: number): Promise<Uint8Array> {
  // The ipns package wants RFC 3339 with nanoseconds.
  const validity = validUntil.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z')
  const record = await createIPNSRecordWithExpiration(key, value, sequence, validity, { v1Compatible: false, ttlNs: BigInt(Math.round(ttlMs)) * NANOSECONDS_PER_MS })
  return marshalIPNSRecord(record)
}

/** Checks a record against the name it is for (the name's key signed it, it has not expired, it is at most 10 KiB); throws if not. */
export async function verifyRecord (name: IpnsName, bytes: Uint8Array): Promise<RecordFacts> {
  await ipnsValidator(name.routingKey, bytes)
  return factsOf(bytes)
}

export function factsOf (bytes: Uint8Array): RecordFacts {
  const record = unmarshalIPNSRecord(bytes)
  return {
    value: record.value,
    sequence: record.sequence,
    validUntil: new Date(record.validity),
    ttlMs: Number((record.ttl ?? 0n) / NANOSECONDS_PER_MS)
  }
}

/** Whether `candidate` supersedes `current` for `name`: a higher sequence, or the same one valid for longer (the DHT's own rule). */
export function supersedes (name: IpnsName, candidate: Uint8Array, current: Uint8Array | undefined): boolean {
  if (current === undefined) return true
  if (Buffer.from(candidate).equals(Buffer.from(current))) return false
  return ipnsSelector(name.routingKey, [current, candidate]) === 1
}
