import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type * as Yaml from 'yaml'

/**
 * The node's typed configuration (D11): defaults, then a YAML file, then SHOAL_* variables, then
 * flags. Each setting is declared once, in SETTINGS below; its type, default, YAML key (the
 * setting's name), environment variable (SHOAL_ and the name in upper snake case), `shoal serve`
 * flag (the name in kebab case, unless it says otherwise) and check all come from that one entry.
 * To add a setting, add an entry: nothing else needs to know about it.
 */

export class ConfigError extends Error {}

/** How a setting's value is read from text (a variable or flag) and from YAML. */
interface Kind<T> {
  /** Text from a variable or a flag; throws `Error('must be …')` when it is not one. */
  fromText: (text: string) => T
  /** A YAML value; throws `Error('must be …')` when it is not one. */
  fromYaml: (value: unknown) => T
  /** The flag may be given more than once; this reads all its values together. */
  fromRepeatedFlag?: (values: string[]) => T
  /** The flag takes no argument (a switch). */
  switch?: boolean
}

export interface Setting<T> {
  kind: Kind<T>
  default: T
  /** What it is, for `shoal serve --help`. */
  help: string
  /** The flag's argument placeholder, as in `<host:port>`. */
  arg?: string
  /** The flag's name, when it is not the setting's name in kebab case. */
  flag?: string
  /** Why a value is refused (`'must be …'`), or undefined when it is fine. */
  check?: (value: T) => string | undefined
  /** Where it sits in the YAML file, when not at the top under its name: `auth.rules`. */
  yaml?: string
}

const refuse = (why: string): never => { throw new Error(why) }

const text: Kind<string> = {
  fromText: value => value,
  fromYaml: value => typeof value === 'string' ? value : refuse('must be text')
}
const optionalText: Kind<string | undefined> = {
  fromText: value => value,
  fromYaml: value => value === null ? undefined : typeof value === 'string' ? value : refuse('must be text')
}
/** Not a number reads as NaN, which every number's check refuses in its own words. */
const number: Kind<number> = {
  fromText: value => value.trim() === '' ? NaN : Number(value),
  fromYaml: value => typeof value === 'number' ? value : NaN
}
const TRUE = ['1', 'true', 'yes', 'on']
const FALSE = ['0', 'false', 'no', 'off']
const boolean: Kind<boolean> = {
  fromText: value => TRUE.includes(value.toLowerCase()) ? true : FALSE.includes(value.toLowerCase()) ? false : refuse('must be true or false'),
  fromYaml: value => typeof value === 'boolean' ? value : refuse('must be true or false'),
  switch: true
}
/** Variables give a comma-separated list; the flag is repeated, one item each. */
const list: Kind<string[]> = {
  fromText: value => value.split(',').map(item => item.trim()).filter(item => item !== ''),
  fromYaml: value => Array.isArray(value) && value.every(item => typeof item === 'string') ? value : refuse('must be a list of text'),
  fromRepeatedFlag: values => values.flatMap(value => list.fromText(value))
}
/** Variables give `k=v,k=v`; the flag is repeated, one `k=v` each; YAML gives a mapping. */
const map: Kind<Record<string, string>> = {
  fromText: value => parseLabels(value.split(',')),
  fromYaml: value => typeof value === 'object' && value !== null && !Array.isArray(value) && Object.values(value).every(v => typeof v === 'string')
    ? value as Record<string, string>
    : refuse('must map names to text'),
  fromRepeatedFlag: values => parseLabels(values)
}
/** Structured values (the access rules): YAML as it is, JSON in a variable or a flag; `parse` checks the shape. */
function structured<T> (parse: (value: unknown) => T): Kind<T> {
  return {
    fromText: value => {
      let parsed: unknown
      try {
        parsed = JSON.parse(value)
      } catch {
        return refuse('must be JSON')
      }
      return parse(parsed)
    },
    fromYaml: parse
  }
}

function oneOf<const T extends string> (choices: readonly T[]): Kind<T> & { choices: readonly T[] } {
  const pick = (value: unknown): T => (choices as readonly unknown[]).includes(value) ? value as T : refuse(`must be one of ${choices.join(', ')}`)
  return { choices, fromText: pick, fromYaml: pick }
}

