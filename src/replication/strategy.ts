// Replication strategies (D7): what each kind means, and the parsing and validation of the
// payloads that create them. Pure: no I/O, no fleet state beyond what a caller passes in.
import { CID } from 'multiformats/cid'
import { parseDigest } from '../oci/digest.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import { assertRepositoryName, isTag } from '../oci/names.ts'
import { STRATEGY_KINDS, type LabelSelector, type StrategyKind, type StrategySpec } from '../catalogue/strategy-record.ts'
import { isTarget, matchesSelector, type Member } from './placement.ts'

/** A strategy that cannot be accepted; the message says what is wrong with it. */
export class InvalidStrategyError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'STRATEGY_INVALID', status: 400, message: 'invalid strategy' }
}

export { STRATEGY_KINDS, type LabelSelector, type Strategy, type StrategyKind, type StrategySpec } from '../catalogue/strategy-record.ts'

const EMPTY_SELECTOR = 'selector is empty: give at least one label, such as zone=eu'

export interface StrategyPayload {
  spec: StrategySpec
  /** false: a dry run, placement is computed and shown but the strategy is not stored. */
  execute: boolean
}

/**
 * Reads a strategy from a request body. Two forms are accepted: Shoal's own
 * (`{ image, kind, percentage | target | replicas | selector, count? }`) and DistroMash's, unchanged
 * (`{ execute, nametag, type, percentage, target }`, which sends every field whatever the type, so
 * only the fields of the chosen kind are read). Unknown fields are ignored. Nothing is checked
 * against the fleet here: see checkAgainstFleet.
 */
export function parseStrategyPayload (body: unknown): StrategyPayload {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new InvalidStrategyError('a strategy must be a JSON object')
  }
  const fields = body as Record<string, unknown>
  const image = parseImage(pickAlias(fields, 'image', 'nametag'))
  const kind = parseKind(pickAlias(fields, 'kind', 'type'))
  const execute = fields.execute ?? true
  if (typeof execute !== 'boolean') throw new InvalidStrategyError(`execute must be true or false, not ${show(execute)}`)
  return { spec: parseKindFields(kind, image, fields), execute }
}

/**
 * The checks that need the member list: a target that is no member, more replicas (or a larger
 * label count) than there are nodes to hold them. Whether the image exists is checked elsewhere.
 */
export function checkAgainstFleet (spec: StrategySpec, members: readonly Member[]): void {
  const nodeCount = new Set(members.map(member => member.id)).size
  switch (spec.kind) {
    case 'target':
      if (!members.some(member => isTarget(member, spec.target))) {
        throw new InvalidStrategyError(`target ${show(spec.target)} is not a member: no node has that id or name`)
      }
      return
    case 'replicas':
      if (spec.replicas > nodeCount) {
        throw new InvalidStrategyError(`replicas ${spec.replicas} is more than the ${nodeCount} member node(s)`)
      }
      return
    case 'labels': {
      if (spec.count === undefined) return
      const matching = new Set(members.filter(member => matchesSelector(member.labels, spec.selector)).map(member => member.id)).size
      if (spec.count > matching) {
        throw new InvalidStrategyError(`count ${spec.count} is more than the ${matching} node(s) matching ${formatLabels(spec.selector)}`)
      }
      return
    }
    default:
  }
}

/** `zone=eu,tier=edge` as the CLI takes a selector; at least one pair. */
export function parseSelectorText (text: string): LabelSelector {
  const result = parsePairs(text)
  if (typeof result === 'string') throw new InvalidStrategyError(`selector: ${result}`)
  if (Object.keys(result).length === 0) throw new InvalidStrategyError(EMPTY_SELECTOR)
  return result
}

/** A node's labels are not valid. */
export class InvalidLabelsError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'LABELS_INVALID', status: 400, message: 'invalid labels' }
}

/** `zone=eu,tier=edge` as the CLI takes a node's labels, with the selector's rules; may be empty. */
export function parseLabelsText (text: string): Record<string, string> {
  const result = parsePairs(text)
  if (typeof result === 'string') throw new InvalidLabelsError(`labels: ${result}`)
  return result
}

/** `zone=eu,tier=edge`: the text form of labels and selectors. */
export function formatLabels (labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels).map(([key, value]) => `${key}=${value}`).join(',')
}

function parseKindFields (kind: StrategyKind, image: string, fields: Record<string, unknown>): StrategySpec {
  switch (kind) {
    case 'percentage': {
      const percentage = fields.percentage
      if (typeof percentage !== 'number' || !Number.isFinite(percentage) || percentage < 1 || percentage > 100) {
        throw new InvalidStrategyError(`percentage must be a number from 1 to 100, not ${show(percentage)}`)
      }
      return { kind, image, percentage }
    }
    case 'target': {
      const target = fields.target
      if (typeof target !== 'string' || target.trim() === '') {
        throw new InvalidStrategyError(`target must be a node id or name, not ${show(target)}`)
      }
      return { kind, image, target: target.trim() }
    }
    case 'replicas':
      return { kind, image, replicas: parseCount('replicas', fields.replicas) }
    case 'all':
      return { kind, image }
    case 'labels': {
      const selector = parseSelector(fields.selector)
      if (fields.count === undefined || fields.count === null) return { kind, image, selector }
      return { kind, image, selector, count: parseCount('count', fields.count) }
    }
  }
}

