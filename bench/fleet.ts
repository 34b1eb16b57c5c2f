// Fleet benchmark, "the reason Shoal exists": N machines pull one image at once, either all from
// one central registry or each through its own Shoal node of a fleet where one seeder holds it.
//
//   node bench/fleet.ts [--sizes 1,2,4,8] [--rate 200mbit] [--mib 256] [--skip-central] [--skip-shoal]
//                       [--shape-clients] [--timeline]
//
// --timeline prints every node's fetched MiB each second of the Shoal pull and writes every node's
// access log to bench/out/fleet-timeline-<node>.log: where a fleet pull's time goes.
//
// Needs root: it re-executes itself as `unshare -n -- node bench/fleet.ts --inside ...`, so every
// registry, node and client runs in a private network namespace holding only a loopback, and there
// it caps each server's egress with tc (notes/fleet-netns.md): an HTB root on lo (r2q 1000, default
// class unshaped at 10gbit) and one class per shaped port, `--rate` each (200 Mbit/s = 25 MB/s), so
// that bandwidth, not CPU, is the bottleneck, as in a real fleet.
//
// - Central: docker-registry on 127.0.0.1:7000 (class 1:10); N skopeo clients pull from it at once.
// - Shoal: a seeder (HTTP 7001, class 1:11, libp2p 7101) holds the image; N nodes (HTTP 7001+i,
//   class 1:(11+i) in hex, libp2p 7101+i) join it with --peer; each node's own skopeo client pulls
//   through it at once. Blocks move between nodes over HTTP `GET /ipfs/<cid>` (D4): that is what is
//   shaped; libp2p ports (DHT, catalogue) are not.
//
// Shaping matches `ip src 127.0.0.1 and ip sport <port>`. Peers (and central's clients, which are
// remote machines in a real fleet) connect to 127.0.0.1. A node's own client stands for docker on
// the same machine, whose bytes never cross the NIC: it connects to 127.0.0.2 (nodes listen on
// 0.0.0.0, which inside the namespace is loopback only), so that leg is not shaped. With
// --shape-clients it connects to 127.0.0.1 too and each node's cap covers its client's bytes as well.
//
// Every fleet is fresh (new processes, new data directories) per N and per contender. Before the
// clock starts, a 3 MiB image is pushed and pulled by every client (JIT, connections, the DHT
// warmed, as in a fleet that has been running), the image under test is pushed, every node's
// catalogue lists all N+1 nodes, the tag, and the seeder as the image's holder (see waitForHolder).
// Measured: wall time from starting the N pulls to the last one done; egress = bytes sent by the
// seeder's (or the registry's) tc class during the pulls. The pulled manifest digest of every client
// is checked. For diagnosis: per Shoal node, its tc class's bytes, bytes fetched by provider and
// /ipfs answers by status (from /metrics); CPU used during the pulls (machine, servers, clients).
// The table goes to stdout and to bench/out/fleet-latest.md, the raw numbers to fleet-latest.json.