const positive = (what: string) => (value: number) => value > 0 && value < Infinity ? undefined : `must be a positive number of ${what}`
const atLeastZero = (what: string) => (value: number) => value >= 0 && value < Infinity ? undefined : `must be a number of ${what}`

// The access rules (issue 12; access/policy.ts applies them).
export const ACTIONS = ['pull', 'push', 'delete'] as const
export type Action = typeof ACTIONS[number]

export interface AccessRule {
  /**
   * Repository patterns: `*` matches any run of characters, slashes included (`team-a/*`). Images
   * by CID (`ipfs/<cid>`) are matched only by patterns that start with `ipfs/`: a catch-all `*`
   * must not open by CID what a rule above it closes by name.
   */
  repositories: string[]
  /** User names; `*` is any signed-in user. */
  users: string[]
  allow: Action[]
}

/** The rules as the configuration gives them, checked; throws `must be …` naming what is wrong. */
export function parseAccessRules (value: unknown): AccessRule[] {
  if (!Array.isArray(value)) throw new Error('must be a list of rules, each {repositories, users, allow}')
  return value.map((rule: unknown, index) => {
    const where = `rule ${index + 1}`
    if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new Error(`must be a list of rules: ${where} is not a mapping`)
    const unknown = Object.keys(rule).filter(key => !['repositories', 'users', 'allow'].includes(key))
    if (unknown.length > 0) throw new Error(`must have only repositories, users and allow in each rule: ${where} has ${unknown.join(', ')}`)
    const { repositories, users, allow } = rule as Record<string, unknown>
    const texts = (field: string, list: unknown): string[] => {
      if (!Array.isArray(list) || list.length === 0 || !list.every(item => typeof item === 'string' && item !== '')) throw new Error(`must give ${field} in ${where} as a non-empty list of text`)
      return list as string[]
    }
    const actions = texts('allow', allow)
    const wrong = actions.filter(action => !(ACTIONS as readonly string[]).includes(action))
    if (wrong.length > 0) throw new Error(`must allow only ${ACTIONS.join(', ')}: ${where} allows ${wrong.join(', ')}`)
    return { repositories: texts('repositories', repositories), users: texts('users', users), allow: actions as Action[] }
  })
}

// The upstream registries a node mirrors (issue 13; mirror/mirrors.ts).
export interface MirrorSetting {
  /** The name clients use for it (docker.io): a mirrored repository is `<registry>/<name>`. */
  registry: string
  /** Where it is fetched from (https://registry-1.docker.io). */
  url: string
  /** A JSON file {"username", "password"} for the upstream; none: anonymous. */
  credentialsFile?: string
}

/** A registry name as a repository path component can hold it (docker.io, ghcr.io, registry.example.com). */
const REGISTRY_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/

export function parseMirrors (value: unknown): MirrorSetting[] {
  if (!Array.isArray(value)) throw new Error('must be a list of mirrors, each {registry, url, credentialsFile?}')
  const seen = new Set<string>()
  return value.map((mirror: unknown, index) => {
    const where = `mirror ${index + 1}`
    if (typeof mirror !== 'object' || mirror === null || Array.isArray(mirror)) throw new Error(`must be a list of mirrors: ${where} is not a mapping`)
    const unknown = Object.keys(mirror).filter(key => !['registry', 'url', 'credentialsFile'].includes(key))
    if (unknown.length > 0) throw new Error(`must have only registry, url and credentialsFile in each mirror: ${where} has ${unknown.join(', ')}`)
    const { registry, url, credentialsFile } = mirror as Record<string, unknown>
    if (typeof registry !== 'string' || !REGISTRY_NAME.test(registry)) throw new Error(`must name each mirror's registry as lowercase host name (docker.io): ${where} has ${JSON.stringify(registry)}`)
    if (seen.has(registry)) throw new Error(`must name each registry once: ${registry} is mirrored twice`)
    seen.add(registry)
    if (typeof url !== 'string' || !/^https?:\/\/[^/]+/.test(url)) throw new Error(`must give each mirror's url as http(s)://host: ${where} has ${JSON.stringify(url)}`)
    if (credentialsFile !== undefined && (typeof credentialsFile !== 'string' || credentialsFile === '')) throw new Error(`must give credentialsFile as a path: ${where}`)
    return { registry, url, ...(credentialsFile === undefined ? {} : { credentialsFile: credentialsFile as string }) }
  })
}

