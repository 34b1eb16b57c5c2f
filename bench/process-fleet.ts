// A fleet of Shoal nodes as separate processes on loopback, for the fleet benchmarks that start
// many of them (bench/fleet-scale.ts, bench/catalogue-growth.ts): identities made beforehand so
// every node can be told its peers' addresses at once, starts a few at a time, and every process
// killed when the benchmark ends, fails or is interrupted.
import type { ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync, rmSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import net from 'node:net'
import path from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { loadOrCreateIdentity } from '../src/mesh/identity.ts'
import { REPO_ROOT, freePort, startNodeProcess } from '../test/support/node-process.ts'
import type { RegistryProcess } from '../test/support/node-process.ts'
import { eventually } from './node-probes.ts'

export const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
export const WORK_DIR = path.join(OUT_DIR, 'work')

export interface FleetNode {
  index: number
  name: string
  dataDir: string
  peerId: string
  p2pPort: number
  /** `/ip4/127.0.0.1/tcp/<p2pPort>/p2p/<peerId>` */
  address: string
  process: RegistryProcess
  url: string
  pid: number
}

export interface ProcessFleetOptions {
  size: number
  runDir: string
  /** Arguments every node gets besides --name, --p2p-listen and its --peer flags. */
  args?: string[]
  /** Nodes started at once (each start costs a core for a second or two). */
  concurrency?: number
  log: (message: string) => void
}

/**
 * Node i (i ≥ 1) is told of node i - 1 and node ⌊i/2⌋: two peers at most, a connected graph of
 * diameter ~log2 N with no node everyone dials. Node 0 is told of none (it runs with --mesh).
 */
export function peersOf (index: number): number[] {
  return index === 0 ? [] : [...new Set([index - 1, Math.floor(index / 2)])]
}

/**
 * A free port below the kernel's ephemeral range. The libp2p ports are chosen before any node
 * starts (each node is given its peers' addresses), and a free HTTP port is closed again before
 * its node binds it: a port from the ephemeral range could be taken meanwhile by one of the
 * fleet's own outgoing connections (seen at the 12th and the 21st of 30 nodes).
 */
async function portBelowEphemeral (): Promise<number> {
  const [low] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
  const ceiling = Math.min(low ?? 32768, 32768)
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * (ceiling - 20_000))
    if (takenPorts.has(port)) continue
    if (await bindable(port)) {
      takenPorts.add(port)
      return port
    }
  }
  return await freePort()
}

const takenPorts = new Set<number>()

async function bindable (port: number): Promise<boolean> {
  const server = net.createServer()
  return await new Promise<boolean>(resolve => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

/** Starts `size` nodes; each one's identity is written first, so the peers it is given can be dialled as soon as they start. */
export async function startProcessFleet (options: ProcessFleetOptions): Promise<FleetNode[]> {
  const planned = await Promise.all(Array.from({ length: options.size }, async (_, index) => {
    const name = `node-${index}`
    const dataDir = path.join(options.runDir, name)
    // Where the node's mesh keeps its key (src/mesh/fleet.ts: <data>/mesh, src/mesh/mesh.ts: identity.key).
    const peerId = peerIdFromPrivateKey(await loadOrCreateIdentity(path.join(dataDir, 'mesh', 'identity.key'))).toString()
    const p2pPort = await portBelowEphemeral()
    return { index, name, dataDir, peerId, p2pPort, address: `/ip4/127.0.0.1/tcp/${p2pPort}/p2p/${peerId}` }
  }))
  const fleet: FleetNode[] = []
  const started = performance.now()
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < planned.length) {
      const plan = planned[next++]!
      const peers = peersOf(plan.index).flatMap((peer) => ['--peer', planned[peer]!.address])
      const child = await startNodeProcess({
        dataDir: plan.dataDir,
        port: await portBelowEphemeral(),
        // A node joining a large fleet on a saturated machine can take minutes to open its catalogue.
        readyTimeoutMs: 600_000,
        args: ['--name', plan.name, '--p2p-listen', `/ip4/127.0.0.1/tcp/${plan.p2pPort}`, ...(plan.index === 0 ? ['--mesh'] : peers), ...(options.args ?? [])]
      })
      guardChild(child.process)
      fleet.push({ ...plan, process: child, url: child.url, pid: child.process.pid! })
      options.log(`started ${plan.name} (${fleet.length}/${planned.length}, ${seconds(started)} s)`)
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 3, planned.length) }, worker))
  } catch (error) {
    await killFleet(fleet)
    throw error
  }
  return fleet.sort((a, b) => a.index - b.index)
}