import { execFileSync, spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { cachedImageLayout, findLayoutEntry } from '../test/support/oci-image.ts'
import type { ImageLayoutResult } from '../test/support/oci-image.ts'
import { REPO_ROOT, startDockerRegistry, startNodeProcess } from '../test/support/node-process.ts'
import type { RegistryProcess } from '../test/support/node-process.ts'
import { copyFromRegistry, copyToRegistry } from '../test/support/skopeo.ts'
import { gitCommit, machineDescription, toolVersion } from './environment.ts'
import { CLOCK_TICKS, eventually, machineJiffies, processStat, scrapeMetrics, subtractMetrics, waitForHolder, waitForTag } from './node-probes.ts'

const MiB = 1024 * 1024
const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
const IMAGES_DIR = path.join(OUT_DIR, 'images')
const WORK_DIR = path.join(OUT_DIR, 'work')
const WARMUP_DIR = path.join(IMAGES_DIR, 'warmup')

const REGISTRY_PORT = 7000
const HTTP_BASE_PORT = 7001
const P2P_BASE_PORT = 7101
const MAX_NODES = 90
/** Peers and central's clients connect here: what the servers send back to it is shaped. */
export const SHAPED_HOST = '127.0.0.1'
/** A node's own client connects here: replies come from 127.0.0.2, which no filter matches. */
export const LOCAL_HOST = '127.0.0.2'
const REPOSITORY = 'fleet/app'
const TAG = 'v1'
const WARMUP_REPOSITORY = 'fleet/warmup'

interface Settings {
  sizes: number[]
  rate: string
  mib: number
  central: boolean
  shoal: boolean
  shapeClients: boolean
  /** Print each node's fetched MiB every second of the pull (a diagnosis: where the time goes). */
  timeline: boolean
}

interface PullRun {
  n: number
  /** Start of the N pulls to the last one done. */
  seconds: number
  /** Each client's own time, in client order. */
  clientSeconds: number[]
  /** Bytes sent by the seeder's (Shoal) or the registry's (central) tc class during the pulls. */
  egressBytes: number
  cpu: CpuUse
}

/** CPU used during the pulls: is bandwidth the bottleneck, or the machine? */
interface CpuUse {
  /** Busy share of all the machine's cores (1 = every core busy all the time). */
  busy: number
  /** CPU seconds of all skopeo clients together. */
  clientSeconds: number
  /** CPU seconds of each server process (the registry; or the seeder, then node-1..N), and of those in the kernel. */
  serverSeconds: number[]
  serverSystemSeconds: number[]
}

interface NodeDiagnosis {
  name: string
  id: string
  port: number
  /** Bytes this node's tc class sent during the pulls: blocks to peers (plus its client's leg with --shape-clients). */
  classBytes: number
  /** shoal_blob_bytes_sent_total during the pulls: blob bytes to its client plus blocks to peers. */
  blobBytesSent: number
  /** Verified block bytes this node fetched, by the name of the node it fetched them from. */
  fetchedFrom: Record<string, number>
  /** `/ipfs/:cid` requests this node answered, by status. */
  gatewayRequests: Record<string, number>
}

interface ShoalRun extends PullRun {
  nodes: NodeDiagnosis[]
}

interface Results {
  central: PullRun[]
  shoal: ShoalRun[]
}

const finishedRunDirs: string[] = []

// ---------------------------------------------------------------------------------------------
// Entry: outside the namespace, re-execute inside it

async function main (): Promise<void> {
  const { settings, inside } = parseSettings()
  if (!inside) {
    process.exitCode = await reexecInsideNamespace()
    return
  }
  await setUpShaping(settings)
  const image = await prepareImage(settings.mib)
  const results: Results = { central: [], shoal: [] }
  try {
    for (const n of settings.sizes) {
      if (settings.central) {
        const run = await measureCentral(n, image)
        results.central.push(run)
        log(`central N=${n}: ${run.seconds.toFixed(2)} s, registry egress ${formatMiB(run.egressBytes)} (clients ${run.clientSeconds.map((s) => s.toFixed(1)).join(', ')} s)`)
        log(`  ${describeCpu(run.cpu, ['docker-registry'])}`)
      }
      if (settings.shoal) {
        const run = await measureShoal(n, image, settings)
        results.shoal.push(run)
        log(`Shoal N=${n}: ${run.seconds.toFixed(2)} s, seeder egress ${formatMiB(run.egressBytes)} (clients ${run.clientSeconds.map((s) => s.toFixed(1)).join(', ')} s)`)
        log(`  ${describeCpu(run.cpu, run.nodes.map((node) => node.name))}`)
        for (const line of describeNodes(run, settings)) log(`  ${line}`)
      }
    }
  } finally {
    for (const runDir of finishedRunDirs) await rm(runDir, { recursive: true, force: true })
  }
  const report = renderReport(settings, image, results)
  process.stdout.write(report)
  await mkdir(OUT_DIR, { recursive: true })
  await writeFile(path.join(OUT_DIR, 'fleet-latest.md'), report)
  await writeFile(path.join(OUT_DIR, 'fleet-latest.json'), JSON.stringify({ settings, commit: gitCommit(), imageBytes: image.totalSize, manifestDigest: image.manifestDigest, results }, null, 2))
  log(`wrote ${path.relative(REPO_ROOT, path.join(OUT_DIR, 'fleet-latest.md'))} and fleet-latest.json`)
}

function parseSettings (): { settings: Settings, inside: boolean } {
  const { values } = parseArgs({
    options: {
      inside: { type: 'boolean', default: false },
      sizes: { type: 'string', default: '1,2,4,8' },
      rate: { type: 'string', default: '200mbit' },
      mib: { type: 'string', default: '256' },
      'skip-central': { type: 'boolean', default: false },
      'skip-shoal': { type: 'boolean', default: false },
      'shape-clients': { type: 'boolean', default: false },
      timeline: { type: 'boolean', default: false }
    }
  })
  const sizes = values.sizes.split(',').map((s) => Number(s.trim()))
  if (sizes.length === 0 || !sizes.every((n) => Number.isInteger(n) && n >= 1 && n <= MAX_NODES)) {
    throw new Error(`--sizes must be a comma-separated list of integers from 1 to ${MAX_NODES}, got ${values.sizes}`)
  }
  const mib = Number(values.mib)
  if (!Number.isInteger(mib) || mib < 4 || mib % 4 !== 0) throw new Error(`--mib must be a multiple of 4 (4 layers), got ${values.mib}`)
  if (!/^\d+(\.\d+)?([kmg]?bit|[kmg]?bps)$/i.test(values.rate)) throw new Error(`--rate must be a tc rate such as 200mbit, got ${values.rate}`)
  const settings: Settings = {
    sizes,
    rate: values.rate,
    mib,
    central: !values['skip-central'],
    shoal: !values['skip-shoal'],
    shapeClients: values['shape-clients'],
    timeline: values.timeline
  }
  if (!settings.central && !settings.shoal) throw new Error('--skip-central and --skip-shoal leave nothing to measure')
  return { settings, inside: values.inside }
}

/** Runs `script` again as `unshare -n -- node <script> --inside <this process's arguments>`; resolves to its exit code. */
export async function reexecInsideNamespace (script = fileURLToPath(import.meta.url)): Promise<number> {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) {
    throw new Error(`${path.relative(REPO_ROOT, script)} needs Linux and root: it runs in its own network namespace (unshare -n) and shapes it with tc`)
  }
  const args = ['-n', '--', process.execPath, ...process.execArgv, script, '--inside', ...process.argv.slice(2)]
  const child = spawn('unshare', args, { stdio: 'inherit' })
  return await new Promise<number>((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code, signal) => { resolve(code ?? (signal === null ? 1 : 128 + (os.constants.signals[signal] ?? 0))) })
  })
}

