// Runs skopeo isolated from the machine's own container configuration and caches.
//
// Every call gets a scratch directory used as HOME, XDG_* and --tmpdir, plus its own policy and
// registries.conf. `_CONTAINERS_ROOTLESS_UID` makes containers/image treat even root as rootless,
// so its blob-info cache goes under the scratch XDG_DATA_HOME instead of /var/lib/containers:
// no state is shared between calls (a benchmark run cannot profit from a previous one) and
// nothing outside the scratch directory is touched.

import { spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'

export interface SkopeoOptions {
  signal?: AbortSignal
  /** Default 10 minutes. */
  timeoutMs?: number
  /** Verify the registry's TLS certificate against the CAs (`*.crt`) in this directory; default: plain HTTP, unverified. */
  certDir?: string
  /** `user:password` for the registry. */
  creds?: string
}

export interface SkopeoOutput {
  stdout: string
  stderr: string
}

export interface CopyOptions extends SkopeoOptions {
  /** Copy every image of an index (`--all`); default: only the one matching this machine. */
  all?: boolean
  /** Tag inside the OCI layout (`oci:<dir>:<tag>`); default none (the layout's only entry on read). */
  layoutTag?: string
  /**
   * `--preserve-digests` (default true). skopeo 1.9 cannot write a Docker manifest list into an
   * `oci:` layout without converting it, so pulling one needs `false` (and then gets a new digest).
   */
  preserveDigests?: boolean
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000

// Accepts any signature: the images come from the test itself.
const INSECURE_POLICY = JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] })

/** Runs `skopeo <global flags> <args>`; rejects with stderr in the message on a non-zero exit. */
export async function skopeo (args: string[], options: SkopeoOptions = {}): Promise<SkopeoOutput> {
  const scratch = await createScratch()
  try {
    const globalFlags = ['--policy', scratch.policyPath, '--registries.d', scratch.registriesDir, '--tmpdir', scratch.tmpDir]
    return await run('skopeo', [...globalFlags, ...args], scratch.env, options)
  } finally {
    await rm(scratch.root, { recursive: true, force: true })
  }
}

/**
 * Pushes an OCI layout to a registry, byte for byte (without --preserve-digests skopeo would gzip
 * the uncompressed layers and every digest would change).
 */
export async function copyToRegistry (layoutDir: string, ref: string, options: CopyOptions = {}): Promise<SkopeoOutput> {
  return await skopeo([
    'copy', '--quiet', ...preserveDigestsFlag(options), ...registryFlags('dest', options),
    ...(options.all === true ? ['--all'] : []),
    ociRef(layoutDir, options.layoutTag),
    dockerRef(ref)
  ], options)
}

/**
 * Pulls from a registry into an OCI layout directory (created when missing), byte for byte
 * (without --dest-oci-accept-uncompressed-layers skopeo would compress the layers on the way in).
 */
export async function copyFromRegistry (ref: string, layoutDir: string, options: CopyOptions = {}): Promise<SkopeoOutput> {
  return await skopeo([
    'copy', '--quiet', ...preserveDigestsFlag(options), '--dest-oci-accept-uncompressed-layers', ...registryFlags('src', options),
    ...(options.all === true ? ['--all'] : []),
    dockerRef(ref),
    ociRef(layoutDir, options.layoutTag)
  ], options)
}

/**
 * The manifest (or index) exactly as the source serves it. `ref` is `host:port/repo:tag` (or
 * `@digest`), or any skopeo image name with its transport, e.g. `oci:/some/dir:tag`.
 */
export async function inspectRaw (ref: string, options: SkopeoOptions = {}): Promise<string> {
  const isRegistry = !hasTransport(ref) || ref.startsWith('docker://')
  const args = ['inspect', '--raw', ...(isRegistry ? registryFlags(undefined, options) : []), isRegistry ? dockerRef(ref) : ref]
  return (await skopeo(args, options)).stdout
}

/** TLS and credentials for the registry end of a copy (`src`, `dest`) or of an inspect (no side). */
function registryFlags (side: 'src' | 'dest' | undefined, options: SkopeoOptions): string[] {
  const flag = (name: string): string => side === undefined ? `--${name}` : `--${side}-${name}`
  return [
    ...(options.certDir === undefined ? [`${flag('tls-verify')}=false`] : [flag('cert-dir'), options.certDir]),
    ...(options.creds === undefined ? [] : [flag('creds'), options.creds])
  ]
}

