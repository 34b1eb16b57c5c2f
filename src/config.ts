import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'

/** The node's typed configuration (D11): defaults, then a YAML file, then SHOAL_* variables, then flags. */
export interface Config {
  /** host:port the HTTP server listens on. */
  listen: string
  /** Data directory: blocks, metadata, upload sessions, mesh identity. */
  data: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Hours after which an upload nobody touched is removed (Distribution's default: a week). */
  uploadExpiryHours: number
  /** Minutes between garbage collections of unreferenced blocks; 0: only when asked. */
  gcIntervalMinutes: number
  /** Blocks written this recently are never collected (they may be recorded a moment later). */
  gcGraceSeconds: number
  /** Join a mesh even with no peers or mDNS configured (others may dial this node). */
  mesh: boolean
  /** libp2p listen multiaddrs. */
  p2pListen: string[]
  /** Multiaddrs (with /p2p/<id>) of nodes to join through; any makes the node a mesh member. */
  peers: string[]
  /** Find peers on the local network by mDNS; makes the node a mesh member. */
  mdns: boolean
  /** A libp2p pre-shared key file (swarm.key format): only nodes with the same key connect. */
  swarmKeyFile: string | undefined
  /** The HTTP base URL peers fetch blocks from; default http://<listen>. */
  advertiseUrl: string | undefined
  /** The node's name in the inventory; default its peer id. */
  name: string | undefined
  /** Labels in the inventory (for placement by label). */
  labels: Record<string, string>
  /** Cap on what this node sends to peers over /ipfs/, in Mbit/s; 0 for none. */
  uploadLimitMbps: number
  /** /ipfs/<cid> also answers for blocks this node lacks but its peers hold. */
  gatewayFetch: boolean
  /**
   * Seconds between inventory heartbeats; a node silent for three of them is taken as gone and
   * its images are placed elsewhere. Every node of a fleet should use the same value.
   */
  heartbeatSeconds: number
}

export const DEFAULT_CONFIG: Config = {
  listen: '127.0.0.1:5000',
  data: './data',
  logLevel: 'warn',
  uploadExpiryHours: 168,
  gcIntervalMinutes: 0,
  gcGraceSeconds: 60,
  mesh: false,
  p2pListen: ['/ip4/127.0.0.1/tcp/0'],
  peers: [],
  mdns: false,
  swarmKeyFile: undefined,
  advertiseUrl: undefined,
  name: undefined,
  labels: {},
  uploadLimitMbps: 0,
  gatewayFetch: false,
  heartbeatSeconds: 10
}

/** Whether the node joins a mesh at all: a plain single node loads none of libp2p. */
export function meshEnabled (config: Config): boolean {
  return config.mesh || config.mdns || config.peers.length > 0
}

type Kind = 'string' | 'optional-string' | 'number' | 'boolean' | 'list' | 'map'
const KEYS: Record<keyof Config, { env: string, kind: Kind }> = {
  listen: { env: 'SHOAL_LISTEN', kind: 'string' },
  data: { env: 'SHOAL_DATA', kind: 'string' },
  logLevel: { env: 'SHOAL_LOG_LEVEL', kind: 'string' },
  uploadExpiryHours: { env: 'SHOAL_UPLOAD_EXPIRY_HOURS', kind: 'number' },
  gcIntervalMinutes: { env: 'SHOAL_GC_INTERVAL_MINUTES', kind: 'number' },
  gcGraceSeconds: { env: 'SHOAL_GC_GRACE_SECONDS', kind: 'number' },
  mesh: { env: 'SHOAL_MESH', kind: 'boolean' },
  p2pListen: { env: 'SHOAL_P2P_LISTEN', kind: 'list' },
  peers: { env: 'SHOAL_PEERS', kind: 'list' },
  mdns: { env: 'SHOAL_MDNS', kind: 'boolean' },
  swarmKeyFile: { env: 'SHOAL_SWARM_KEY_FILE', kind: 'optional-string' },
  advertiseUrl: { env: 'SHOAL_ADVERTISE_URL', kind: 'optional-string' },
  name: { env: 'SHOAL_NAME', kind: 'optional-string' },
  labels: { env: 'SHOAL_LABELS', kind: 'map' },
  uploadLimitMbps: { env: 'SHOAL_UPLOAD_LIMIT_MBPS', kind: 'number' },
  gatewayFetch: { env: 'SHOAL_GATEWAY_FETCH', kind: 'boolean' },
  heartbeatSeconds: { env: 'SHOAL_HEARTBEAT_SECONDS', kind: 'number' }
}
const LOG_LEVELS: ReadonlyArray<Config['logLevel']> = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']

export class ConfigError extends Error {}

export interface ConfigSources {
  file?: string
  env?: NodeJS.ProcessEnv
  flags?: Partial<Config>
}

export function loadConfig ({ file, env = process.env, flags = {} }: ConfigSources = {}): Config {
  const path = file ?? env.SHOAL_CONFIG
  const fromFile = path === undefined ? {} : readConfigFile(path)
  const fromEnv: Record<string, unknown> = {}
  for (const [key, { env: name, kind }] of Object.entries(KEYS)) {
    const value = env[name]
    if (value !== undefined && value !== '') fromEnv[key] = fromText(value, kind, name)
  }
  const defined = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined))
  return validate({ ...DEFAULT_CONFIG, ...fromFile, ...fromEnv, ...defined } as Config)
}

