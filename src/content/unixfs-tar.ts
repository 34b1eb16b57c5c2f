// A UnixFS file or directory tree as a tar stream (the gateway's `?format=tar`, IPIP-288): depth
// first in link order, each file read leaf by leaf as the archive is consumed, never held whole.
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { pack, type Pack } from 'tar-stream'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import type { BlockSource } from './dag-reader.ts'
import { fileBytes } from './unixfs-file.ts'
import { readUnixfsNode, type UnixfsNode } from './unixfs-path.ts'

/**
 * A name that would land outside the archive's root when extracted (`..`, a '/'): IPIP-288 has
 * the download fail rather than carry it. Found mid-stream, it cuts the response.
 */
export class UnsafeTarNameError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NAME_UNSAFE', status: 400, message: 'an entry name is not safe in a tar archive' }
}

/** Refuses a name that is not one plain path segment. */
export function assertSafeTarName (name: string, where: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\u0000')) {
    throw new UnsafeTarNameError(`${where} holds the entry ${JSON.stringify(name)}, which is not safe in a tar archive: ask for ?format=car`)
  }
}

/**
 * The archive of `node` (already read: the caller decides before any byte goes out whether it is
 * UnixFS at all), named `name` at the archive's top; `where` is its /ipfs path, for errors.
 * A failure part way destroys the archive, so its reader sees an error, never a short tar that
 * looks whole. Leaving the iteration early stops the walk (with `signal`, the reads in flight).
 */
export async function * unixfsTar (source: BlockSource, node: UnixfsNode, name: string, where: string, signal: AbortSignal): AsyncGenerator<Buffer> {
  assertSafeTarName(name, where)
  const archive = pack()
  void (async () => {
    try {
      await addEntries(archive, source, node, name, where, signal)
      archive.finalize()
    } catch (err) {
      archive.destroy(err as Error)
    }
  })()
  for await (const chunk of archive) yield chunk as Buffer
}

async function addEntries (archive: Pack, source: BlockSource, node: UnixfsNode, name: string, where: string, signal: AbortSignal): Promise<void> {
  const mtime = new Date(node.mtime * 1000)
  if (node.kind === 'file') {
    const entry = archive.entry({ name, type: 'file', size: node.size, mode: node.mode, mtime })
    // Not object mode: a leaf at a time waits for the archive's reader.
    await pipeline(Readable.from(fileBytes(source, node, 0, node.size - 1, signal), { objectMode: false }), entry, { signal })
    return
  }
  await new Promise<void>((resolve, reject) => {
    archive.entry({ name: `${name}/`, type: 'directory', mode: node.mode, mtime }, err => { if (err == null) resolve(); else reject(err) })
  })
  for (const link of node.links) {
    assertSafeTarName(link.name, where)
    const childWhere = `${where}/${encodeURIComponent(link.name)}`
    await addEntries(archive, source, await readUnixfsNode(source, link.cid, childWhere, signal), `${name}/${link.name}`, childWhere, signal)
  }
}
