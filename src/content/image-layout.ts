import { buildDirectory, putSmallFile, type BlockSink, type DagNode, type DirectoryEntry } from './unixfs-dag.ts'

export interface LayoutDescriptor {
  mediaType: string
  digest: string
  size: number
}

const OCI_LAYOUT_FILE = new TextEncoder().encode(JSON.stringify({ imageLayoutVersion: '1.0.0' }))

/**
 * Writes an image as an OCI Image Layout directory and returns the directory's node (D3):
 * `oci-layout`, `index.json` naming the top manifest (no tag annotation, so the CID does not
 * depend on the tag), and `blobs/<alg>/<hex>` linking every blob's existing DAG.
 * The same image gives the same CID on every node.
 */
export async function buildImageLayout (top: LayoutDescriptor, blobs: Map<string, DagNode>, sink: BlockSink): Promise<DagNode> {
  const index = { schemaVersion: 2, manifests: [{ mediaType: top.mediaType, digest: top.digest, size: top.size }] }
  const byAlgorithm = new Map<string, DirectoryEntry[]>()
  for (const [digest, node] of blobs) {
    const [algorithm = '', hex = ''] = digest.split(':')
    const entries = byAlgorithm.get(algorithm) ?? []
    entries.push({ name: hex, node })
    byAlgorithm.set(algorithm, entries)
  }
  const algorithmDirs: DirectoryEntry[] = []
  for (const [algorithm, entries] of byAlgorithm) algorithmDirs.push({ name: algorithm, node: await buildDirectory(entries, sink) })
  return await buildDirectory([
    { name: 'blobs', node: await buildDirectory(algorithmDirs, sink) },
    { name: 'index.json', node: await putSmallFile(new TextEncoder().encode(JSON.stringify(index)), sink) },
    { name: 'oci-layout', node: await putSmallFile(OCI_LAYOUT_FILE, sink) }
  ], sink)
}