/** Until every node's /api/v1/nodes lists the whole fleet. */
export async function waitForMembers (fleet: FleetNode[], log: (message: string) => void, timeoutMs = 300_000): Promise<void> {
  const started = performance.now()
  let lastReport = 0
  await eventually(`every node to list ${fleet.length} nodes`, async () => {
    const counts = await Promise.all(fleet.map(async (node) => {
      const response = await fetch(`${node.url}/api/v1/nodes`, { signal: AbortSignal.timeout(10_000) })
      if (!response.ok) throw new Error(`GET ${node.url}/api/v1/nodes answered ${response.status}`)
      return (await response.json() as { nodes: unknown[] }).nodes.length
    }))
    if (performance.now() - lastReport > 10_000) {
      lastReport = performance.now()
      log(`membership: ${counts.filter((count) => count === fleet.length).length}/${fleet.length} nodes list all ${fleet.length} (${seconds(started)} s)`)
    }
    return counts.every((count) => count === fleet.length) ? true : undefined
  }, timeoutMs)
  log(`every node lists all ${fleet.length} nodes (${seconds(started)} s)`)
}

export async function stopFleet (fleet: FleetNode[]): Promise<void> {
  await Promise.all(fleet.map(async (node) => await node.process.stop()))
}

export async function killFleet (fleet: FleetNode[]): Promise<void> {
  await Promise.all(fleet.map(async (node) => await node.process.kill9()))
}

// ---------------------------------------------------------------------------------------------
// Nothing outlives the benchmark: on any exit, Ctrl-C or SIGTERM every node process still running
// gets SIGKILL, and the run directories given to removeOnExit are deleted.

const children = new Set<ChildProcess>()
const dirs = new Set<string>()
let guarded = false

function guardChild (child: ChildProcess): void {
  installGuard()
  children.add(child)
  child.once('exit', () => { children.delete(child) })
}

/** Deletes `dir` when the process exits, however it exits. */
export function removeOnExit (dir: string): void {
  installGuard()
  dirs.add(dir)
}

function installGuard (): void {
  if (guarded) return
  guarded = true
  const cleanUp = (): void => {
    for (const child of children) child.kill('SIGKILL')
    // Nodes still starting are not in `children` yet: any child of this process goes too.
    for (const pid of childPids()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited meanwhile
      }
    }
    for (const dir of dirs) {
      try {
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 })
      } catch (error) {
        process.stderr.write(`could not remove ${dir}: ${(error as Error).message}\n`)
      }
    }
  }
  process.on('exit', cleanUp)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(signal, () => {
      process.stderr.write(`\n${signal}: killing the node processes and exiting\n`)
      process.exit(130)
    })
  }
}

/** Pids of this process's live children, from /proc. */
function childPids (): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === process.pid) pids.push(Number(entry))
    } catch {
      // gone
    }
  }
  return pids
}

export async function freshRunDir (name: string): Promise<string> {
  const runDir = path.join(WORK_DIR, `${name}-${Date.now()}`)
  await mkdir(runDir, { recursive: true })
  removeOnExit(runDir)
  return runDir
}

/** The report to stdout, and both files under bench/out: `<name>-latest.md` and `<name>-latest.json`. */
export async function writeResults (name: string, markdown: string, json: unknown, log: (message: string) => void): Promise<void> {
  process.stdout.write(markdown)
  await mkdir(OUT_DIR, { recursive: true })
  await writeFile(path.join(OUT_DIR, `${name}-latest.md`), markdown)
  await writeFile(path.join(OUT_DIR, `${name}-latest.json`), `${JSON.stringify(json, null, 2)}\n`)
  log(`wrote bench/out/${name}-latest.md and ${name}-latest.json`)
}

export function seconds (since: number): string {
  return ((performance.now() - since) / 1000).toFixed(1)
}

export function median (values: number[]): number {
  return quantile(values, 0.5)
}

/** Nearest-rank quantile: the smallest value with at least q of the values at or below it. */
export function quantile (values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  if (sorted.length === 0) return Number.NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}
