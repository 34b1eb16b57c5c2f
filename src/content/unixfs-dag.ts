// Builds UnixFS DAG nodes exactly as ipfs-unixfs-importer does under the IPIP-499
// `unixfs-v1-2025` profile (CIDv1, sha2-256, raw leaves, 1 MiB chunks, balanced layout,
// at most 1024 links per node). Shoal cuts leaves itself, as bytes arrive across requests,
// so it needs the importer's tree-building rules without its single-stream API.
// test/content/unixfs-dag.test.ts checks both give the same CIDs.
import { encode, prepare, type PBLink } from '@ipld/dag-pb'
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { createHash } from 'node:crypto'
import { UnsupportedError } from '../oci/errors.ts'

export const CHUNK_SIZE = 1024 * 1024
export const MAX_LINKS_PER_NODE = 1024
/** Above this encoded size the importer would shard a directory (HAMT); Shoal refuses instead. */
export const MAX_FLAT_DIRECTORY_BYTES = 262_144
const SHA2_256 = 0x12

/** A node of a DAG: its CID and the cumulative size of the DAG under it (dag-pb Tsize). */
export interface DagNode {
  cid: CID
  /** Bytes of every block under and including this one. */
  dagSize: number
  /** For file nodes: bytes of file content under this node. */
  fileSize: number
}

export interface BlockSink {
  /** Resolves once the block is durable; `onWritten` may come earlier, when `bytes` can be reused. */
  put(cid: CID, bytes: Uint8Array, options?: { onWritten?: () => void }): Promise<unknown>
}

/**
 * A sink that starts every put at once and lets the caller wait for all of them: a DAG's
 * CIDs are known before its blocks are durable, so its fsyncs need not run one by one.
 */
export class ParallelPuts implements BlockSink {
  private readonly sink: BlockSink
  private readonly pending: Array<Promise<unknown>> = []

  constructor (sink: BlockSink) {
    this.sink = sink
  }

  async put (cid: CID, bytes: Uint8Array): Promise<void> {
    this.pending.push(this.sink.put(cid, bytes))
  }

  /** Resolves once every block put so far is durable. */
  async flush (): Promise<void> {
    await Promise.all(this.pending)
  }
}

export function sha256Cid (codec: number, bytes: Uint8Array): CID {
  return CID.createV1(codec, createDigest(SHA2_256, createHash('sha256').update(bytes).digest()))
}

export function rawCid (bytes: Uint8Array): CID {
  return sha256Cid(raw.code, bytes)
}

/** The CID of a ≤ 1 MiB blob, from its sha256 OCI digest alone (D2). */
export function rawCidFromSha256Hex (hex: string): CID {
  return CID.createV1(raw.code, createDigest(SHA2_256, Buffer.from(hex, 'hex')))
}

/** Assembles a file DAG over raw leaves given in order; stores the inner nodes. */
export async function buildFileDag (leaves: DagNode[], sink: BlockSink): Promise<DagNode> {
  if (leaves.length === 0) throw new Error('a file has at least one leaf')
  // The importer keeps a lone leaf as the file itself (reduceSingleLeafToSelf).
  if (leaves.length === 1) return leaves[0] as DagNode
  let level = leaves
  do {
    const parents: DagNode[] = []
    for (let i = 0; i < level.length; i += MAX_LINKS_PER_NODE) {
      parents.push(await fileNode(level.slice(i, i + MAX_LINKS_PER_NODE), sink))
    }
    level = parents
  } while (level.length > 1)
  return level[0] as DagNode
}

async function fileNode (children: DagNode[], sink: BlockSink): Promise<DagNode> {
  const unixfs = new UnixFS({ type: 'file' })
  const links: PBLink[] = []
  for (const child of children) {
    if (child.fileSize === 0) continue
    unixfs.addBlockSize(BigInt(child.fileSize))
    links.push({ Name: '', Tsize: child.dagSize, Hash: child.cid })
  }
  const block = encode(prepare({ Data: unixfs.marshal(), Links: links }))
  const cid = sha256Cid(dagPb.code, block)
  await sink.put(cid, block)
  return {
    cid,
    dagSize: block.length + links.reduce((sum, link) => sum + (link.Tsize ?? 0), 0),
    fileSize: children.reduce((sum, child) => sum + child.fileSize, 0)
  }
}

/** One entry of a directory: a name and the node it links to. */
export interface DirectoryEntry {
  name: string
  node: DagNode
}

/** A flat UnixFS directory node, linked in name order as dag-pb requires. */
export async function buildDirectory (entries: DirectoryEntry[], sink: BlockSink): Promise<DagNode> {
  const links: PBLink[] = entries.map(({ name, node }) => ({ Name: name, Tsize: node.dagSize, Hash: node.cid }))
  const block = encode(prepare({ Data: new UnixFS({ type: 'directory' }).marshal(), Links: links }))
  if (block.length > MAX_FLAT_DIRECTORY_BYTES) {
    throw new UnsupportedError(`directory of ${entries.length} entries would need HAMT sharding`)
  }
  const cid = sha256Cid(dagPb.code, block)
  await sink.put(cid, block)
  return { cid, dagSize: block.length + links.reduce((sum, link) => sum + (link.Tsize ?? 0), 0), fileSize: 0 }
}

/** Stores small content as a single raw leaf (≤ 1 MiB), as the importer would. */
export async function putSmallFile (bytes: Uint8Array, sink: BlockSink): Promise<DagNode> {
  if (bytes.length > CHUNK_SIZE) throw new Error('putSmallFile takes at most one chunk')
  const cid = rawCid(bytes)
  await sink.put(cid, bytes)
  return { cid, dagSize: bytes.length, fileSize: bytes.length }
}