// ---------------------------------------------------------------------------------------------
// Shaping: one HTB class per server port on the namespace's loopback

/** HTB class ids are hexadecimal: registry 1:10, seeder 1:11, node i 1:(11 + i). */
export function classIdOf (port: number): string {
  return `1:${(0x10 + port - REGISTRY_PORT).toString(16)}`
}

async function setUpShaping (settings: Settings): Promise<void> {
  const ports = [REGISTRY_PORT]
  for (let i = 0; i <= Math.max(...settings.sizes); i++) ports.push(HTTP_BASE_PORT + i)
  shapePorts(settings.rate, ports)
}

/**
 * In a private network namespace (else throws): brings lo up, puts an HTB root on it (default class
 * unshaped at 10gbit) and caps at `rate` what each of `ports` (≥ 7000) sends from SHAPED_HOST.
 */
export function shapePorts (rate: string, ports: number[]): void {
  const ifaces = execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).trim().split('\n')
  if (ifaces.length !== 1 || !ifaces[0]!.includes(' lo:')) {
    throw new Error(`--inside must run in a private network namespace (unshare -n), but this one has:\n${ifaces.join('\n')}`)
  }
  run('ip', ['link', 'set', 'lo', 'up'])
  run('tc', ['qdisc', 'add', 'dev', 'lo', 'root', 'handle', '1:', 'htb', 'default', '99', 'r2q', '1000'])
  run('tc', ['class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', '1:99', 'htb', 'rate', '10gbit'])
  for (const port of ports) {
    run('tc', ['class', 'add', 'dev', 'lo', 'parent', '1:', 'classid', classIdOf(port), 'htb', 'rate', rate, 'ceil', rate])
    run('tc', ['filter', 'add', 'dev', 'lo', 'protocol', 'ip', 'parent', '1:', 'prio', '1', 'u32',
      'match', 'ip', 'src', `${SHAPED_HOST}/32`, 'match', 'ip', 'sport', String(port), '0xffff', 'flowid', classIdOf(port)])
  }
  log(`namespace ready: lo up, ${ports.length} classes at ${rate} (ports ${ports[0]}-${ports.at(-1)} from ${SHAPED_HOST})`)
}