/** A DNS server as node:dns's setServers takes it: an IPv4 address with an optional port, or an IPv6 one (in brackets with a port). */
const DNS_SERVER = /^(?:\d{1,3}(?:\.\d{1,3}){3}(?::\d{1,5})?|[0-9a-f:]+|\[[0-9a-f:]+\]:\d{1,5})$/i

/** Declares one setting; its value type comes from its kind. */
const declare = <T>(setting: Setting<T>): Setting<T> => setting

/** Every setting, declared once. */
export const SETTINGS = {
  listen: declare({
    kind: text, default: '127.0.0.1:5000', arg: '<host:port>',
    help: 'host:port the HTTP server listens on',
    check: value => { try { parseListen(value) } catch { return 'must be host:port' } }
  }),
  data: declare({
    kind: text, default: './data', arg: '<dir>',
    help: 'data directory: blocks, metadata, upload sessions, mesh identity',
    check: value => value === '' ? 'must be a directory path' : undefined
  }),
  tlsCert: declare({
    kind: optionalText, default: undefined, arg: '<file>',
    help: 'PEM certificate (with its chain) to serve HTTPS on the listen port; needs --tls-key'
  }),
  tlsKey: declare({
    kind: optionalText, default: undefined, arg: '<file>',
    help: 'PEM private key of --tls-cert'
  }),
  tlsCa: declare({
    kind: optionalText, default: undefined, arg: '<file>',
    help: 'PEM CA certificates that peers\' HTTPS certificates are checked against, beside the system\'s (a fleet\'s own CA)'
  }),
  allowedHosts: declare({
    kind: list, default: [], arg: '<name>', flag: 'allowed-host',
    help: 'a host name requests may name in Host (repeatable); default: the listen host (every local name and address when it is 0.0.0.0), localhost, the loopback addresses and the advertised URL\'s host'
  }),
  htpasswd: declare({
    kind: optionalText, default: undefined, arg: '<file>', yaml: 'auth.htpasswd',
    help: 'users: an htpasswd file of bcrypt entries (htpasswd -B); turns authentication on'
  }),
  anonymousPull: declare({
    kind: boolean, default: false, yaml: 'auth.anonymousPull',
    help: 'with authentication on, anyone may pull every repository without signing in'
  }),
  admins: declare({
    kind: list, default: [], arg: '<user>', flag: 'admin', yaml: 'auth.admins',
    help: 'a user who may do everything and manage strategies and the fleet (repeatable)'
  }),
  accessRules: declare({
    kind: structured(parseAccessRules), default: [], arg: '<json>', yaml: 'auth.rules',
    help: 'rights per repository, first match wins: [{"repositories": ["team-a/*"], "users": ["alice"], "allow": ["pull", "push", "delete"]}] (none: every signed-in user may do everything)'
  }),
  tokenTtlSeconds: declare({
    kind: number, default: 300, arg: '<seconds>', yaml: 'auth.tokenTtlSeconds',
    help: 'lifetime of the bearer tokens the node issues at /auth/token',
    check: positive('seconds')
  }),
  tokenService: declare({
    kind: text, default: 'shoal', arg: '<name>', yaml: 'auth.token.service',
    help: 'the service named in challenges and tokens (the audience)'
  }),
  tokenIssuer: declare({
    kind: text, default: 'shoal', arg: '<name>', yaml: 'auth.token.issuer',
    help: 'the issuer of the tokens the node accepts (and issues, unless tokenPublicKey names another issuer\'s key)'
  }),
  tokenRealm: declare({
    kind: optionalText, default: undefined, arg: '<url>', yaml: 'auth.token.realm',
    help: 'an external token issuer\'s URL, for the challenge; needs tokenPublicKey',
    check: value => value === undefined || /^https?:\/\//.test(value) ? undefined : 'must be an http(s) URL'
  }),
  tokenPublicKey: declare({
    kind: optionalText, default: undefined, arg: '<file>', yaml: 'auth.token.publicKey',
    help: 'PEM public key of an external token issuer (as Distribution\'s auth.token); turns authentication on, the node then issues no tokens'
  }),
  logLevel: declare({
    kind: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'warn', arg: '<level>',
    help: 'log level (info adds one line per request)'
  }),
  uploadExpiryHours: declare({
    kind: number, default: 168, arg: '<hours>',
    // Distribution's default: a week.
    help: 'hours after which an upload nobody touched is removed',
    check: positive('hours')
  }),
  maxUploadSessions: declare({
    kind: number, default: 1000, arg: '<n>',
    // An open session costs a directory and a few hundred bytes of memory (its partial leaf is
    // on disk); the cap bounds what clients that start uploads and never finish can pile up.
    help: 'upload sessions open at once; past it a new upload gets 429 TOOMANYREQUESTS',
    check: value => Number.isSafeInteger(value) && value > 0 ? undefined : 'must be a positive whole number'
  }),
  bodyIdleSeconds: declare({
    kind: number, default: 60, arg: '<seconds>',
    help: 'a request body silent this long is cut; an upload keeps what arrived (0: never)',
    check: atLeastZero('seconds, 0 for none')
  }),
  bodyMinBytesPerSecond: declare({
    kind: number, default: 1024, arg: '<bytes>',
    // 1 KiB/s over 30 s cuts a byte-every-few-seconds trickle within a minute, and no link that
    // moves real data (a 9600 baud modem sends about 1 KiB/s).
    help: 'a request body slower than this, averaged over --body-rate-window-seconds of waiting for it, is cut; an upload keeps what arrived (0: no floor)',
    check: atLeastZero('bytes per second, 0 for none')
  }),
  bodyRateWindowSeconds: declare({
    kind: number, default: 30, arg: '<seconds>',
    help: 'the span over which a request body\'s rate is averaged: a hiccup shorter than this is not a trickle',
    check: positive('seconds')
  }),
  scrubIntervalHours: declare({
    kind: number, default: 0, arg: '<hours>',
    // Reads already check every block they touch; the scrub finds rot in blocks nobody reads.
    help: 'hours between checks of every block against its CID, read at scrubMbps (0: never)',
    check: atLeastZero('hours, 0 for never')
  }),
  scrubMbps: declare({
    kind: number, default: 400, arg: '<n>',
    help: 'read rate of a scrub, Mbit/s, so it never crowds out pulls',
    check: positive('Mbit/s')
  }),
  gcIntervalMinutes: declare({
    kind: number, default: 0, arg: '<minutes>',
    help: 'minutes between garbage collections of unreferenced blocks (0: only after drops)',
    check: atLeastZero('minutes, 0 for none')
  }),
  gcGraceSeconds: declare({
    kind: number, default: 60, arg: '<seconds>',
    // They may be recorded a moment after they are written.
    help: 'blocks written this recently are never collected',
    check: atLeastZero('seconds')
  }),
  mesh: declare({
    kind: boolean, default: false,
    help: 'join a mesh even with no peer given (others dial in)'
  }),
  p2pListen: declare({
    kind: list, default: ['/ip4/127.0.0.1/tcp/0'], arg: '<multiaddr>',
    help: 'libp2p listen address (repeatable)'
  }),
  peers: declare({
    kind: list, default: [], arg: '<multiaddr>', flag: 'peer',
    help: 'join the mesh through this node, a multiaddr with /p2p/<id> (repeatable); makes the node a mesh member'
  }),
  mdns: declare({
    kind: boolean, default: false,
    help: 'find peers on the local network by mDNS; makes the node a mesh member'
  }),
  swarmKeyFile: declare({
    kind: optionalText, default: undefined, arg: '<file>', flag: 'swarm-key',
    help: 'pre-shared key file (swarm.key format): only nodes with the same key connect'
  }),
  dnsServers: declare({
    kind: list, default: [], arg: '<host:port>', flag: 'dns-server',
    // node:dns takes `host`, `host:port` and `[v6]:port`; checked here so a typo fails at start.
    help: 'a DNS server for DNSLink lookups: an IP address, with :port if not 53 ([v6]:port) (repeatable); default: the system\'s',
    check: servers => servers.find(server => !DNS_SERVER.test(server)) === undefined ? undefined : 'must be IP addresses, each with an optional :port ([v6]:port)'
  }),
  mirrors: declare({
    kind: structured(parseMirrors), default: [], arg: '<json>',
    help: 'pull-through mirrors of upstream registries: [{"registry": "docker.io", "url": "https://registry-1.docker.io", "credentialsFile": "/etc/shoal/docker.io.json"}]; a pull of <registry>/<name> (or <name>?ns=<registry>) fetches what the fleet lacks from there'
  }),
  mirrorTagTtlSeconds: declare({
    kind: number, default: 60, arg: '<seconds>',
    help: 'how long a mirrored tag is served before it is resolved at its upstream again',
    check: atLeastZero('seconds')
  }),
  operatorKey: declare({
    kind: optionalText, default: undefined, arg: '<file>', yaml: 'fleet.operatorKey',
    help: 'the fleet operator\'s public key (operator.pub from `shoal fleet init`): only nodes it certified (`shoal fleet admit`) change the fleet\'s catalogue'
  }),
  advertiseUrl: declare({
    kind: optionalText, default: undefined, arg: '<url>',
    help: 'HTTP URL peers fetch blocks from (default http://<listen>, https:// with TLS)',
    check: value => value === undefined || /^https?:\/\//.test(value) ? undefined : 'must be an http(s) URL'
  }),
  name: declare({
    kind: optionalText, default: undefined, arg: '<name>',
    help: 'node name in the fleet inventory (default its peer id)'
  }),
  labels: declare({
    kind: map, default: {}, arg: '<key=value>', flag: 'label',
    help: 'node label, for placement by label (repeatable)'
  }),
  uploadLimitMbps: declare({
    kind: number, default: 0, arg: '<n>',
    help: 'cap on what this node sends to peers over /ipfs/, Mbit/s (0: none)',
    check: atLeastZero('Mbit/s, 0 for no cap')
  }),
  gatewayFetch: declare({
    kind: boolean, default: false,
    help: '/ipfs/<cid> also answers for blocks only peers hold'
  }),
  heartbeatSeconds: declare({
    kind: number, default: 10, arg: '<seconds>',
    // Every node of a fleet should use the same value: one silent for three is shown as silent.
    help: 'seconds between presence messages (a node silent for three is marked silent)',
    check: positive('seconds')
  }),
  catalogueCompactEntries: declare({
    kind: number, default: 500, arg: '<n>',
    // A compaction rewrites the live state as a new generation's snapshot: too small a value
    // rewrites it often, too large keeps more history (storage, start time, and above all a
    // joining node's wait: OrbitDB fetches a log one entry per round trip).
    help: 'entries a catalogue database\'s log holds (and 1 per live key) before it is compacted',
    check: value => Number.isSafeInteger(value) && value >= 10 ? undefined : 'must be a whole number, at least 10'
  }),
  catalogueGraceSeconds: declare({
    kind: number, default: 60, arg: '<seconds>',
    help: 'seconds a compacted catalogue generation stays open for writes that raced the compaction',
    check: atLeastZero('seconds')
  }),
  goneAfterSeconds: declare({
    kind: number, default: 60, arg: '<seconds>',
    // Busy is not gone (issue 11): a node under load still answers a ping within a minute.
    help: 'a node with no sign of life this long is gone and its share placed elsewhere',
    check: positive('seconds')
  }),
  forgetAfterHours: declare({
    kind: number, default: 24, arg: '<hours>',
    help: 'a node gone this long is forgotten by the fleet (shoal nodes forget: at once)',
    check: positive('hours')
  })
}

