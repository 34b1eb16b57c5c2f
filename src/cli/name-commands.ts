// `shoal name …` (issue 14): IPNS keys, publishing an image under a name, resolving and
// inspecting names, as calls to a node's management API. A refusal is one line: the API's message.
import type { IpnsKeyAnswer, IpnsKeysAnswer, NameRecordAnswer, PublishedAnswer, ResolvedNameAnswer } from '../api/schemas.ts'
import { CliError, callApi } from './api-client.ts'

export interface PublishCommandOptions {
  key?: string
  lifetime?: string
  ttl?: string
}

export async function createKey (node: string, name: string, json: boolean): Promise<string> {
  const key = await callApi<IpnsKeyAnswer>(node, 'POST', '/names/keys', { name })
  return json ? JSON.stringify(key, null, 2) : `created key ${key.key}: /ipns/${key.name}`
}

export async function listKeys (node: string, json: boolean): Promise<string> {
  const { keys } = await callApi<IpnsKeysAnswer>(node, 'GET', '/names/keys')
  if (json) return JSON.stringify(keys, null, 2)
  return table(['KEY', 'IPNS NAME', 'CREATED'], keys.map(key => [key.key, key.name, key.createdAt]))
}

export async function publishName (node: string, image: string, options: PublishCommandOptions, json: boolean): Promise<string> {
  const body = {
    image,
    ...(options.key === undefined ? {} : { key: options.key }),
    ...(options.lifetime === undefined ? {} : { lifetimeSeconds: parseDuration(options.lifetime, '--lifetime') }),
    ...(options.ttl === undefined ? {} : { ttlSeconds: parseDuration(options.ttl, '--ttl') })
  }
  const published = await callApi<PublishedAnswer>(node, 'POST', '/names/publish', body)
  if (json) return JSON.stringify(published, null, 2)
  return [
    `published /ipns/${published.name} -> ${published.value} (${published.image})`,
    `sequence ${published.sequence}, valid until ${published.validUntil}, ttl ${published.ttlSeconds} s, key ${published.key}, stored by ${published.peers} DHT peer${published.peers === 1 ? '' : 's'}`,
    `pull: ${new URL(node).host}/ipns/${published.name}:latest`
  ].join('\n')
}

export async function resolveName (node: string, name: string, json: boolean): Promise<string> {
  const resolved = await callApi<ResolvedNameAnswer>(node, 'GET', `/names/resolve/${encodeURIComponent(name)}`)
  return json ? JSON.stringify(resolved, null, 2) : resolved.path
}

export async function inspectName (node: string, name: string, json: boolean): Promise<string> {
  const record = await callApi<NameRecordAnswer>(node, 'GET', `/names/records/${encodeURIComponent(name)}`)
  if (json) return JSON.stringify(record, null, 2)
  return [
    `name:        /ipns/${record.name}`,
    `value:       ${record.value}`,
    `sequence:    ${record.sequence}`,
    `valid until: ${record.validUntil}`,
    `ttl:         ${record.ttlSeconds} s`,
    // The name is the key's identity: the signature is checked against the name itself.
    `signed by:   ${record.signer.peerId} (the name's own key; signature verified)`,
    `from:        ${record.source}`
  ].join('\n')
}

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86_400 }

/** `24h`, `90m`, `1h30m`, `45s`, `2d` or a number of seconds, as whole seconds. */
export function parseDuration (text: string, option: string): number {
  const parts = text === '' ? null : /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(text) ? [...text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)] : /^\d+$/.test(text) ? [] : null
  if (parts === null) throw new CliError(`${option} must be a duration such as 24h, 90m, 1h30m or 45s (or whole seconds), not ${JSON.stringify(text)}`)
  if (parts.length === 0) return Number(text)
  return Math.round(parts.reduce((sum, [, amount = '0', unit = 's']) => sum + Number(amount) * (UNIT_SECONDS[unit] ?? 1), 0))
}

function table (headers: string[], rows: string[][]): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map(row => (row[column] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd()
  return [line(headers), ...rows.map(line)].join('\n')
}
