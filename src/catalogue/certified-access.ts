// An OrbitDB access controller for a fleet with an operator key (issue 12, D13): an entry enters
// one of the catalogue's logs only if its writer may write there (fleet-trust.ts). Its manifest
// names the operator key, so fleets with different keys (or none) never share a database address.
import { IPFSBlockStorage } from '@orbitdb/core'
import * as dagCbor from '@ipld/dag-cbor'
import { base58btc } from 'multiformats/bases/base58'
import * as Block from 'multiformats/block'
import { sha256 } from 'multiformats/hashes/sha2'
import type { CatalogueKind, FleetTrust } from './fleet-trust.ts'

export const CERTIFIED_ACCESS_TYPE = 'shoal-certified'

/**
 * How long the writer's identity block may take to arrive. OrbitDB waits 30 s, and a joining
 * node's first fetch sometimes never got it (seen under load: the certificates database stayed
 * empty for the whole wait, so nothing else counted). Refused sooner, the entry is kept and tried
 * again with a fresh fetch (generations.ts, `retryRefused`).
 */
const IDENTITY_TIMEOUT_MS = 5_000

/** An entry as the access controller sees it (OrbitDB's, with the fields it checks). */
interface AppendedEntry {
  identity: string
  key: string
  clock: { id: string }
  payload: { op: string, key?: string | null, value?: unknown }
}

interface WriterIdentity { publicKey: string }

/** What OrbitDB hands an access controller when it opens a database. */
interface AccessParams {
  orbitdb: { ipfs: unknown }
  identities: {
    getIdentity(hash: string): Promise<WriterIdentity | undefined>
    verifyIdentity(identity: WriterIdentity): Promise<boolean>
  }
}

/** The controller for one of the catalogue's databases (`kind`), as OrbitDB's `AccessController` option takes it. */
export function certifiedAccessController (trust: FleetTrust, kind: CatalogueKind): (params: AccessParams) => Promise<{ type: string, address: string, canAppend(entry: AppendedEntry): Promise<boolean> }> {
  return async ({ orbitdb, identities }) => {
    const storage = await IPFSBlockStorage({ ipfs: orbitdb.ipfs, pin: true })
    const { cid, bytes } = await Block.encode({ value: { type: CERTIFIED_ACCESS_TYPE, operator: trust.operatorId }, codec: dagCbor, hasher: sha256 })
    const hash = cid.toString(base58btc)
    await storage.put(hash, bytes)
    return {
      type: CERTIFIED_ACCESS_TYPE,
      address: `/${CERTIFIED_ACCESS_TYPE}/${hash}`,
      canAppend: async entry => {
        const identity = await identityOf(identities, entry.identity)
        if (identity === undefined || !await identities.verifyIdentity(identity)) return false
        // OrbitDB checks the entry's signature against `entry.key` and orders by `clock.id`: both
        // must be the identity's own key, or a writer could sign as itself and rank as another.
        if (entry.key !== identity.publicKey || entry.clock.id !== identity.publicKey) return false
        return await trust.mayAppend(kind, identity.publicKey, entry.payload)
      }
    }
  }
}

/** The identity `hash` names, or undefined when it cannot be read within IDENTITY_TIMEOUT_MS. */
async function identityOf (identities: AccessParams['identities'], hash: string): Promise<WriterIdentity | undefined> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<undefined>(resolve => { timer = setTimeout(() => { resolve(undefined) }, IDENTITY_TIMEOUT_MS) })
  try {
    return await Promise.race([identities.getIdentity(hash).catch(() => undefined), late])
  } finally {
    clearTimeout(timer)
  }
}
