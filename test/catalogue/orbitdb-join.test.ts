// OrbitDB 4.0.0 as patched in patches/: a log that joins a peer's entry checks only the entries
// it lacks. Unpatched, `filter(has)` with an async `has` kept every reference, so each joined
// entry re-read and re-verified its next and up to 16 refs (bench/RESULTS.md, one push's cost).
import { describe, it } from 'node:test'
import assert from 'node:assert/strict'
import { Identities, KeyStore, Log, MemoryStorage, type LogEntry } from '@orbitdb/core'

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
})
