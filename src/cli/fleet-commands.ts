// `shoal strategy …`, `shoal nodes`, `shoal images`: calls to a node's management API, answers as
// tables for people (or JSON). A refusal becomes one line: the API's own message.
import type { CreatedAnswer, DesiredNodeAnswer, DroppingNodeAnswer, DryRunAnswer, ImagesAnswer, ListedStrategy, NodesAnswer, StatusAnswer, StrategiesAnswer } from '../api/schemas.ts'
import { CliError, callApi } from './api-client.ts'

type Placed = DesiredNodeAnswer | DroppingNodeAnswer | CreatedAnswer['placement'][number]
type StrategyAnswer = CreatedAnswer['strategy'] | DryRunAnswer['strategy'] | ListedStrategy

/** What `shoal strategy add` was given. */
export interface AddStrategyOptions {
  percentage?: string
  target?: string
  replicas?: string
  all?: boolean
  labels?: string
  count?: string
  dryRun?: boolean
}

/** The body `shoal strategy add` sends, in Shoal's own form. */
export function strategyBody (image: string, options: AddStrategyOptions): Record<string, unknown> {
  const kinds = [
    options.percentage !== undefined && 'percentage',
    options.target !== undefined && 'target',
    options.replicas !== undefined && 'replicas',
    options.all === true && 'all',
    options.labels !== undefined && 'labels'
  ].filter(kind => kind !== false)
  if (kinds.length !== 1) {
    throw new CliError(`give exactly one of --percentage, --target, --replicas, --all, --labels${kinds.length > 1 ? `, not ${kinds.map(kind => `--${kind}`).join(' and ')}` : ''}`)
  }
  if (options.count !== undefined && kinds[0] !== 'labels') throw new CliError('--count goes with --labels')
  const body: Record<string, unknown> = { image, kind: kinds[0], execute: options.dryRun !== true }
  if (options.percentage !== undefined) body.percentage = numberOption('--percentage', options.percentage)
  if (options.target !== undefined) body.target = options.target
  if (options.replicas !== undefined) body.replicas = numberOption('--replicas', options.replicas)
  if (options.labels !== undefined) body.selector = options.labels
  if (options.count !== undefined) body.count = numberOption('--count', options.count)
  return body
}

export async function addStrategy (node: string, image: string, options: AddStrategyOptions, json: boolean): Promise<string> {
  const answer = await callApi<CreatedAnswer | DryRunAnswer>(node, 'POST', '/strategies', strategyBody(image, options))
  if (json) return JSON.stringify(answer, null, 2)
  const { strategy, placement } = answer
  const head = strategy.id === null ? 'dry run, nothing stored:' : `strategy ${strategy.id}:`
  return [
    `${head} ${strategy.image} on ${describePlacement(strategy)}`,
    `${strategy.id === null ? 'would place on' : 'placed on'}: ${placement.length === 0 ? 'no node' : placement.map(nodeLabel).join(', ')}`
  ].join('\n')
}

export async function listStrategies (node: string, json: boolean): Promise<string> {
  const { strategies } = await callApi<StrategiesAnswer>(node, 'GET', '/strategies')
  if (json) return JSON.stringify(strategies, null, 2)
  if (strategies.length === 0) return 'no strategies'
  return table(['ID', 'IMAGE', 'PLACEMENT', 'HELD', 'CREATED'], strategies.map(strategy => [
    strategy.id ?? '-',
    strategy.image,
    describePlacement(strategy),
    `${strategy.summary.held}/${strategy.summary.desired}${strategy.summary.failed > 0 ? ` (${strategy.summary.failed} failed)` : ''}`,
    strategy.createdAt ?? '-'
  ]))
}

export async function removeStrategy (node: string, id: string): Promise<string> {
  await callApi(node, 'DELETE', `/strategies/${encodeURIComponent(id)}`)
  return `removed strategy ${id}`
}

/** One strategy's status, or every strategy's when no id is given. */
export async function strategyStatus (node: string, id: string | undefined, json: boolean): Promise<string> {
  const ids = id !== undefined
    ? [id]
    : (await callApi<StrategiesAnswer>(node, 'GET', '/strategies')).strategies.map(strategy => strategy.id)
  const statuses = await Promise.all(ids.map(async one => await callApi<StatusAnswer>(node, 'GET', `/strategies/${encodeURIComponent(one)}/status`)))
  if (json) return JSON.stringify(id === undefined ? statuses : statuses[0], null, 2)
  if (statuses.length === 0) return 'no strategies'
  const rows = statuses.flatMap(status => [
    ...status.desired.map(entry => [status.strategy.id, nodeLabel(entry), entry.state, progress(entry)]),
    ...status.extra.map(entry => [status.strategy.id, nodeLabel(entry), 'dropping', `was ${entry.reported}${entry.silent ? ', silent' : ''}`]),
    ...(status.desired.length === 0 && status.extra.length === 0 ? [[status.strategy.id, '-', 'no node', '-']] : [])
  ])
  return table(['STRATEGY', 'NODE', 'STATE', 'PROGRESS'], rows)
}