function preserveDigestsFlag (options: CopyOptions): string[] {
  return options.preserveDigests === false ? [] : ['--preserve-digests']
}

function ociRef (layoutDir: string, tag: string | undefined): string {
  return tag === undefined ? `oci:${layoutDir}` : `oci:${layoutDir}:${tag}`
}

function dockerRef (ref: string): string {
  return ref.startsWith('docker://') ? ref : `docker://${ref}`
}

function hasTransport (ref: string): boolean {
  return /^(docker|oci|oci-archive|dir|docker-archive|docker-daemon|containers-storage):/.test(ref)
}

// ---------------------------------------------------------------------------------------------

interface Scratch {
  root: string
  tmpDir: string
  policyPath: string
  registriesDir: string
  env: NodeJS.ProcessEnv
}

async function createScratch (): Promise<Scratch> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'shoal-skopeo-'))
  const dirs = {
    home: path.join(root, 'home'),
    runtime: path.join(root, 'run'),
    config: path.join(root, 'config'),
    data: path.join(root, 'data'),
    cache: path.join(root, 'cache'),
    tmp: path.join(root, 'tmp'),
    registriesD: path.join(root, 'registries.d')
  }
  for (const dir of Object.values(dirs)) await mkdir(dir, { recursive: true, mode: 0o700 })
  const policyPath = path.join(root, 'policy.json')
  const registriesConf = path.join(root, 'registries.conf')
  await writeFile(policyPath, INSECURE_POLICY)
  await writeFile(registriesConf, '') // no mirrors, no search registries, no blocked hosts
  return {
    root,
    tmpDir: dirs.tmp,
    policyPath,
    registriesDir: dirs.registriesD,
    env: {
      ...withoutContainerVariables(process.env),
      HOME: dirs.home,
      XDG_RUNTIME_DIR: dirs.runtime,
      XDG_CONFIG_HOME: dirs.config,
      XDG_DATA_HOME: dirs.data,
      XDG_CACHE_HOME: dirs.cache,
      TMPDIR: dirs.tmp,
      CONTAINERS_REGISTRIES_CONF: registriesConf,
      _CONTAINERS_ROOTLESS_UID: String(rootlessUid())
    }
  }
}

/** Any non-zero uid makes containers/image use the XDG paths; keep a real one when not root. */
function rootlessUid (): number {
  const uid = process.getuid?.() ?? 0
  return uid === 0 ? 1000 : uid
}

/** Drops settings that would point skopeo at the machine's own credentials or configuration. */
function withoutContainerVariables (env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const dropped = new Set(['REGISTRY_AUTH_FILE', 'DOCKER_CONFIG', 'CONTAINERS_CONF', 'CONTAINERS_STORAGE_CONF', 'CONTAINERS_POLICY_JSON'])
  return Object.fromEntries(Object.entries(env).filter(([name]) => !dropped.has(name)))
}

async function run (command: string, args: string[], env: NodeJS.ProcessEnv, options: SkopeoOptions): Promise<SkopeoOutput> {
  const timeout = AbortSignal.timeout(options.timeoutMs ?? DEFAULT_TIMEOUT_MS)
  const signal = options.signal === undefined ? timeout : AbortSignal.any([options.signal, timeout])
  const child = spawn(command, args, { env, signal, stdio: ['ignore', 'pipe', 'pipe'] })
  const stdout: Buffer[] = []
  const stderr: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
  const { code, failure } = await new Promise<{ code: number | null, failure?: Error }>((resolve) => {
    child.once('error', (error) => { resolve({ code: null, failure: error }) })
    child.once('close', (exitCode) => { resolve({ code: exitCode }) })
  })
  const output = { stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }
  if (code === 0 && failure === undefined) return output
  const reason = failure !== undefined ? failure.message : `exit code ${String(code)}`
  throw new Error(`${command} ${args.join(' ')} failed (${reason}): ${output.stderr.trim()}`)
}