export type Config = { [K in keyof typeof SETTINGS]: (typeof SETTINGS)[K] extends Setting<infer T> ? T : never }
export type SettingName = keyof Config

const NAMES = Object.keys(SETTINGS) as SettingName[]
const setting = (name: SettingName): Setting<unknown> => SETTINGS[name] as Setting<unknown>

export const DEFAULT_CONFIG: Config = Object.fromEntries(NAMES.map(name => [name, setting(name).default])) as Config

/** `SHOAL_` and the setting's name in upper snake case: `uploadExpiryHours` is SHOAL_UPLOAD_EXPIRY_HOURS. */
export function envName (name: SettingName): string {
  return `SHOAL_${name.replace(/[A-Z]/g, c => `_${c}`).toUpperCase()}`
}

/** The `shoal serve` flag, without its dashes: the name in kebab case unless declared otherwise. */
export function flagName (name: SettingName): string {
  return (setting(name) as { flag?: string }).flag ?? name.replace(/[A-Z]/g, c => `-${c.toLowerCase()}`)
}

/** Every setting with what a command line needs to offer it as a flag. */
export function settingFlags (): Array<{ name: SettingName, flag: string, env: string, arg?: string, help: string, repeatable: boolean, switch: boolean, choices?: readonly string[] }> {
  return NAMES.map(name => {
    const { kind, arg, help } = setting(name)
    return {
      name,
      flag: flagName(name),
      env: envName(name),
      arg,
      help,
      repeatable: kind.fromRepeatedFlag !== undefined,
      switch: kind.switch === true,
      choices: (kind as { choices?: readonly string[] }).choices
    }
  })
}