/** Bytes sent so far by each HTB class on lo, by class id. */
export function readClassBytes (): Map<string, number> {
  const text = execFileSync('tc', ['-s', 'class', 'show', 'dev', 'lo'], { encoding: 'utf8' })
  const bytes = new Map<string, number>()
  for (const match of text.matchAll(/^class htb (\S+) [^\n]*\n\s*Sent (\d+) bytes/gm)) bytes.set(match[1]!, Number(match[2]))
  return bytes
}

function classDelta (before: Map<string, number>, after: Map<string, number>, port: number): number {
  const id = classIdOf(port)
  return (after.get(id) ?? 0) - (before.get(id) ?? 0)
}

// ---------------------------------------------------------------------------------------------
// Images

interface Image extends ImageLayoutResult {
  dir: string
}

async function prepareImage (mib: number): Promise<Image> {
  await cachedImageLayout(WARMUP_DIR, { layers: [MiB, MiB, MiB], seed: 'shoal-bench-warmup-v1' })
  const started = performance.now()
  const image = await cachedImageLayout(imageDir(mib), { layers: Array<number>(4).fill(mib / 4 * MiB), seed: imageSeed(mib) })
  log(`image ${imageSeed(mib)}: ${image.manifestDigest} (${formatMiB(image.totalSize)}, 4 layers) ready in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return { ...image, dir: imageDir(mib) }
}

function imageSeed (mib: number): string {
  return `shoal-fleet-${mib}-v1`
}

function imageDir (mib: number): string {
  return path.join(IMAGES_DIR, imageSeed(mib))
}

// ---------------------------------------------------------------------------------------------
// Central: N clients, one docker-registry

async function measureCentral (n: number, image: Image): Promise<PullRun> {
  const runDir = await freshRunDir(`central-${n}`)
  const registry = await startDockerRegistry({ dataDir: path.join(runDir, 'registry'), port: REGISTRY_PORT })
  try {
    const host = `${SHAPED_HOST}:${REGISTRY_PORT}`
    await copyToRegistry(image.dir, `${host}/${REPOSITORY}:${TAG}`)
    await warmUp(Array<string>(n).fill(host), host, runDir)
    execFileSync('sync')
    const before = readClassBytes()
    const cpuBefore = await sampleCpu([registry])
    const pulls = await pullAll(Array<string>(n).fill(`${host}/${REPOSITORY}:${TAG}`), runDir, image)
    const cpu = cpuUse(cpuBefore, await sampleCpu([registry]))
    const egressBytes = classDelta(before, readClassBytes(), REGISTRY_PORT)
    await registry.stop()
    return { n, ...pulls, egressBytes, cpu }
  } catch (error) {
    await registry.kill9()
    throw new Error(`central N=${n}: ${(error as Error).message}\n--- docker-registry output ---\n${registry.output()}`, { cause: error })
  } finally {
    finishedRunDirs.push(runDir)
  }
}

// ---------------------------------------------------------------------------------------------
// Shoal: one seeder, N nodes, each node's client pulls through it

interface FleetNode {
  name: string
  port: number
  process: RegistryProcess
  /** Where this node's own client connects. */
  clientHost: string
  id?: string
}

async function measureShoal (n: number, image: Image, settings: Settings): Promise<ShoalRun> {
  const runDir = await freshRunDir(`shoal-${n}`)
  const clientHostOf = (port: number): string => `${settings.shapeClients ? SHAPED_HOST : LOCAL_HOST}:${port}`
  const fleet: FleetNode[] = []
  try {
    // --timeline: every node's access log (one line per request) goes to bench/out/fleet-timeline-<name>.log.
    const logArgs = settings.timeline ? ['--log-level', 'info'] : []
    const keepLog = (name: string, node: RegistryProcess): void => {
      if (!settings.timeline) return
      const file = createWriteStream(path.join(OUT_DIR, `fleet-timeline-${name}.log`))
      node.process.stdout?.on('data', (chunk: Buffer) => file.write(chunk))
      node.process.once('exit', () => file.end())
    }
    const seeder = await startShoalNode('seeder', 0, runDir, logArgs)
    keepLog('seeder', seeder)
    fleet.push({ name: 'seeder', port: seeder.port, process: seeder, clientHost: clientHostOf(seeder.port) })
    const { id: seederId, address: seederAddress } = await meshAddressOf(seeder)
    fleet[0]!.id = seederId
    const nodes = await Promise.all(Array.from({ length: n }, async (_, index) => {
      const name = `node-${index + 1}`
      const node = await startShoalNode(name, index + 1, runDir, ['--peer', seederAddress, ...logArgs])
      keepLog(name, node)
      return { name, port: node.port, process: node, clientHost: clientHostOf(node.port) }
    }))
    fleet.push(...nodes)
    await waitForFleet(fleet)
    const seederHost = fleet[0]!.clientHost
    await copyToRegistry(image.dir, `${seederHost}/${REPOSITORY}:${TAG}`)
    const pushed = performance.now()
    await warmUp(nodes.map((node) => node.clientHost), seederHost, runDir, fleet)
    await waitForTag(fleet.map((node) => node.process.url), REPOSITORY, TAG)
    await waitForHolder(fleet.map((node) => ({ id: node.id, url: node.process.url })), 'the seeder', REPOSITORY, TAG)
    log(`Shoal N=${n}: fleet ready ${((performance.now() - pushed) / 1000).toFixed(1)} s after the push (warm-up included)`)
    execFileSync('sync')

    const metricsBefore = await Promise.all(fleet.map(async (node) => await scrapeMetrics(node.process.url, node.name)))
    const before = readClassBytes()
    const cpuBefore = await sampleCpu(fleet.map((node) => node.process))
    const timeline = settings.timeline ? new FetchTimeline(fleet) : undefined
    const pulls = await pullAll(nodes.map((node) => `${node.clientHost}/${REPOSITORY}:${TAG}`), runDir, image)
    timeline?.stop()
    const cpu = cpuUse(cpuBefore, await sampleCpu(fleet.map((node) => node.process)))
    const after = readClassBytes()
    const metricsAfter = await Promise.all(fleet.map(async (node) => await scrapeMetrics(node.process.url, node.name)))

    const nameOf = new Map(fleet.map((node) => [node.id ?? '', node.name]))
    const diagnosis = fleet.map((node, index): NodeDiagnosis => {
      const delta = subtractMetrics(metricsAfter[index]!, metricsBefore[index]!)
      const fetchedFrom: Record<string, number> = {}
      const gatewayRequests: Record<string, number> = {}
      for (const sample of delta) {
        if (sample.name === 'shoal_mesh_bytes_fetched_total' && sample.value > 0) {
          const provider = nameOf.get(sample.labels.provider ?? '') ?? sample.labels.provider ?? '?'
          fetchedFrom[provider] = (fetchedFrom[provider] ?? 0) + sample.value
        }
        if (sample.name === 'shoal_http_requests_total' && sample.labels.route === '/ipfs/:cid' && sample.value > 0) {
          const status = sample.labels.status ?? '?'
          gatewayRequests[status] = (gatewayRequests[status] ?? 0) + sample.value
        }
      }
      return {
        name: node.name,
        id: node.id ?? '',
        port: node.port,
        classBytes: classDelta(before, after, node.port),
        blobBytesSent: delta.filter((s) => s.name === 'shoal_blob_bytes_sent_total').reduce((sum, s) => sum + s.value, 0),
        fetchedFrom,
        gatewayRequests
      }
    })
    await Promise.all(fleet.map(async (node) => await node.process.stop()))
    return { n, ...pulls, egressBytes: diagnosis[0]!.classBytes, cpu, nodes: diagnosis }
  } catch (error) {
    await Promise.all(fleet.map(async (node) => await node.process.kill9()))
    const outputs = fleet.map((node) => `--- ${node.name} output ---\n${node.process.output().trim()}`).join('\n')
    throw new Error(`Shoal N=${n}: ${(error as Error).message}\n${outputs}`, { cause: error })
  } finally {
    finishedRunDirs.push(runDir)
  }
}

async function startShoalNode (name: string, index: number, runDir: string, extraArgs: string[]): Promise<RegistryProcess> {
  const port = HTTP_BASE_PORT + index
  return await startNodeProcess({
    dataDir: path.join(runDir, name),
    port,
    readyTimeoutMs: 60_000,
    // startNodeProcess passes --listen 127.0.0.1:<port>; the later --listen wins. 0.0.0.0 inside
    // the namespace is its loopback only; peers are told 127.0.0.1 (shaped), the node's own client
    // uses 127.0.0.2 (not shaped).
    args: [
      '--listen', `0.0.0.0:${port}`,
      '--advertise-url', `http://${SHAPED_HOST}:${port}`,
      '--mesh', '--p2p-listen', `/ip4/127.0.0.1/tcp/${P2P_BASE_PORT + index}`,
      '--name', name,
      ...extraArgs
    ]
  })
}

