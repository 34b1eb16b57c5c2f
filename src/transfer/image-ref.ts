// The image names the transfer commands take, as skopeo spells them: `oci:DIR[:tag]`,
// `oci-archive:FILE[:tag]`, `docker-archive:FILE[:name:tag]`, `ipfs:<cid>`, and a registry's
// `[http(s)://][user:password@]host[:port]/repo[:tag|@digest]` (`docker://` taken too).
import { CID } from 'multiformats/cid'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import { isTag } from '../oci/names.ts'
import { nodeCredentials } from '../cli/api-client.ts'
import { IPFS_IMAGE_TAG, IPFS_REPOSITORY_PREFIX } from '../registry/ipfs-images.ts'
import type { RegistryRef } from './registry-endpoint.ts'

export class ImageRefError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'NAME_INVALID', status: 400, message: 'not an image reference' }
}

export type ImageRef =
  | { kind: 'oci', path: string, tag?: string }
  | { kind: 'oci-archive', path: string, tag?: string }
  | { kind: 'docker-archive', path: string, name?: string }
  | { kind: 'ipfs', cid: string }
  | { kind: 'registry', registry: RegistryRef }

const REPOSITORY = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/
const DIGEST = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/

/** `PATH[:tag]`: the tag is what follows the last colon when it is one (paths keep theirs). */
function pathAndTag (text: string): { path: string, tag?: string } {
  const colon = text.lastIndexOf(':')
  if (colon > 0 && isTag(text.slice(colon + 1))) return { path: text.slice(0, colon), tag: text.slice(colon + 1) }
  return { path: text }
}

/**
 * Parses a reference. `node`: the URL a bare `repo:tag` (and `ipfs:<cid>`) is read from, for the
 * commands that work on the local node; without it a registry reference needs its host.
 */
export function parseImageRef (text: string, options: { node?: string } = {}): ImageRef {
  const transport = /^([a-z-]+):(?!\/\/)(.*)$/.exec(text)
  if (transport !== null && ['oci', 'oci-archive', 'docker-archive', 'ipfs'].includes(transport[1]!)) {
    const [, kind = '', rest = ''] = transport
    if (rest === '') throw new ImageRefError(`${text}: ${kind}: names nothing`)
    if (kind === 'ipfs') {
      try {
        return { kind, cid: CID.parse(rest).toString() }
      } catch {
        throw new ImageRefError(`${text}: not a CID`)
      }
    }
    if (kind === 'docker-archive') {
      const colon = rest.indexOf(':')
      return colon < 0 ? { kind, path: rest } : { kind, path: rest.slice(0, colon), name: rest.slice(colon + 1) }
    }
    return { kind: kind as 'oci' | 'oci-archive', ...pathAndTag(rest) }
  }
  return { kind: 'registry', registry: parseRegistryRef(text, options.node) }
}

/** `[scheme://][user:pw@]host[:port]/repo[:tag|@digest]`, or `repo[:tag]` on `node`. */
export function parseRegistryRef (text: string, node?: string): RegistryRef {
  let rest = text.replace(/^docker:\/\//, '')
  let scheme: string | undefined
  const schemeMatch = /^(https?):\/\/(.*)$/.exec(rest)
  if (schemeMatch !== null) {
    scheme = schemeMatch[1]
    rest = schemeMatch[2]!
  }
  let credentials: RegistryRef['credentials']
  const at = rest.indexOf('@')
  const slash = rest.indexOf('/')
  if (at >= 0 && (slash < 0 || at < slash)) {
    const [username = '', password = ''] = rest.slice(0, at).split(':')
    credentials = { username: decodeURIComponent(username), password: decodeURIComponent(password) }
    rest = rest.slice(at + 1)
  }
  let reference = 'latest'
  const digestAt = rest.indexOf('@')
  if (digestAt >= 0) {
    reference = rest.slice(digestAt + 1)
    rest = rest.slice(0, digestAt)
    if (!DIGEST.test(reference)) throw new ImageRefError(`${text}: ${reference} is not a digest`)
  } else {
    const colon = rest.lastIndexOf(':')
    if (colon > rest.lastIndexOf('/')) {
      reference = rest.slice(colon + 1)
      rest = rest.slice(0, colon)
      if (!isTag(reference)) throw new ImageRefError(`${text}: ${reference} is not a tag`)
    }
  }
  const first = rest.split('/')[0] ?? ''
  // A first component with a dot, a colon or "localhost" is a host, as docker reads names.
  const hasHost = rest.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost')
  let url: string
  let repository: string
  /** Where the node's own credentials are read (the `--node` URL's, else SHOAL_USER). */
  let nodeUrl: URL
  if (hasHost) {
    const loopback = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/.test(first)
    url = `${scheme ?? (loopback ? 'http' : 'https')}://${first}`
    nodeUrl = new URL(url)
    repository = rest.slice(first.length + 1)
  } else {
    if (node === undefined) throw new ImageRefError(`${text}: name the registry (host:port/${rest})`)
    nodeUrl = new URL(node)
    url = nodeUrl.origin
    repository = rest
  }
  if (!REPOSITORY.test(repository)) throw new ImageRefError(`${text}: ${repository === '' ? 'no repository' : `${repository} is not a repository name`}`)
  credentials ??= userAndPassword(nodeCredentials(nodeUrl))
  return { url, repository, reference, ...(credentials === undefined ? {} : { credentials }) }
}

/** `user:password` split at its first colon (none: no credentials). */
function userAndPassword (given: string | undefined): RegistryRef['credentials'] {
  if (given === undefined || !given.includes(':')) return undefined
  const colon = given.indexOf(':')
  return { username: given.slice(0, colon), password: given.slice(colon + 1) }
}

/** `ipfs:<cid>` as the node serves it: the read-only repository `ipfs/<cid>`, tag `latest`. */
export function ipfsRegistryRef (cid: string, node: string): RegistryRef {
  return parseRegistryRef(`${IPFS_REPOSITORY_PREFIX}${cid}:${IPFS_IMAGE_TAG}`, node)
}

/** How a reference is shown in progress and errors. */
export function describeRef (ref: ImageRef): string {
  switch (ref.kind) {
    case 'registry': return `${new URL(ref.registry.url).host}/${ref.registry.repository}${ref.registry.reference.includes(':') ? '@' : ':'}${ref.registry.reference}`
    case 'ipfs': return `ipfs:${ref.cid}`
    case 'docker-archive': return `docker-archive:${ref.path}${ref.name === undefined ? '' : `:${ref.name}`}`
    default: return `${ref.kind}:${ref.path}${ref.tag === undefined ? '' : `:${ref.tag}`}`
  }
}