/** Whether the node joins a mesh at all: a plain single node loads none of libp2p. */
export function meshEnabled (config: Config): boolean {
  return config.mesh || config.mdns || config.peers.length > 0
}

export interface ConfigSources {
  file?: string
  env?: NodeJS.ProcessEnv
  /** Typed values (as from `flagsFromText`); undefined ones are left out. */
  flags?: Partial<Config>
}

export function loadConfig ({ file, env = process.env, flags = {} }: ConfigSources = {}): Config {
  const path = file ?? env.SHOAL_CONFIG
  const layers: Array<Partial<Config>> = [path === undefined ? {} : readConfigFile(path)]
  const fromEnv: Record<string, unknown> = {}
  for (const name of NAMES) {
    const value = env[envName(name)]
    if (value !== undefined && value !== '') fromEnv[name] = read(name, envName(name), () => setting(name).kind.fromText(value), value)
  }
  layers.push(fromEnv)
  const fromFlags: Record<string, unknown> = {}
  for (const [name, value] of Object.entries(flags)) {
    if (value === undefined) continue
    if (!(name in SETTINGS)) throw new ConfigError(`unknown setting ${name}`)
    fromFlags[name] = read(name as SettingName, `--${flagName(name as SettingName)}`, () => value, value)
  }
  layers.push(fromFlags)
  const config = Object.assign({}, DEFAULT_CONFIG, ...layers) as Config
  if ((config.tokenRealm === undefined) !== (config.tokenPublicKey === undefined)) {
    throw new ConfigError(`tokenRealm and tokenPublicKey go together (an external token issuer): ${config.tokenRealm === undefined ? 'tokenPublicKey' : 'tokenRealm'} is set, ${config.tokenRealm === undefined ? 'tokenRealm' : 'tokenPublicKey'} is not`)
  }
  if ((config.tlsCert === undefined) !== (config.tlsKey === undefined)) {
    throw new ConfigError(`tlsCert and tlsKey go together: ${config.tlsCert === undefined ? 'tlsKey' : 'tlsCert'} is set, ${config.tlsCert === undefined ? 'tlsCert' : 'tlsKey'} is not`)
  }
  // A node is marked silent after three presence intervals; gone must come later than that.
  if (config.goneAfterSeconds < 3 * config.heartbeatSeconds) {
    throw new ConfigError(`goneAfterSeconds must be at least three heartbeats (${3 * config.heartbeatSeconds} s with heartbeatSeconds ${config.heartbeatSeconds}), not ${config.goneAfterSeconds}`)
  }
  return config
}