/** Forgets a departed node fleet-wide (the node refuses a live one, or itself). */
export async function forgetNode (node: string, id: string): Promise<string> {
  await callApi(node, 'DELETE', `/nodes/${encodeURIComponent(id)}`)
  return `forgot node ${id}`
}

export async function listNodes (node: string, json: boolean): Promise<string> {
  const { nodes } = await callApi<NodesAnswer>(node, 'GET', '/nodes')
  if (json) return JSON.stringify(nodes, null, 2)
  if (nodes.length === 0) return 'no nodes: this node is not in a mesh'
  return table(['ID', 'NAME', 'LABELS', 'DISK USED/FREE', 'IMAGES', 'HEARTBEAT', 'STANDING'], nodes.map(record => [
    record.id,
    `${record.name}${record.self ? ' (this node)' : ''}`,
    Object.entries(record.labels).map(([key, value]) => `${key}=${value}`).join(',') || '-',
    record.disk === undefined ? '-' : `${bytes(record.disk.usedBytes)}/${bytes(record.disk.freeBytes)}`,
    String(record.images.length),
    record.heartbeatAt?.replace(/\.\d+Z$/, 'Z') ?? 'not heard',
    record.standing
  ]))
}

export async function listImages (node: string, json: boolean): Promise<string> {
  const [{ images }, { nodes }] = await Promise.all([
    callApi<ImagesAnswer>(node, 'GET', '/images'),
    callApi<NodesAnswer>(node, 'GET', '/nodes')
  ])
  if (json) return JSON.stringify(images, null, 2)
  if (images.length === 0) return 'no images'
  const nameOf = new Map(nodes.map(record => [record.id, record.name]))
  const named = (id: string): string => nameOf.get(id) ?? id
  return table(['IMAGE', 'DIGEST', 'IMAGE CID', 'PUSHED TO', 'PUSHED BY', 'PUSHED AT', 'HELD BY'], images.map(image => [
    `${image.repository}:${image.tag}`,
    image.digest.replace(/^(sha\d+:[0-9a-f]{12})[0-9a-f]+$/, '$1'),
    image.imageCid,
    image.node === undefined ? '-' : named(image.node),
    image.pushedBy ?? '-',
    image.pushedAt?.replace(/\.\d+Z$/, 'Z') ?? '-',
    [...image.heldHere && image.heldBy.length === 0 ? ['this node'] : [], ...image.heldBy.map(named)].join(',') || '-'
  ]))
}

function numberOption (flag: string, text: string): number {
  const value = Number(text)
  if (text.trim() === '' || !Number.isFinite(value)) throw new CliError(`${flag} must be a number, not ${JSON.stringify(text)}`)
  return value
}

function describePlacement (strategy: StrategyAnswer): string {
  switch (strategy.kind) {
    case 'percentage': return `${strategy.percentage ?? '?'}% of the nodes`
    case 'target': return `node ${strategy.target ?? '?'}`
    case 'replicas': return `${strategy.replicas ?? '?'} replicas`
    case 'all': return 'all nodes'
    case 'labels': {
      const selector = Object.entries(strategy.selector ?? {}).map(([key, value]) => `${key}=${value}`).join(',')
      return `nodes labelled ${selector}${strategy.count === undefined ? '' : ` (${strategy.count} of them)`}`
    }
    default: return strategy.kind
  }
}

/** A node by its name, and its id too when the name is not the id. */
function nodeLabel ({ node, name }: Placed): string {
  return name === node ? node : `${name} (${node})`
}

function progress (entry: { state: string, bytesDone?: number, bytesTotal?: number, reason?: string }): string {
  if (entry.state === 'failed') return entry.reason ?? '-'
  if (entry.bytesTotal !== undefined && entry.bytesTotal > 0) {
    const done = entry.state === 'held' ? entry.bytesTotal : entry.bytesDone ?? 0
    return `${bytes(done)}/${bytes(entry.bytesTotal)} (${Math.floor((100 * done) / entry.bytesTotal)}%)`
  }
  if (entry.bytesDone !== undefined) return bytes(entry.bytesDone)
  return '-'
}

function bytes (count: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = count
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  // No space inside: a table's cells stay one word each for awk and cut.
  return unit === 0 ? `${value}B` : `${value.toFixed(1)}${units[unit]}`
}

/** Columns padded to their widest cell, two spaces apart. */
function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map(row => (row[column] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}
