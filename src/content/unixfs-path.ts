// UnixFS nodes as the gateway reads them: what a block is (file or directory), and the walk of a
// path (`/ipfs/<cid>/a/b`) from a root through directory entries by name. Shoal only writes flat
// directories (unixfs-dag.ts refuses to shard), so HAMT-sharded ones are refused here too.
import * as dagPb from '@ipld/dag-pb'
import { UnixFS } from 'ipfs-unixfs'
import type { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import type { BlockSource } from './dag-reader.ts'

/** A path with no such entry, or one that goes on through a file. */
export class PathNotFoundError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'PATH_NOT_FOUND', status: 404, message: 'no such path below the CID' }
}
/** Content that is not UnixFS where UnixFS is needed (a file's bytes, a tar). */
export class NotUnixfsError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'FORMAT_UNACCEPTABLE', status: 406, message: 'not UnixFS: ask for ?format=raw or ?format=car' }
}
/** UnixFS this node does not read: HAMT-sharded directories, symlinks, pathing into other codecs. */
export class UnixfsUnsupportedError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NOT_IMPLEMENTED', status: 501, message: 'this UnixFS node type is not supported' }
}

export interface DirectoryLink { name: string, cid: CID }

/** What a UnixFS block is; `block` is its bytes as read. */
export type UnixfsNode =
  | { kind: 'file', cid: CID, block: Uint8Array, size: number, mode: number, mtime: number }
  | { kind: 'directory', cid: CID, block: Uint8Array, links: DirectoryLink[], mode: number, mtime: number }

export type UnixfsFile = Extract<UnixfsNode, { kind: 'file' }>

const DEFAULT_FILE_MODE = 0o644

/** Reads and classifies one node; `where` names it in errors (`/ipfs/<cid>/path`). */
export async function readUnixfsNode (source: BlockSource, cid: CID, where: string, signal?: AbortSignal): Promise<UnixfsNode> {
  const block = await source.getBytes(cid, { signal })
  // A raw block is a whole file (raw leaves, and blobs of one chunk).
  if (cid.code === raw.code) return { kind: 'file', cid, block, size: block.length, mode: DEFAULT_FILE_MODE, mtime: 0 }
  if (cid.code !== dagPb.code) throw new NotUnixfsError(`${where} is not UnixFS (codec 0x${cid.code.toString(16)})`)
  let links: dagPb.PBLink[]
  let unixfs: UnixFS
  try {
    const node = dagPb.decode(block)
    if (node.Data === undefined) throw new Error('no Data')
    links = node.Links
    unixfs = UnixFS.unmarshal(node.Data)
  } catch {
    throw new NotUnixfsError(`${where} is dag-pb but not a UnixFS node`)
  }
  const mtime = unixfs.mtime === undefined ? 0 : Number(unixfs.mtime.secs)
  switch (unixfs.type) {
    case 'file':
    case 'raw':
      return { kind: 'file', cid, block, size: Number(unixfs.fileSize()), mode: unixfs.mode ?? DEFAULT_FILE_MODE, mtime }
    case 'directory':
      return { kind: 'directory', cid, block, links: links.map(link => ({ name: link.Name ?? '', cid: link.Hash })), mode: unixfs.mode ?? 0o755, mtime }
    case 'hamt-sharded-directory':
      throw new UnixfsUnsupportedError(`${where} is a HAMT-sharded directory, which this node does not read`)
    default:
      throw new UnixfsUnsupportedError(`${where} is a UnixFS ${unixfs.type}, which this node does not serve`)
  }
}

/** Where a path led: the node at its end, and every node read on the way. */
export interface ResolvedPath {
  /** The CID at the end of the path (the root itself for an empty path). */
  cid: CID
  /** The root and the directories walked through, in order, with their bytes (what a CAR of the path starts with). */
  traversed: Array<{ cid: CID, bytes: Uint8Array }>
}

/**
 * Follows `segments` (decoded names) from `root` through UnixFS directories. The node at the end
 * is not read: a raw block or a CAR does not need it to be UnixFS.
 */
export async function resolveUnixfsPath (source: BlockSource, root: CID, segments: string[], signal?: AbortSignal): Promise<ResolvedPath> {
  const traversed: ResolvedPath['traversed'] = []
  let cid = root
  let where = `/ipfs/${root.toString()}`
  for (const segment of segments) {
    if (cid.code !== dagPb.code && cid.code !== raw.code) throw new UnixfsUnsupportedError(`${where} is not UnixFS (codec 0x${cid.code.toString(16)}): paths below it are not resolved`)
    const node = await readUnixfsNode(source, cid, where, signal).catch((err: unknown) => {
      // dag-pb that is not UnixFS has links, but no names this node walks.
      throw err instanceof NotUnixfsError ? new UnixfsUnsupportedError(`${err.message}: paths below it are not resolved`) : err
    })
    if (node.kind === 'file') throw new PathNotFoundError(`${where} is a file: there is no ${JSON.stringify(segment)} below it`)
    const link = node.links.find(l => l.name === segment)
    if (link === undefined) throw new PathNotFoundError(`${where} has no entry ${JSON.stringify(segment)}`)
    traversed.push({ cid, bytes: node.block })
    cid = link.cid
    where = `${where}/${encodeURIComponent(segment)}`
  }
  return { cid, traversed }
}
