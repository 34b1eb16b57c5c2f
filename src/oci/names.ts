import { NameInvalidError, TagInvalidError } from './errors.ts'
import { parseDigest } from './digest.ts'

// From the OCI Distribution spec.
const NAME_PATTERN = /^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$/
const TAG_PATTERN = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/
const MAX_NAME_LENGTH = 255

export function assertRepositoryName (name: string): void {
  if (name.length > MAX_NAME_LENGTH || !NAME_PATTERN.test(name)) {
    throw new NameInvalidError(`invalid repository name: ${JSON.stringify(name)}`)
  }
}

export function isTag (text: string): boolean {
  return TAG_PATTERN.test(text)
}

export function assertTag (tag: string): void {
  if (!isTag(tag)) throw new TagInvalidError(`invalid tag: ${JSON.stringify(tag)}`)
}

/** A manifest reference is a tag or a digest. */
export type Reference = { kind: 'tag', tag: string } | { kind: 'digest', digest: string }

export function parseReference (text: string): Reference {
  if (text.includes(':')) return { kind: 'digest', digest: parseDigest(text).value }
  assertTag(text)
  return { kind: 'tag', tag: text }
}