/**
 * Flag values as commander collects them (text, lists of text for repeatable flags, true for
 * switches) to typed values, each refused with its flag's name when it is not one.
 */
export function flagsFromText (raw: Partial<Record<SettingName, string | string[] | boolean>>): Partial<Config> {
  const flags: Record<string, unknown> = {}
  for (const name of NAMES) {
    const value = raw[name]
    if (value === undefined) continue
    const { kind } = setting(name)
    const source = `--${flagName(name)}`
    flags[name] = read(name, source, () => {
      if (typeof value === 'boolean') return value
      if (Array.isArray(value)) return kind.fromRepeatedFlag === undefined ? kind.fromText(value.at(-1) ?? '') : kind.fromRepeatedFlag(value)
      return kind.fromText(value)
    }, value)
  }
  return flags as Partial<Config>
}

/** Reads and checks one setting's value, refusing it with the setting, the value and where it came from. */
function read (name: SettingName, source: string, parse: () => unknown, given: unknown): unknown {
  const { check } = setting(name)
  let why: string | undefined
  let value: unknown
  try {
    value = parse()
    why = check?.(value) ?? (Number.isNaN(value) ? 'must be a number' : undefined)
  } catch (err) {
    why = (err as Error).message
  }
  if (why !== undefined) throw new ConfigError(`${name} ${why}, not ${JSON.stringify(given)} (from ${source})`)
  return value
}