interface PeersAnswer {
  self: { id: string, addresses: string[] } | null
}

/** The seeder's peer id and libp2p address, once its mesh has started. */
async function meshAddressOf (node: RegistryProcess): Promise<{ id: string, address: string }> {
  return await eventually(`the seeder's mesh to start`, async () => {
    const { self } = await getJson<PeersAnswer>(node.url, '/api/v1/peers')
    const address = self?.addresses.find((a) => a.includes(`/tcp/${P2P_BASE_PORT}/`)) ?? self?.addresses[0]
    return self === null || address === undefined ? undefined : { id: self.id, address }
  })
}

/** Until every node's inventory lists all of them; records each node's peer id. */
async function waitForFleet (fleet: FleetNode[]): Promise<void> {
  await eventually(`every node to list ${fleet.length} nodes`, async () => {
    const lists = await Promise.all(fleet.map(async (node) => (await getJson<{ nodes: Array<{ id: string, name: string, self: boolean }> }>(node.process.url, '/api/v1/nodes')).nodes))
    if (!lists.every((nodes) => nodes.length === fleet.length)) return undefined
    for (const [index, nodes] of lists.entries()) fleet[index]!.id = nodes.find((node) => node.self)?.id
    return true
  })
}

// ---------------------------------------------------------------------------------------------
// Clients

