// OrbitDB 4.0.0 as patched in patches/: a log that joins a peer's entry checks only the entries
// it lacks (unpatched, `filter(has)` with an async `has` kept every reference, so each joined
// entry re-read and re-verified its next and up to 16 refs), and a secp256k1 signature is
// checked by Node's crypto with the same answers as @noble/curves gave (bench/RESULTS.md, one
// push's cost).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { generateKeyPair, publicKeyFromRaw } from '@libp2p/crypto/keys'
import { Identities, KeyStore, Log, MemoryStorage, type LogEntry } from '@orbitdb/core'
import { signMessage, verifyMessage } from '@orbitdb/core/src/key-store.js'

/** The secp256k1 group order. */
const ORDER = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n

/** The same signature with s replaced by order - s: valid for the curve, refused by the low-S rule. */
function highS (der: Uint8Array): Uint8Array {
  const rLength = der[3]!
  const r = der.subarray(4, 4 + rLength)
  const sAt = 4 + rLength
  const s = BigInt('0x' + Buffer.from(der.subarray(sAt + 2, sAt + 2 + der[sAt + 1]!)).toString('hex'))
  let hex = (ORDER - s).toString(16)
  if (hex.length % 2 === 1) hex = '0' + hex
  if (Number.parseInt(hex.slice(0, 2), 16) >= 0x80) hex = '00' + hex
  const high = Buffer.from(hex, 'hex')
  return Buffer.concat([Buffer.from([0x30, 4 + r.length + high.length, 0x02, r.length]), r, Buffer.from([0x02, high.length]), high])
}

describe('OrbitDB log join', () => {
  it('verifies each joined entry once, not its references again', async () => {
    const keystore = await KeyStore({ storage: await MemoryStorage() })
    const identities = await Identities({ keystore })
    // One entry store for both logs, as the shared blockstore is for the nodes' logs.
    const entryStorage = await MemoryStorage()
    const writer = await Log(await identities.createIdentity({ id: 'writer' }), { logId: 'tags', entryStorage })
    const checked: string[] = []
    const access = { canAppend: async (entry: LogEntry) => { checked.push(entry.hash); return true } }
    const reader = await Log(await identities.createIdentity({ id: 'reader' }), { logId: 'tags', entryStorage, access })

    const entries = 40
    for (let i = 0; i < entries; i++) {
      const entry = await writer.append({ op: 'PUT', key: `t${i % 4}`, value: i })
      assert.equal(await reader.joinEntry(entry), true)
    }
    assert.equal(checked.length, entries, `${checked.length} checks for ${entries} entries joined one by one`)
    assert.equal(new Set(checked).size, entries)
    assert.deepEqual((await reader.heads()).map(head => head.hash), (await writer.heads()).map(head => head.hash))

    // A gap (entries the reader never got) is still fetched and checked, each once.
    const skipped: LogEntry[] = []
    for (let i = 0; i < 5; i++) skipped.push(await writer.append({ op: 'PUT', key: 'gap', value: i }))
    checked.length = 0
    assert.equal(await reader.joinEntry(skipped.at(-1)!), true)
    assert.deepEqual(new Set(checked), new Set(skipped.map(entry => entry.hash)))
    assert.deepEqual((await reader.heads()).map(head => head.hash), [skipped.at(-1)!.hash])
  })

  it('checks secp256k1 signatures as @noble/curves does: valid, tampered, other key, high S', async () => {
    const key = await generateKeyPair('secp256k1')
    const other = await generateKeyPair('secp256k1')
    const publicKey = Buffer.from(key.publicKey.raw).toString('hex')
    const noble = (data: Uint8Array, signature: Uint8Array): boolean => {
      try {
        return publicKeyFromRaw(key.publicKey.raw).verify(data, signature) as boolean
      } catch {
        return false
      }
    }
    for (let i = 0; i < 50; i++) {
      const data = new TextEncoder().encode(`entry ${i}`)
      const signature = await signMessage(key, data)
      const bytes = Buffer.from(signature, 'hex')
      assert.equal(await verifyMessage(signature, publicKey, data), true)
      assert.equal(noble(data, bytes), true)
      assert.equal(await verifyMessage(signature, publicKey, new TextEncoder().encode(`other ${i}`)), false)
      assert.equal(await verifyMessage(signature, Buffer.from(other.publicKey.raw).toString('hex'), data), false)
      const high = highS(bytes)
      assert.equal(noble(data, high), false, 'noble refuses a high-S signature')
      assert.equal(await verifyMessage(Buffer.from(high).toString('hex'), publicKey, data), false)
    }
  })
})

