// Starts registries as real child processes: a Shoal node (`src/cli/main.ts serve`) or the
// reference registry (CNCF Distribution, Debian's /usr/bin/docker-registry), both on loopback.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFile, mkdir, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface RegistryProcess {
  /** `http://127.0.0.1:<port>` */
  url: string
  /** `127.0.0.1:<port>`, the form image references use. */
  host: string
  port: number
  process: ChildProcess
  /** Peak resident set size (VmHWM) seen so far, in bytes; 0 when never read. */
  peakRssBytes: () => number
  /** Starts the peak over from the current RSS (Linux: `5` into /proc/<pid>/clear_refs). */
  resetPeakRss: () => Promise<void>
  /** Last stdout/stderr of the process, for error messages. */
  output: () => string
  /** Sends `signal` (default SIGTERM), SIGKILL after 10 s, and waits for the exit. */
  stop: (signal?: NodeJS.Signals) => Promise<StopResult>
  kill9: () => Promise<StopResult>
  [Symbol.asyncDispose]: () => Promise<void>
}

export interface StopResult {
  /** VmHWM of the process just before it was signalled, in bytes. */
  peakRssBytes: number
  exitCode: number | null
  signal: NodeJS.Signals | null
}

export interface NodeProcessOptions {
  dataDir: string
  port?: number
  /** Extra arguments after `serve ...`. */
  args?: string[]
  env?: NodeJS.ProcessEnv
  /** How long to wait for `GET /v2/`; default 30 s. */
  readyTimeoutMs?: number
}

export interface DockerRegistryOptions {
  dataDir: string
  port?: number
  readyTimeoutMs?: number
  /** An htpasswd file: Distribution's `auth.htpasswd` (Basic credentials on every request). */
  htpasswd?: string
  /** Distribution's pull-through cache mode: the upstream registry's URL (`proxy.remoteurl`). */
  proxyUrl?: string
}

const OUTPUT_TAIL_BYTES = 16 * 1024
const RSS_POLL_MS = 250
const STOP_GRACE_MS = 10_000

/** Spawns `bin/shoal serve --listen 127.0.0.1:<port> --data <dataDir>` and waits for /v2/. */
export async function startNodeProcess (options: NodeProcessOptions): Promise<RegistryProcess> {
  const port = options.port ?? await freePort()
  const args = ['serve', '--listen', `127.0.0.1:${port}`, '--data', options.dataDir, ...(options.args ?? [])]
  // bin/shoal: the launcher users run, with its Node 24 and its V8 flags (it execs, so the
  // child's pid is the node's own).
  const child = spawn(path.join(REPO_ROOT, 'bin', 'shoal'), args, {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  return await superviseUntilReady(child, port, options.readyTimeoutMs)
}

/** Spawns the reference registry with a minimal config: filesystem storage in dataDir, deletes on. */
export async function startDockerRegistry (options: DockerRegistryOptions): Promise<RegistryProcess> {
  const port = options.port ?? await freePort()
  await mkdir(options.dataDir, { recursive: true })
  const configPath = path.join(options.dataDir, 'registry-config.yml')
  await writeFile(configPath, dockerRegistryConfig(options.dataDir, port, options.htpasswd, options.proxyUrl))
  // REGISTRY_* variables override the config file; keep the caller's ones out.
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('REGISTRY_')))
  const child = spawn('docker-registry', ['serve', configPath], { env, stdio: ['ignore', 'pipe', 'pipe'] })
  return await superviseUntilReady(child, port, options.readyTimeoutMs)
}

function dockerRegistryConfig (dataDir: string, port: number, htpasswd: string | undefined, proxyUrl: string | undefined): string {
  return [
    ...(proxyUrl === undefined ? [] : ['proxy:', `  remoteurl: ${JSON.stringify(proxyUrl)}`]),
    ...(htpasswd === undefined ? [] : ['auth:', '  htpasswd:', '    realm: bench', `    path: ${JSON.stringify(htpasswd)}`]),
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(dataDir)}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ''
  ].join('\n')
}

/** A port that was free a moment ago (bind port 0, read it, close). */
export async function freePort (): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', resolve)
  })
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => { resolve() }))
  if (address === null || typeof address === 'string') throw new Error('could not read the bound port')
  return address.port
}

/** Reads VmHWM (peak resident set) of a live process from /proc, in bytes; undefined when gone. */
export async function readPeakRss (pid: number): Promise<number | undefined> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const match = /^VmHWM:\s+(\d+)\s+kB$/m.exec(status)
    return match?.[1] === undefined ? undefined : Number(match[1]) * 1024
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------

async function superviseUntilReady (child: ChildProcess, port: number, readyTimeoutMs = 30_000): Promise<RegistryProcess> {
  const url = `http://127.0.0.1:${port}`
  let outputTail = ''
  const keepOutput = (chunk: Buffer): void => { outputTail = (outputTail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES) }
  child.stdout?.on('data', keepOutput)
  child.stderr?.on('data', keepOutput)

  let spawnFailure: Error | undefined
  const exited = new Promise<{ exitCode: number | null, signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (exitCode, signal) => { resolve({ exitCode, signal }) })
    // A process that could not be spawned never emits 'exit'.
    child.once('error', (error) => {
      spawnFailure = error
      if (child.pid === undefined) resolve({ exitCode: null, signal: null })
    })
  })

  // VmHWM only grows; polling keeps the last value in case the process dies on its own.
  let peakRss = 0
  const recordPeakRss = async (): Promise<void> => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return
    peakRss = Math.max(peakRss, await readPeakRss(child.pid) ?? 0)
  }
  const poller = setInterval(() => { void recordPeakRss() }, RSS_POLL_MS)
  poller.unref()
  void exited.then(() => { clearInterval(poller) })

  const stop = async (signal: NodeJS.Signals = 'SIGTERM'): Promise<StopResult> => {
    await recordPeakRss()
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal)
      const escalation = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS)
      await exited
      clearTimeout(escalation)
    }
    return { peakRssBytes: peakRss, ...await exited }
  }

  const ready = await Promise.race([
    waitForV2(url, readyTimeoutMs).then(() => undefined, (error: unknown) => error as Error),
    exited.then(({ exitCode, signal }) => spawnFailure ?? new Error(`exited (code ${String(exitCode)}, signal ${String(signal)}) before answering`))
  ])
  if (ready !== undefined) {
    await stop('SIGKILL')
    throw new Error(`${child.spawnfile} on port ${port}: ${ready.message}\n${outputTail}`)
  }
  return {
    url,
    host: `127.0.0.1:${port}`,
    port,
    process: child,
    peakRssBytes: () => peakRss,
    resetPeakRss: async () => {
      if (child.pid !== undefined) await writeFile(`/proc/${child.pid}/clear_refs`, '5')
      peakRss = 0
    },
    output: () => outputTail,
    stop,
    kill9: async () => await stop('SIGKILL'),
    [Symbol.asyncDispose]: async () => { await stop() }
  }
}

/** Polls `GET /v2/` until it answers 200 (or 401, a registry that wants a token). */
async function waitForV2 (url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastProblem = 'no answer yet'
  while (Date.now() < deadline) {
    try {
      const response = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(2000) })
      await response.body?.cancel()
      if (response.status === 200 || response.status === 401) return
      lastProblem = `GET /v2/ answered ${response.status}`
    } catch (error) {
      lastProblem = (error as Error).message
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`not ready after ${timeoutMs} ms: ${lastProblem}`)
}