/** Shoal's field name, or DistroMash's; both given must agree. */
function pickAlias (fields: Record<string, unknown>, name: string, alias: string): unknown {
  const value = fields[name]
  const aliased = fields[alias]
  if (value !== undefined && aliased !== undefined && value !== aliased) {
    throw new InvalidStrategyError(`${name} ${show(value)} and ${alias} ${show(aliased)} disagree; give one`)
  }
  return value ?? aliased
}

function parseKind (value: unknown): StrategyKind {
  if (value === undefined || value === null || value === '') {
    throw new InvalidStrategyError(`missing kind: one of ${STRATEGY_KINDS.join(', ')}`)
  }
  if (typeof value !== 'string' || !(STRATEGY_KINDS as readonly string[]).includes(value)) {
    throw new InvalidStrategyError(`unknown kind ${show(value)}: expected one of ${STRATEGY_KINDS.join(', ')}`)
  }
  return value as StrategyKind
}

/**
 * The image must be named precisely: a bare `busybox` is refused rather than read as
 * `busybox:latest`, since placement hashes the reference as written and two spellings of one
 * image would be placed apart.
 */
function parseImage (value: unknown): string {
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === '')) {
    throw new InvalidStrategyError('missing image: give repo:tag, repo@sha256:… or an image CID')
  }
  if (typeof value !== 'string') throw new InvalidStrategyError(`image must be a string, not ${show(value)}`)
  const image = value.trim()
  const problem = imageProblem(image)
  if (problem !== undefined) throw new InvalidStrategyError(`invalid image ${show(image)}: ${problem}`)
  return image
}

/** What is wrong with an image reference, if anything. */
function imageProblem (image: string): string | undefined {
  const at = image.indexOf('@')
  if (at >= 0) {
    try {
      parseDigest(image.slice(at + 1))
    } catch {
      return 'the part after @ is not a sha256 or sha512 digest'
    }
    return repositoryProblem(image.slice(0, at), true)
  }
  if (!image.includes(':') && !image.includes('/') && isCid(image)) return undefined
  return repositoryProblem(image, false)
}

function repositoryProblem (nameAndTag: string, tagOptional: boolean): string | undefined {
  const colon = nameAndTag.lastIndexOf(':')
  const hasTag = colon > nameAndTag.lastIndexOf('/')
  if (!hasTag && !tagOptional) return 'expected repo:tag, repo@sha256:… or an image CID'
  const repository = hasTag ? nameAndTag.slice(0, colon) : nameAndTag
  if (hasTag && !isTag(nameAndTag.slice(colon + 1))) return `${show(nameAndTag.slice(colon + 1))} is not a valid tag`
  try {
    assertRepositoryName(repository)
  } catch {
    return `${show(repository)} is not a valid repository name`
  }
  return undefined
}

function isCid (text: string): boolean {
  try {
    CID.parse(text)
    return true
  } catch {
    return false
  }
}

function parseCount (name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    throw new InvalidStrategyError(`${name} must be a whole number of at least 1, not ${show(value)}`)
  }
  return value
}

function parseSelector (value: unknown): LabelSelector {
  if (value === undefined || value === null) throw new InvalidStrategyError('missing selector: give labels such as { "zone": "eu" }')
  if (typeof value === 'string') return parseSelectorText(value)
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new InvalidStrategyError(`selector must be an object of labels such as { "zone": "eu" }, not ${show(value)}`)
  }
  const entries = Object.entries(value)
  if (entries.length === 0) throw new InvalidStrategyError(EMPTY_SELECTOR)
  for (const [key, label] of entries) {
    const problem = pairProblem(key, label)
    if (problem !== undefined) throw new InvalidStrategyError(`selector: ${problem}`)
  }
  // fromEntries defines every key as its own property, `__proto__` included.
  return Object.fromEntries(entries) as LabelSelector
}


/** `k=v,k=v` into a map, or the reason it is not one. */
function parsePairs (text: string): Record<string, string> | string {
  const pairs = new Map<string, string>()
  for (const item of text.split(',').map(part => part.trim()).filter(part => part !== '')) {
    const eq = item.indexOf('=')
    if (eq < 0) return `${show(item)} is not key=value`
    const key = item.slice(0, eq).trim()
    const value = item.slice(eq + 1).trim()
    const problem = pairProblem(key, value)
    if (problem !== undefined) return problem
    if (pairs.has(key) && pairs.get(key) !== value) return `${show(key)} is given twice with different values`
    pairs.set(key, value)
  }
  return Object.fromEntries(pairs)
}

function pairProblem (key: string, value: unknown): string | undefined {
  if (key.trim() === '') return 'a label has an empty key'
  if (key !== key.trim() || /[=,\s]/.test(key)) return `label key ${show(key)} must not contain spaces, "=" or ","`
  if (typeof value !== 'string') return `label ${show(key)} must have a string value, not ${show(value)}`
  if (value.trim() === '') return `label ${show(key)} has an empty value`
  return undefined
}

function show (value: unknown): string {
  // JSON.stringify gives undefined for functions and symbols, which a caller in code could pass.
  return value === undefined ? 'nothing' : (JSON.stringify(value) as string | undefined) ?? String(value)
}