/**
 * Warms the servers up: pushes the 3 MiB image to `pushHost`, then every client host pulls it at
 * once (not timed). With a fleet, waits first until every node lists the warm-up tag.
 */
async function warmUp (clientHosts: string[], pushHost: string, runDir: string, fleet?: FleetNode[]): Promise<void> {
  await copyToRegistry(WARMUP_DIR, `${pushHost}/${WARMUP_REPOSITORY}:${TAG}`)
  if (fleet !== undefined) {
    await waitForTag(fleet.map((node) => node.process.url), WARMUP_REPOSITORY, TAG)
    await waitForHolder(fleet.map((node) => ({ id: node.id, url: node.process.url })), 'the seeder', WARMUP_REPOSITORY, TAG)
  }
  await Promise.all(clientHosts.map(async (host, index) => {
    await copyFromRegistry(`${host}/${WARMUP_REPOSITORY}:${TAG}`, path.join(runDir, `warmup-${index + 1}`))
  }))
}

/**
 * Each node's verified bytes fetched from peers (`shoal_mesh_bytes_fetched_total`), scraped every
 * second while the pulls run and printed as one line per second: how the fleet's pull unfolds,
 * and which nodes wait at its end.
 */
class FetchTimeline {
  private readonly fleet: FleetNode[]
  private readonly started = performance.now()
  private readonly timer: NodeJS.Timeout
  private scraping = false

  constructor (fleet: FleetNode[]) {
    this.fleet = fleet
    log(`timeline: seconds, then MiB fetched so far by ${fleet.map((node) => node.name).join(', ')}`)
    this.timer = setInterval(() => { void this.sample() }, 1000)
  }

  stop (): void {
    clearInterval(this.timer)
  }

  private async sample (): Promise<void> {
    if (this.scraping) return
    this.scraping = true
    try {
      const fetched = await Promise.all(this.fleet.map(async (node) => {
        const samples = await scrapeMetrics(node.process.url, node.name).catch(() => [])
        return samples.filter((s) => s.name === 'shoal_mesh_bytes_fetched_total').reduce((sum, s) => sum + s.value, 0)
      }))
      log(`timeline ${((performance.now() - this.started) / 1000).toFixed(1).padStart(5)} s: ${fetched.map((bytes) => (bytes / MiB).toFixed(0).padStart(4)).join(' ')}`)
    } finally {
      this.scraping = false
    }
  }
}

/** Starts every pull at once; the wall time ends with the last. Checks every pulled manifest. */
async function pullAll (refs: string[], runDir: string, image: Image): Promise<{ seconds: number, clientSeconds: number[] }> {
  const started = performance.now()
  const outcomes = await Promise.allSettled(refs.map(async (ref, index) => {
    const dir = path.join(runDir, `pulled-${index + 1}`)
    await copyFromRegistry(ref, dir)
    const seconds = (performance.now() - started) / 1000
    const pulled = await findLayoutEntry(dir)
    if (pulled.digest !== image.manifestDigest) throw new Error(`pulled manifest ${pulled.digest}, pushed ${image.manifestDigest}`)
    return seconds
  }))
  const seconds = (performance.now() - started) / 1000
  const failures = outcomes.flatMap((outcome, index) => outcome.status === 'rejected'
    ? [`client ${index + 1} (${refs[index]}): ${(outcome.reason as Error).message}`]
    : [])
  if (failures.length > 0) throw new Error(`${failures.length} of ${refs.length} pulls failed after ${seconds.toFixed(1)} s:\n${failures.join('\n')}`)
  return { seconds, clientSeconds: outcomes.map((outcome) => (outcome as PromiseFulfilledResult<number>).value) }
}

