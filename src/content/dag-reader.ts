import { Readable } from 'node:stream'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import * as raw from 'multiformats/codecs/raw'
import type { CID } from 'multiformats/cid'
import { chunkPool, type PooledBytes } from './chunk-pool.ts'
import { CHUNK_SIZE } from './unixfs-dag.ts'

/**
 * What a block read may wait on. A local read finishes soon and may ignore it; a read through
 * the mesh fetches from peers and stops when the signal aborts (the client that asked left).
 */
export interface BlockReadOptions {
  signal?: AbortSignal
}

/**
 * The block reads the readers need; FsBlockstore provides them, and so does the mesh for DAGs
 * peers hold. Whatever the source, the bytes answered are the block named by `cid`: a source
 * that cannot tell throws rather than answer another block.
 */
export interface BlockSource {
  getBytes(cid: CID, options?: BlockReadOptions): Promise<Uint8Array>
  getRange(cid: CID, start: number, end: number, into?: Buffer, options?: BlockReadOptions): Promise<Buffer>
}

/** Bytes [start, end] (inclusive) of a UnixFS file as a stream of fresh buffers. */
export function readFileRange (store: BlockSource, root: CID, start: number, end: number, signal?: AbortSignal): Readable {
  return Readable.from(copied(readFileChunks(store, root, start, end, signal)), { objectMode: false })
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
export async function * readFileChunks (store: BlockSource, cid: CID, start: number, end: number, signal?: AbortSignal): AsyncGenerator<PooledBytes> {
  for await (const segment of fileSegments(async block => await store.getBytes(block, { signal }), cid, start, end)) {
    signal?.throwIfAborted()
    if (segment.kind === 'inline') yield { bytes: segment.bytes, release: () => {} }
    else yield await readLeafRange(store, segment.cid, segment.start, segment.end, signal)
  }
}

/** Bytes [start, end] (inclusive) of one raw block, in a pooled buffer when they fit one. */
export async function readLeafRange (store: BlockSource, cid: CID, start: number, end: number, signal?: AbortSignal): Promise<PooledBytes> {
  if (end - start + 1 > CHUNK_SIZE) return { bytes: await store.getRange(cid, start, end, undefined, { signal }), release: () => {} }
  const buffer = chunkPool.take()
  try {
    const bytes = await store.getRange(cid, start, end, buffer, { signal })
    return { bytes, release: () => chunkPool.give(buffer) }
  } catch (err) {
    chunkPool.give(buffer)
    throw err
  }
}

/** One piece of a file's content: part of a raw leaf, or bytes held inside a dag-pb node. */
export type FileSegment =
  | { kind: 'leaf', cid: CID, start: number, end: number }
  | { kind: 'inline', bytes: Buffer }

/**
 * The pieces that make up bytes [start, end] (inclusive) of a UnixFS file, in order. Inner
 * nodes are read through `getBlock` (a local store, or a fetch from peers); leaves are only
 * named, so the caller decides how and when to read them.
 */
export async function * fileSegments (getBlock: (cid: CID) => Promise<Uint8Array>, cid: CID, start: number, end: number): AsyncGenerator<FileSegment> {
  if (end < start) return
  if (cid.code === raw.code) {
    yield { kind: 'leaf', cid, start, end }
    return
  }
  const node = fileNodeChildren(cid, await getBlock(cid))
  if (node.inline !== undefined && start < node.inline.length) {
    yield { kind: 'inline', bytes: node.inline.subarray(start, Math.min(end + 1, node.inline.length)) }
  }
  for (const child of node.children) {
    const childEnd = child.offset + child.size - 1
    if (childEnd < start) continue
    if (child.offset > end) break
    yield * fileSegments(getBlock, child.cid, Math.max(start, child.offset) - child.offset, Math.min(end, childEnd) - child.offset)
  }
}

/** A UnixFS file node's own content and its children, each with the span of file bytes it holds. */
export interface FileNodeChildren {
  /** Content held in the node itself (other importers' leaves); Shoal's own DAGs have none. */
  inline: Buffer | undefined
  /** `offset` is where the child's content starts within this node's content; `size` its length. */
  children: Array<{ cid: CID, offset: number, size: number }>
}

/** Decodes a dag-pb UnixFS file node: its links laid out by their blockSizes. */
export function fileNodeChildren (cid: CID, block: Uint8Array): FileNodeChildren {
  const node = dagPb.decode(block)
  if (node.Data == null) throw new Error(`block ${cid.toString()} is not a UnixFS node`)
  const unixfs = UnixFS.unmarshal(node.Data)
  const inline = unixfs.data != null && unixfs.data.length > 0 ? Buffer.from(unixfs.data) : undefined
  const children: FileNodeChildren['children'] = []
  let offset = unixfs.data?.length ?? 0
  for (let i = 0; i < node.Links.length; i++) {
    const link = node.Links[i]
    if (link === undefined) break
    const size = Number(unixfs.blockSizes[i] ?? 0n)
    // A child with no content contributes no bytes to any range.
    if (size > 0) children.push({ cid: link.Hash, offset, size })
    offset += size
  }
  return { inline, children }
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
    const bytes = await store.getBytes(cid, { signal })
    yield { cid, bytes }
    if (cid.code === dagPb.code) {
      const links = dagPb.decode(bytes).Links
      for (let i = links.length - 1; i >= 0; i--) stack.push((links[i] as dagPb.PBLink).Hash)
    }
  }
}

/** Looks a path up in a UnixFS directory DAG (flat directories only). */
export async function resolvePath (store: BlockSource, root: CID, path: string[], signal?: AbortSignal): Promise<CID | undefined> {
  return (await resolveLink(store, root, path, signal))?.cid
}

/** Like resolvePath, with the link's Tsize (the DAG size under it) as well. */
export async function resolveLink (store: BlockSource, root: CID, path: string[], signal?: AbortSignal): Promise<{ cid: CID, dagSize: number } | undefined> {
  let found = { cid: root, dagSize: 0 }
  for (const name of path) {
    if (found.cid.code !== dagPb.code) return undefined
    const node = dagPb.decode(await store.getBytes(found.cid, { signal }))
    const link = node.Links.find(l => l.Name === name)
    if (link === undefined) return undefined
    found = { cid: link.Hash, dagSize: link.Tsize ?? 0 }
  }
  return found
}

/** The content size of a UnixFS file. */
export async function fileSize (store: BlockSource, cid: CID, signal?: AbortSignal): Promise<number> {
  if (cid.code === raw.code) return (await store.getBytes(cid, { signal })).length
  const node = dagPb.decode(await store.getBytes(cid, { signal }))
  if (node.Data == null) throw new Error(`block ${cid.toString()} is not a UnixFS node`)
  return Number(UnixFS.unmarshal(node.Data).fileSize())
}

/** A whole small file (manifests, index.json) in memory. */
export async function readSmallFile (store: BlockSource, cid: CID, size?: number, signal?: AbortSignal): Promise<Buffer> {
  const length = size ?? await fileSize(store, cid, signal)
  const chunks: Buffer[] = []
  for await (const chunk of readFileRange(store, cid, 0, length - 1, signal)) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}
