import type { CID } from 'multiformats/cid'
import type { BlockSource } from '../content/dag-reader.ts'
import { BlockNotFoundError } from '../content/fs-blockstore.ts'

/**
 * One block a relay handed this node (already verified against its CID by the fetch that
 * brought it), as a block source for the gateway. It answers for that CID only: asked for any
 * other, it has nothing, rather than the one block it holds.
 */
export function relayedBlock (cid: CID, bytes: Uint8Array): BlockSource & { has(cid: CID): Promise<boolean> } {
  const mine = (asked: CID): Uint8Array => {
    if (!asked.equals(cid)) throw new BlockNotFoundError(asked)
    return bytes
  }
  return {
    has: async asked => asked.equals(cid),
    getBytes: async asked => mine(asked),
    getRange: async (asked, start, end, into) => {
      const part = mine(asked).subarray(start, end + 1)
      if (into === undefined) return Buffer.from(part)
      into.set(part)
      return into.subarray(0, part.length)
    }
  }
}