// ---------------------------------------------------------------------------------------------
// CPU

interface CpuSample {
  /** Jiffies of all cores from /proc/stat: busy (not idle, not iowait) and in all. */
  busy: number
  total: number
  /** CPU jiffies of this process's finished children (the skopeo clients). */
  children: number
  /** CPU jiffies of each server process: user, system. */
  servers: Array<[number, number]>
}


async function sampleCpu (servers: RegistryProcess[]): Promise<CpuSample> {
  return {
    ...await machineJiffies(),
    servers: await Promise.all(servers.map(async (server) => {
      const stat = await processStat(String(server.process.pid))
      return [stat[11] ?? 0, stat[12] ?? 0] as [number, number]
    }))
  }
}

function cpuUse (before: CpuSample, after: CpuSample): CpuUse {
  return {
    busy: (after.busy - before.busy) / Math.max(1, after.total - before.total),
    clientSeconds: (after.children - before.children) / CLOCK_TICKS,
    serverSeconds: after.servers.map(([user, system], index) => (user + system - (before.servers[index]?.[0] ?? 0) - (before.servers[index]?.[1] ?? 0)) / CLOCK_TICKS),
    serverSystemSeconds: after.servers.map(([, system], index) => (system - (before.servers[index]?.[1] ?? 0)) / CLOCK_TICKS)
  }
}

function describeCpu (cpu: CpuUse, serverNames: string[]): string {
  const servers = cpu.serverSeconds.map((seconds, index) => `${serverNames[index] ?? '?'} ${seconds.toFixed(1)} (sys ${(cpu.serverSystemSeconds[index] ?? 0).toFixed(1)})`).join(', ')
  return `CPU busy ${(cpu.busy * 100).toFixed(0)} % of ${os.availableParallelism()} cores; CPU s: skopeo clients ${cpu.clientSeconds.toFixed(1)}, ${servers}`
}

// ---------------------------------------------------------------------------------------------
// Metrics


// ---------------------------------------------------------------------------------------------
// Report

function describeNodes (run: ShoalRun, settings: Settings): string[] {
  const classLabel = settings.shapeClients ? 'tc class sent (peers and own client)' : 'sent to peers (tc)'
  return run.nodes.map((node) => {
    const fetched = Object.entries(node.fetchedFrom).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
      .map(([provider, bytes]) => `${provider} ${formatMiB(bytes)}`).join(', ')
    const gateway = Object.entries(node.gatewayRequests).map(([status, count]) => `${status}×${count}`).join(' ')
    return `${node.name}: ${classLabel} ${formatMiB(node.classBytes)}, blob+block bytes sent ${formatMiB(node.blobBytesSent)}, ` +
      `fetched from: ${fetched === '' ? 'none' : fetched}; /ipfs requests: ${gateway === '' ? 'none' : gateway}`
  })
}

