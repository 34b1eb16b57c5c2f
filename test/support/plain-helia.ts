// A plain helia node, not Shoal: helia with bitswap on libp2p (TCP, noise, yamux, identify), as
// any JavaScript IPFS node runs it; a pre-shared key when the mesh it talks to has one. Used by
// the bitswap interop tests and bench/bitswap.ts.
import { readdir, readFile } from 'node:fs/promises'
import { join, relative } from 'node:path'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { withBitswap } from '@helia/bitswap'
import { withLibp2pLight } from '@helia/libp2p'
import * as dagPb from '@ipld/dag-pb'
import { identify } from '@libp2p/identify'
import { preSharedKey } from '@libp2p/pnet'
import { tcp } from '@libp2p/tcp'
import { multiaddr } from '@multiformats/multiaddr'
import { createHeliaLight } from 'helia'
import { importer, type ImportCandidate } from 'ipfs-unixfs-importer'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'
import type { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'

const MiB = 1024 * 1024

export async function startPlainHelia (options: { swarmKey?: Uint8Array } = {}) {
  const helia = withBitswap(withLibp2pLight(createHeliaLight(), {
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionProtector: options.swarmKey === undefined ? undefined : preSharedKey({ psk: options.swarmKey }),
    services: { identify: identify() }
  }))
  await helia.start()
  return helia
}

export type PlainHelia = Awaited<ReturnType<typeof startPlainHelia>>

/** Connects `helia` to the peer at `address` (a multiaddr ending in /p2p/<id>). */
export async function dial (helia: PlainHelia, address: string): Promise<void> {
  await helia.libp2p.dial(multiaddr(address), { signal: AbortSignal.timeout(10_000) })
}

/** What `helia` imports as @helia/unixfs would with Shoal's profile: CIDv1, 1 MiB raw leaves. */
const IMPORT_OPTIONS = { cidVersion: 1, rawLeaves: true, chunker: fixedSize({ chunkSize: MiB }), layout: balanced({ maxChildrenPerNode: 1024 }) } as const

/** Adds `bytes` as a UnixFS file to `helia`'s blockstore; its root CID. */
export async function addFile (helia: PlainHelia, bytes: Uint8Array | AsyncIterable<Uint8Array>): Promise<CID> {
  let root: CID | undefined
  for await (const entry of importer([{ content: bytes }], helia.blockstore, IMPORT_OPTIONS)) root = entry.cid
  if (root === undefined) throw new Error('nothing imported')
  return root
}

/** Adds the directory tree at `dir` (e.g. an OCI image layout) as UnixFS; the root directory's CID. */
export async function addDirectory (helia: PlainHelia, dir: string): Promise<CID> {
  const files: ImportCandidate[] = []
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    files.push({ path: relative(dir, path), content: await readFile(path) })
  }
  let root: CID | undefined
  for await (const entry of importer(files, helia.blockstore, { ...IMPORT_OPTIONS, wrapWithDirectory: true })) root = entry.cid
  if (root === undefined) throw new Error('nothing imported')
  return root
}

/**
 * Every block of the DAG under `root`, through helia's blockstore: fetched over bitswap from
 * the connected peers when `helia` lacks it, and checked against its CID by helia, and here as
 * well unless `verify` is false (the benchmark: helia's own check is what a plain node does).
 */
export async function fetchDag (helia: PlainHelia, root: CID, signal: AbortSignal, concurrency = 8, verify = true): Promise<{ blocks: number, bytes: number }> {
  let blocks = 0
  let bytes = 0
  const queue: CID[] = [root]
  const seen = new Set([root.toString()])
  const worker = async (): Promise<void> => {
    for (let cid = queue.shift(); cid !== undefined; cid = queue.shift()) {
      const block = await getBlock(helia, cid, signal, verify)
      blocks++
      bytes += block.length
      if (cid.code !== dagPb.code) continue
      for (const link of dagPb.decode(block).Links) {
        if (seen.has(link.Hash.toString())) continue
        seen.add(link.Hash.toString())
        queue.push(link.Hash)
      }
    }
  }
  // Workers leave when the queue is empty for a moment; the last one's links keep it going.
  while (queue.length > 0) await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, worker))
  return { blocks, bytes }
}

/** One block, from helia's store or over bitswap, whose bytes hash to its CID (or it throws). */
export async function getBlock (helia: PlainHelia, cid: CID, signal: AbortSignal, verify = true): Promise<Uint8Array> {
  const chunks: Uint8Array[] = []
  for await (const chunk of helia.blockstore.get(cid, { signal })) chunks.push(chunk)
  const block = Buffer.concat(chunks)
  if (!verify) return block
  const digest = await sha256.digest(block)
  if (cid.multihash.code !== sha256.code || !Buffer.from(digest.digest).equals(cid.multihash.digest)) throw new Error(`block ${cid.toString()} does not match its CID`)
  return block
}
