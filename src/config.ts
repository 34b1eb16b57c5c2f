import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'

/** The node's typed configuration (D11): defaults, then a YAML file, then SHOAL_* variables, then flags. */
export interface Config {
  /** host:port the HTTP server listens on. */
  listen: string
  /** Data directory: blocks, metadata, upload sessions. */
  data: string
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** Hours after which an upload nobody touched is removed (Distribution's default: a week). */
  uploadExpiryHours: number
}

export const DEFAULT_CONFIG: Config = { listen: '127.0.0.1:5000', data: './data', logLevel: 'warn', uploadExpiryHours: 168 }

const LOG_LEVELS: ReadonlyArray<Config['logLevel']> = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']
const ENV_KEYS: Record<keyof Config, string> = {
  listen: 'SHOAL_LISTEN',
  data: 'SHOAL_DATA',
  logLevel: 'SHOAL_LOG_LEVEL',
  uploadExpiryHours: 'SHOAL_UPLOAD_EXPIRY_HOURS'
}

export class ConfigError extends Error {}

export interface ConfigSources {
  file?: string
  env?: NodeJS.ProcessEnv
  flags?: Partial<Config>
}

export function loadConfig ({ file, env = process.env, flags = {} }: ConfigSources = {}): Config {
  const path = file ?? env.SHOAL_CONFIG
  const fromFile = path === undefined ? {} : readConfigFile(path)
  const fromEnv: Partial<Config> = {}
  for (const [key, name] of Object.entries(ENV_KEYS) as Array<[keyof Config, string]>) {
    const value = env[name]
    if (value !== undefined && value !== '') (fromEnv as Record<string, string>)[key] = value
  }
  const defined = Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined))
  const merged = { ...DEFAULT_CONFIG, ...fromFile, ...fromEnv, ...defined }
  return validate({ ...merged, uploadExpiryHours: Number(merged.uploadExpiryHours) })
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
  const unknown = Object.keys(value).filter(key => !(key in DEFAULT_CONFIG))
  if (unknown.length > 0) throw new ConfigError(`config file ${path} has unknown keys: ${unknown.join(', ')}`)
  return value as Partial<Config>
}

function validate (config: Config): Config {
  parseListen(config.listen)
  if (typeof config.data !== 'string' || config.data === '') throw new ConfigError('data must be a directory path')
  if (!LOG_LEVELS.includes(config.logLevel)) throw new ConfigError(`logLevel must be one of ${LOG_LEVELS.join(', ')}`)
  if (!(config.uploadExpiryHours > 0)) throw new ConfigError('uploadExpiryHours must be a positive number')
  return config
}

export function parseListen (listen: string): { host: string, port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(String(listen))
  const port = Number(match?.[2])
  if (match === null || port > 65535) throw new ConfigError(`listen must be host:port, not ${JSON.stringify(listen)}`)
  return { host: (match[1] ?? '').replace(/^\[(.*)\]$/, '$1'), port }
}
