// One conformance suite for every BlockSource: the node's own store, the fleet's content read
// through RemoteContent (blocks fetched from a real node over HTTP), and a block handed on by a
// relay. Each answers for the CID it is asked for: the bytes it gives are that block (they hash
// to the CID), a range is that block's range, and a CID it lacks is an error, never another block.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { after, before, describe, it } from 'node:test'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { pino } from 'pino'
import type { BlockSource } from '../../src/content/dag-reader.ts'
import { BlockFetcher, type Provider } from '../../src/mesh/block-fetcher.ts'
import { relayedBlock } from '../../src/mesh/relayed-block.ts'
import { RemoteContent, type ProviderFinder } from '../../src/mesh/remote-content.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { Scratch } from '../support/scratch.ts'

const MiB = 1024 * 1024

/** What a suite run needs of one implementation. */
interface Subject {
  source: BlockSource
  /** Blocks the source can answer for, with their bytes. */
  blocks: Array<{ cid: CID, bytes: Uint8Array }>
  /** CIDs the source cannot answer for. */
  absent: CID[]
  /** Blocks whose bytes the source is offered wrong (a lying peer); each read must fail. */
  tampered?: CID[]
  /** A block the source would have to wait for (fetch from a peer); none for a local source. */
  waitsFor?: CID
}

async function rawBlock (bytes: Uint8Array): Promise<{ cid: CID, bytes: Uint8Array }> {
  return { cid: CID.createV1(raw.code, await sha256.digest(bytes)), bytes }
}

function hashesTo (cid: CID, bytes: Uint8Array): boolean {
  return createHash('sha256').update(bytes).digest().equals(Buffer.from(cid.multihash.digest))
}

/** The suite every BlockSource runs. */
function conforms (name: string, make: () => Promise<Subject>): void {
  describe(`BlockSource conformance: ${name}`, () => {
    let subject: Subject
    before(async () => { subject = await make() })

    it('answers each block it has with bytes that hash to the CID asked for', async () => {
      for (const { cid, bytes } of subject.blocks) {
        const got = await subject.source.getBytes(cid)
        assert.ok(hashesTo(cid, got), `${cid.toString()}: the bytes are that block`)
        assert.ok(Buffer.from(got).equals(Buffer.from(bytes)))
      }
    })

    it('answers a range with exactly that range of the block, into a buffer when given one', async () => {
      for (const { cid, bytes } of subject.blocks) {
        const start = Math.floor(bytes.length / 3)
        const end = bytes.length - 2
        const expected = Buffer.from(bytes).subarray(start, end + 1)
        assert.ok((await subject.source.getRange(cid, start, end)).equals(expected), `${cid.toString()} range`)
        const into = Buffer.alloc(bytes.length)
        assert.ok((await subject.source.getRange(cid, start, end, into)).equals(expected), `${cid.toString()} range into a buffer`)
      }
    })

    it('refuses a CID it does not have, for whole blocks and ranges alike', async () => {
      for (const cid of subject.absent) {
        await assert.rejects(subject.source.getBytes(cid), `${cid.toString()} is refused`)
        await assert.rejects(subject.source.getRange(cid, 0, 0), `${cid.toString()} range is refused`)
      }
    })

    it('never answers wrong bytes as the CID asked for', async () => {
      for (const cid of subject.tampered ?? []) {
        await assert.rejects(subject.source.getBytes(cid), `${cid.toString()}: wrong bytes are refused`)
      }
    })

    it('stops a read that would wait once its signal has aborted, and answers it after', async () => {
      const cid = subject.waitsFor
      // A source that never waits (local disk, a block in hand) has nothing to stop.
      if (cid === undefined) return
      await assert.rejects(subject.source.getBytes(cid, { signal: AbortSignal.abort() }), { name: 'AbortError' })
      assert.ok(hashesTo(cid, await subject.source.getBytes(cid, { signal: AbortSignal.timeout(10_000) })))
    })
  })
}

const scratch = new Scratch()
let seeder: TestNode | undefined

after(async () => {
  await scratch.cleanup()
  await seeder?.stop()
})

/** The fleet's answers reduced to fixed providers: what is under test is the source, not the lookup. */
function fixedProviders (providers: Provider[]): ProviderFinder {
  return {
    providersOf: async () => providers,
    rankedProviders: (_root, seeders) => seeders,
    announcePull: async () => {},
    ranksAbove: () => false,
    stopProviding: async () => {},
    heldChanged: () => {}
  }
}

conforms('FsBlockstore (the node\'s own blocks)', async () => {
  const store = await scratch.blockstore()
  const leaf = await rawBlock(randomBytes(300_000))
  const nodeBytes = dagPb.encode(dagPb.prepare({ Links: [{ Hash: leaf.cid, Name: 'leaf', Tsize: leaf.bytes.length }] }))
  const node = { cid: CID.createV1(dagPb.code, await sha256.digest(nodeBytes)), bytes: nodeBytes }
  // A block whose file came to hold other bytes (same length) on disk.
  const rotten = await rawBlock(randomBytes(100_000))
  for (const block of [leaf, node, rotten]) await store.put(block.cid, block.bytes)
  await writeFile(store.pathOf(rotten.cid), Buffer.from(rotten.bytes).map(byte => byte ^ 0xff))
  return { source: store, blocks: [leaf, node], absent: [(await rawBlock(randomBytes(64))).cid], tampered: [rotten.cid] }
})

conforms('RemoteContent (blocks a peer holds, fetched over HTTP)', async () => {
  seeder = await startTestNode()
  const blob = randomBytes(2 * MiB + 12_345)
  const digest = await new RegistryClient(seeder.url).pushBlob('conformance/blob', blob)
  const root = CID.parse((await seeder.node.metadata.getBlob(digest))?.cid ?? '')
  const rootBytes = await seeder.node.blockstore.getBytes(root)
  const blocks = [{ cid: root, bytes: rootBytes }]
  const links = dagPb.decode(rootBytes).Links.map(link => link.Hash)
  // The last leaf is kept for the abort case: nothing reads it before.
  const waitsFor = links.pop()
  for (const link of links) blocks.push({ cid: link, bytes: await seeder.node.blockstore.getBytes(link) })

  const store = await scratch.blockstore()
  const remote = (providers: Provider[]): RemoteContent => new RemoteContent({
    fetcher: new BlockFetcher({ blockstore: store, retryDelayMs: 10 }),
    blockstore: store,
    finder: fixedProviders(providers),
    logger: pino({ level: 'silent' })
  })
  // A peer that answers every block request with bytes that are not the block.
  const liar = await scratch.liar()
  const honest = remote([{ id: 'seeder', url: seeder.url }]).source(root)
  const lied = remote([liar]).source(root)
  const tampered = await rawBlock(randomBytes(4096))
  return {
    // Reads of the tampered block go to the liar; everything else to the honest seeder.
    source: {
      getBytes: async (cid, options) => await (cid.equals(tampered.cid) ? lied : honest).getBytes(cid, options),
      getRange: async (cid, start, end, into, options) => await (cid.equals(tampered.cid) ? lied : honest).getRange(cid, start, end, into, options)
    },
    blocks,
    absent: [(await rawBlock(randomBytes(64))).cid],
    tampered: [tampered.cid],
    waitsFor
  }
})

conforms('a relayed block (handed on by a peer that is receiving it)', async () => {
  const block = await rawBlock(randomBytes(200_000))
  const other = await rawBlock(randomBytes(200_000))
  return { source: relayedBlock(block.cid, block.bytes), blocks: [block], absent: [other.cid] }
})