function renderReport (settings: Settings, image: Image, results: Results): string {
  const imageBytes = image.totalSize
  const centralOf = new Map(results.central.map((r) => [r.n, r]))
  const shoalOf = new Map(results.shoal.map((r) => [r.n, r]))
  const lines = [
    `## Fleet pull, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Machine: ${machineDescription()}. Client: ${toolVersion('skopeo', ['--version'])}. ` +
      `Reference: ${toolVersion('docker-registry', ['--version'])}. Node ${process.version}. Commit ${gitCommit()}.`,
    `Image: ${formatMiB(imageBytes)} in 4 layers (${image.manifestDigest.slice(0, 19)}…). Each server's egress capped at ${settings.rate} ` +
      `by tc in a private network namespace; a Shoal node's own client is ${settings.shapeClients ? 'shaped too (--shape-clients)' : 'not shaped (it stands for docker on the same machine)'}. ` +
      'One run per N, each on a fresh fleet. Time = start of the N pulls to the last one done; egress = bytes sent by the seeder\'s (registry\'s) tc class.',
    '',
    '| N | central s | Shoal s | Shoal / central | Shoal seeder egress | central registry egress |',
    '|---:|---:|---:|---:|---:|---:|'
  ]
  for (const n of settings.sizes) {
    const central = centralOf.get(n)
    const shoal = shoalOf.get(n)
    const ratio = central !== undefined && shoal !== undefined ? (shoal.seconds / central.seconds).toFixed(2) : '—'
    lines.push(`| ${n} | ${central?.seconds.toFixed(2) ?? '—'} | ${shoal?.seconds.toFixed(2) ?? '—'} | ${ratio} | ` +
      `${shoal === undefined ? '—' : egress(shoal.egressBytes, imageBytes)} | ${central === undefined ? '—' : egress(central.egressBytes, imageBytes)} |`)
  }
  lines.push('', ...renderBars(settings, imageBytes, centralOf, shoalOf))
  lines.push('', 'Seconds per client (client order), and CPU during the pulls:', '')
  for (const n of settings.sizes) {
    const central = centralOf.get(n)
    const shoal = shoalOf.get(n)
    if (central !== undefined) lines.push(`- N=${n} central: ${central.clientSeconds.map((s) => s.toFixed(1)).join(', ')}. ${describeCpu(central.cpu, ['docker-registry'])}`)
    if (shoal !== undefined) lines.push(`- N=${n} Shoal: ${shoal.clientSeconds.map((s) => s.toFixed(1)).join(', ')}. ${describeCpu(shoal.cpu, shoal.nodes.map((node) => node.name))}`)
  }
  if (results.shoal.length > 0) {
    lines.push('', 'Where Shoal\'s bytes came from (during the pulls): bytes each node\'s tc class sent ' +
      `(${settings.shapeClients ? 'to peers and to its own client' : 'to peers'}), ` +
      'verified block bytes each node fetched from each provider (`shoal_mesh_bytes_fetched_total`), ' +
      'and the `/ipfs/:cid` requests each node answered, by status.', '')
    for (const run of results.shoal) {
      lines.push(`- N=${run.n}:`)
      for (const line of describeNodes(run, settings)) lines.push(`  - ${line}`)
    }
  }
  return `${lines.join('\n')}\n`
}

function renderBars (settings: Settings, imageBytes: number, centralOf: Map<number, PullRun>, shoalOf: Map<number, ShoalRun>): string[] {
  const top = Math.max(...settings.sizes)
  const central = centralOf.get(top)
  const shoal = shoalOf.get(top)
  const baseline = shoalOf.get(1)
  const verdict = (value: number | undefined, limit: number): string =>
    value === undefined ? 'not measured' : `${value.toFixed(2)} (bar ≤ ${limit}): ${value <= limit ? 'met' : 'NOT met'}`
  // Issue 15's bars (issue 4's were 0.4, 2.5 and 2).
  return [
    `Bars at N = ${top}:`,
    `- Shoal time / central time: ${verdict(shoal !== undefined && central !== undefined ? shoal.seconds / central.seconds : undefined, 0.3)}`,
    `- Shoal time / Shoal N = 1 time: ${verdict(shoal !== undefined && baseline !== undefined ? shoal.seconds / baseline.seconds : undefined, 2)}`,
    `- seeder egress / image size: ${verdict(shoal === undefined ? undefined : shoal.egressBytes / imageBytes, 1.5)}`
  ]
}

function egress (bytes: number, imageBytes: number): string {
  return `${formatMiB(bytes)} (${(bytes / imageBytes).toFixed(2)}×)`
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function freshRunDir (name: string): Promise<string> {
  const runDir = path.join(WORK_DIR, `fleet-${name}-${Date.now()}`)
  await mkdir(runDir, { recursive: true })
  return runDir
}

async function getJson<T> (base: string, route: string): Promise<T> {
  const response = await fetch(`${base}${route}`, { signal: AbortSignal.timeout(5000) })
  if (!response.ok) {
    await response.body?.cancel()
    throw new Error(`GET ${route} answered ${response.status}`)
  }
  return await response.json() as T
}

function run (command: string, args: string[]): void {
  execFileSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'] })
}




function formatMiB (bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`
}

function log (message: string): void {
  process.stderr.write(`[fleet] ${message}\n`)
}

// Run only as the script itself: bench/convergence.ts imports the shaping helpers above.
if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    log((error as Error).message)
    process.exitCode = 1
  })
}
