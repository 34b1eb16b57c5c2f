// `shoal containerd-config`: containerd's hosts.toml files that send pulls of a registry's images
// through a Shoal node first, the registry itself as fallback (as Spegel writes them). containerd
// reads them with `config_path` (CRI) or `ctr --hosts-dir`.
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CliError } from './api-client.ts'

/** Where containerd fetches a registry's images when no mirror answers. */
function upstreamOf (registry: string): string {
  return registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`
}

/** The hosts.toml for one registry: the node first (pull and resolve), the upstream as `server`. */
export function hostsToml (registry: string, node: string, ca?: string): string {
  return [
    `# Written by shoal containerd-config: ${registry} through the Shoal node at ${node} first, ${upstreamOf(registry)} when it cannot answer.`,
    `server = "${upstreamOf(registry)}"`,
    '',
    `[host."${node}"]`,
    '  capabilities = ["pull", "resolve"]',
    ...(ca === undefined ? [] : [`  ca = "${ca}"`]),
    ''
  ].join('\n')
}

export async function writeContainerdConfig (options: { registries: string[], dir: string, node: string, ca?: string }): Promise<string> {
  if (options.registries.length === 0) throw new CliError('give at least one --registry (docker.io, ghcr.io, …)')
  let node: URL
  try {
    node = new URL(options.node)
  } catch {
    throw new CliError(`--node must be the node's URL (http://host:port), not ${JSON.stringify(options.node)}`)
  }
  if (node.username !== '' || node.password !== '') throw new CliError('--node must not carry credentials: containerd\'s hosts.toml would hold them in clear')
  const origin = node.origin
  const written: string[] = []
  for (const registry of options.registries) {
    if (!/^[a-z0-9.-]+(:\d+)?$/.test(registry)) throw new CliError(`--registry must be a registry host (docker.io), not ${JSON.stringify(registry)}`)
    const dir = join(options.dir, registry)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'hosts.toml'), hostsToml(registry, origin, options.ca))
    written.push(join(dir, 'hosts.toml'))
  }
  return `wrote ${written.join(', ')}`
}