/** Environment variables are text: lists are comma-separated, maps are `k=v,k=v`. */
function fromText (value: string, kind: Kind, name: string): unknown {
  switch (kind) {
    case 'number': return Number(value)
    case 'boolean':
      if (['1', 'true', 'yes', 'on'].includes(value.toLowerCase())) return true
      if (['0', 'false', 'no', 'off'].includes(value.toLowerCase())) return false
      throw new ConfigError(`${name} must be true or false, not ${JSON.stringify(value)}`)
    case 'list': return value.split(',').map(item => item.trim()).filter(item => item !== '')
    case 'map': return parseLabels(value.split(','), name)
    default: return value
  }
}

/** Parses `key=value` pairs (labels). */
export function parseLabels (pairs: string[], where = 'labels'): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const pair of pairs.map(p => p.trim()).filter(p => p !== '')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new ConfigError(`${where}: ${JSON.stringify(pair)} is not key=value`)
    labels[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return labels
}

function readConfigFile (path: string): Partial<Config> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  const value: unknown = parseYaml(text)
  if (value === null || value === undefined) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`config file ${path} must be a YAML mapping`)
  const unknown = Object.keys(value).filter(key => !(key in KEYS))
  if (unknown.length > 0) throw new ConfigError(`config file ${path} has unknown keys: ${unknown.join(', ')}`)
  return value as Partial<Config>
}

function validate (config: Config): Config {
  parseListen(config.listen)
  if (typeof config.data !== 'string' || config.data === '') throw new ConfigError('data must be a directory path')
  if (!LOG_LEVELS.includes(config.logLevel)) throw new ConfigError(`logLevel must be one of ${LOG_LEVELS.join(', ')}`)
  if (typeof config.uploadExpiryHours !== 'number' || !(config.uploadExpiryHours > 0)) {
    throw new ConfigError('uploadExpiryHours must be a positive number')
  }
  if (typeof config.gcIntervalMinutes !== 'number' || !(config.gcIntervalMinutes >= 0)) {
    throw new ConfigError('gcIntervalMinutes must be a number of minutes, 0 for none')
  }
  if (typeof config.gcGraceSeconds !== 'number' || !(config.gcGraceSeconds >= 0)) {
    throw new ConfigError('gcGraceSeconds must be a number of seconds')
  }
  if (typeof config.uploadLimitMbps !== 'number' || !(config.uploadLimitMbps >= 0)) {
    throw new ConfigError('uploadLimitMbps must be a number of Mbit/s, 0 for no cap')
  }
  if (typeof config.heartbeatSeconds !== 'number' || !(config.heartbeatSeconds > 0)) {
    throw new ConfigError('heartbeatSeconds must be a positive number of seconds')
  }
  for (const key of ['mesh', 'mdns', 'gatewayFetch'] as const) {
    if (typeof config[key] !== 'boolean') throw new ConfigError(`${key} must be true or false`)
  }
  for (const key of ['p2pListen', 'peers'] as const) {
    if (!Array.isArray(config[key]) || !config[key].every(item => typeof item === 'string')) {
      throw new ConfigError(`${key} must be a list of multiaddrs`)
    }
  }
  if (typeof config.labels !== 'object' || config.labels === null || !Object.values(config.labels).every(v => typeof v === 'string')) {
    throw new ConfigError('labels must map names to strings')
  }
  if (config.advertiseUrl !== undefined && !/^https?:\/\//.test(config.advertiseUrl)) {
    throw new ConfigError(`advertiseUrl must be an http(s) URL, not ${JSON.stringify(config.advertiseUrl)}`)
  }
  return config
}

export function parseListen (listen: string): { host: string, port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(String(listen))
  const port = Number(match?.[2])
  if (match === null || port > 65535) throw new ConfigError(`listen must be host:port, not ${JSON.stringify(listen)}`)
  return { host: (match[1] ?? '').replace(/^\[(.*)\]$/, '$1'), port }
}