/** Parses `key=value` pairs (labels). */
function parseLabels (pairs: string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const pair of pairs.map(p => p.trim()).filter(p => p !== '')) {
    const eq = pair.indexOf('=')
    if (eq <= 0) throw new Error(`must be key=value pairs (${JSON.stringify(pair)} is not key=value)`)
    labels[pair.slice(0, eq)] = pair.slice(eq + 1)
  }
  return labels
}

function readConfigFile (path: string): Partial<Config> {
  let source: string
  try {
    source = readFileSync(path, 'utf8')
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`)
  }
  // yaml is required here, not imported with this module: a node started without a config file
  // (flags, environment) never loads it (about 1 MiB of RSS).
  const { parse: parseYaml } = createRequire(import.meta.url)('yaml') as typeof Yaml
  let value: unknown
  try {
    value = parseYaml(source)
  } catch (err) {
    throw new ConfigError(`config file ${path}: ${((err as Error).message.split('\n')[0] ?? '').replace(/:$/, '')}`)
  }
  if (value === null || value === undefined) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new ConfigError(`config file ${path} must be a YAML mapping`)
  const config: Record<string, unknown> = {}
  readSection(value as Record<string, unknown>, '', path, config)
  return config as Partial<Config>
}

/** Where each setting sits in the YAML file: its `yaml` path, or its name at the top. */
const YAML_PATHS = new Map(NAMES.map(name => [setting(name).yaml ?? name, name]))

/** Reads the settings of one mapping of the file (`prefix`: its path, as `auth.`), and its sections. */
function readSection (section: Record<string, unknown>, prefix: string, file: string, into: Record<string, unknown>): void {
  const known = [...new Set([...YAML_PATHS.keys()].filter(key => key.startsWith(prefix)).map(key => key.slice(prefix.length).split('.')[0] as string))]
  const unknown = Object.keys(section).filter(key => !known.includes(key))
  if (unknown.length > 0) throw new ConfigError(`config file ${file} has unknown keys${prefix === '' ? '' : ` in ${prefix.slice(0, -1)}`}: ${unknown.join(', ')} (known: ${known.join(', ')})`)
  for (const [key, given] of Object.entries(section)) {
    const name = YAML_PATHS.get(prefix + key)
    if (name !== undefined) {
      into[name] = read(name, `config file ${file}`, () => setting(name).kind.fromYaml(given), given)
    } else if (given !== null && given !== undefined) {
      if (typeof given !== 'object' || Array.isArray(given)) throw new ConfigError(`config file ${file}: ${prefix}${key} must be a mapping`)
      readSection(given as Record<string, unknown>, `${prefix}${key}.`, file, into)
    }
  }
}

export function parseListen (listen: string): { host: string, port: number } {
  const match = /^(.+):(\d{1,5})$/.exec(String(listen))
  const port = Number(match?.[2])
  if (match === null || port > 65535) throw new ConfigError(`listen must be host:port, not ${JSON.stringify(listen)}`)
  return { host: (match[1] ?? '').replace(/^\[(.*)\]$/, '$1'), port }
}
