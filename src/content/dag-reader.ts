import { Readable } from 'node:stream'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import * as raw from 'multiformats/codecs/raw'
import type { CID } from 'multiformats/cid'
import { chunkPool, type PooledBytes } from './chunk-pool.ts'
import { CHUNK_SIZE } from './unixfs-dag.ts'

/** The block reads the readers need; FsBlockstore provides them. */
export interface BlockSource {
  getBytes(cid: CID): Promise<Uint8Array>
  getRange(cid: CID, start: number, end: number, into?: Buffer): Promise<Buffer>
}

/** Bytes [start, end] (inclusive) of a UnixFS file as a stream of fresh buffers. */
export function readFileRange (store: BlockSource, root: CID, start: number, end: number): Readable {
  return Readable.from(copied(readFileChunks(store, root, start, end)), { objectMode: false })
}

async function * copied (chunks: AsyncIterable<PooledBytes>): AsyncGenerator<Buffer> {
  for await (const chunk of chunks) {
    const bytes = Buffer.from(chunk.bytes)
    chunk.release()
    yield bytes
  }
}

/**
 * Bytes [start, end] (inclusive) of a UnixFS file, in pooled buffers, reading only the leaves
 * that overlap and only the overlapping part of each. The consumer releases every chunk.
 */
export async function * readFileChunks (store: BlockSource, cid: CID, start: number, end: number): AsyncGenerator<PooledBytes> {
  if (end < start) return
  if (cid.code === raw.code) {
    if (end - start + 1 <= CHUNK_SIZE) {
      const buffer = chunkPool.take()
      try {
        const bytes = await store.getRange(cid, start, end, buffer)
        yield { bytes, release: () => chunkPool.give(buffer) }
      } catch (err) {
        chunkPool.give(buffer)
        throw err
      }
    } else {
      yield { bytes: await store.getRange(cid, start, end), release: () => {} }
    }
    return
  }
  const node = dagPb.decode(await store.getBytes(cid))
  if (node.Data == null) throw new Error(`block ${cid.toString()} is not a UnixFS node`)
  const unixfs = UnixFS.unmarshal(node.Data)
  if (unixfs.data != null && unixfs.data.length > 0) {
    // Inline data (other importers' leaves); Shoal's own DAGs have none.
    const inline = Buffer.from(unixfs.data)
    if (start < inline.length) yield { bytes: inline.subarray(start, Math.min(end + 1, inline.length)), release: () => {} }
  }
  let offset = unixfs.data?.length ?? 0
  for (let i = 0; i < node.Links.length; i++) {
    const size = Number(unixfs.blockSizes[i] ?? 0n)
    const childStart = offset
    const childEnd = offset + size - 1
    offset += size
    if (childEnd < start) continue
    if (childStart > end) break
    const link = node.Links[i]
    if (link === undefined) break
    yield * readFileChunks(store, link.Hash, Math.max(start, childStart) - childStart, Math.min(end, childEnd) - childStart)
  }
}

/** Every block of a DAG (dag-pb and raw), depth first, each once: the order of a CAR. */
export async function * walkDag (store: BlockSource, root: CID, signal?: AbortSignal): AsyncGenerator<{ cid: CID, bytes: Uint8Array }> {
  const seen = new Set<string>()
  const stack: CID[] = [root]
  while (stack.length > 0) {
    signal?.throwIfAborted()
    const cid = stack.pop() as CID
    const key = cid.toString()
    if (seen.has(key)) continue
    seen.add(key)
    const bytes = await store.getBytes(cid)
    yield { cid, bytes }
    if (cid.code === dagPb.code) {
      const links = dagPb.decode(bytes).Links
      for (let i = links.length - 1; i >= 0; i--) stack.push((links[i] as dagPb.PBLink).Hash)
    }
  }
}

/** Looks a path up in a UnixFS directory DAG (flat directories only). */
export async function resolvePath (store: BlockSource, root: CID, path: string[]): Promise<CID | undefined> {
  let cid = root
  for (const name of path) {
    if (cid.code !== dagPb.code) return undefined
    const node = dagPb.decode(await store.getBytes(cid))
    const link = node.Links.find(l => l.Name === name)
    if (link === undefined) return undefined
    cid = link.Hash
  }
  return cid
}

/** The content size of a UnixFS file. */
export async function fileSize (store: BlockSource, cid: CID): Promise<number> {
  if (cid.code === raw.code) return (await store.getBytes(cid)).length
  const node = dagPb.decode(await store.getBytes(cid))
  if (node.Data == null) throw new Error(`block ${cid.toString()} is not a UnixFS node`)
  return Number(UnixFS.unmarshal(node.Data).fileSize())
}

/** A whole small file (manifests, index.json) in memory. */
export async function readSmallFile (store: BlockSource, cid: CID, size?: number): Promise<Buffer> {
  const length = size ?? await fileSize(store, cid)
  const chunks: Buffer[] = []
  for await (const chunk of readFileRange(store, cid, 0, length - 1)) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}
