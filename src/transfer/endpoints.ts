// The source or destination a reference names (transfer/image-ref.ts).
import { dockerArchiveSource, DockerArchiveDestination, ociArchiveSource, OciArchiveDestination } from './archive-endpoints.ts'
import type { ImageDestination, ImageSource } from './image-copy.ts'
import { ImageRefError, ipfsRegistryRef, type ImageRef } from './image-ref.ts'
import { LayoutDestination, LayoutSource } from './layout-endpoint.ts'
import { RegistryDestination, RegistrySource } from './registry-endpoint.ts'
import type { UploadJournal } from './upload-journal.ts'

export function openSource (ref: ImageRef, options: { node?: string, signal?: AbortSignal } = {}): ImageSource {
  switch (ref.kind) {
    case 'oci': return new LayoutSource(ref.path, ref.tag)
    case 'oci-archive': return ociArchiveSource(ref.path, ref.tag, options.signal)
    case 'docker-archive': return dockerArchiveSource(ref.path, ref.name, options.signal)
    case 'registry': return new RegistrySource(ref.registry)
    case 'ipfs':
      if (options.node === undefined) throw new ImageRefError(`ipfs:${ref.cid}: name the node that reads it (--node)`)
      return new RegistrySource(ipfsRegistryRef(ref.cid, options.node))
  }
}

/** The tag a file destination gives the image when its reference names none: the source's. */
export function sourceTag (ref: ImageRef): string | undefined {
  switch (ref.kind) {
    case 'registry': return ref.registry.reference.includes(':') ? undefined : ref.registry.reference
    case 'ipfs': return 'latest'
    case 'docker-archive': return ref.name?.slice(ref.name.lastIndexOf(':') + 1)
    default: return ref.tag
  }
}

/** `repo:tag` for a docker archive's RepoTags, from the source's name. */
function sourceName (ref: ImageRef): string | undefined {
  if (ref.kind === 'registry') return ref.registry.reference.includes(':') ? undefined : `${ref.registry.repository}:${ref.registry.reference}`
  if (ref.kind === 'docker-archive') return ref.name
  return undefined
}

export function openDestination (ref: ImageRef, source: ImageRef, options: { journal?: UploadJournal } = {}): ImageDestination {
  switch (ref.kind) {
    case 'oci': return new LayoutDestination(ref.path, ref.tag ?? sourceTag(source))
    case 'oci-archive': return new OciArchiveDestination(ref.path, ref.tag ?? sourceTag(source))
    case 'docker-archive': return new DockerArchiveDestination(ref.path, ref.name ?? sourceName(source))
    case 'registry': return new RegistryDestination(ref.registry, options.journal === undefined ? {} : { journal: options.journal })
    case 'ipfs': throw new ImageRefError(`ipfs:${ref.cid}: an image CID is read, not written (push to a node, then its CID names it)`)
  }
}
