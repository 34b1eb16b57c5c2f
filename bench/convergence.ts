// Convergence benchmark for issue 5's bars, on loopback: five Shoal nodes as separate processes, a
// 256 MiB image in 4 layers pushed to node-0, then
//
//   1. Reference: the slowest single pull. For each of node-1..node-4, on a fresh fleet of its own
//      (new processes, new data directories, so the pull really fetches from node-0), the time of
//      `skopeo copy docker://<node>/<repo>:<tag> oci:<dir>` through that node alone.
//   2. Convergence: on another fresh fleet, `POST /api/v1/strategies {"image", "kind": "all"}` to
//      node-0, then `GET /api/v1/strategies/<id>/status` every 100 ms until all five nodes are
//      desired and `held`. Bar: convergence time ≤ 2 × the slowest single pull (medians over runs).
//   3. Freed bytes: on the converged fleet, the bytes of node-1..4's block files (and `du` of their
//      data directories), `DELETE /api/v1/strategies/<id>`, then wait until each node's own
//      inventory record no longer lists the image CID, its collections after the drop have run (at
//      once, and again after the GC grace), and its block bytes stop changing. Bar: every node that
//      dropped the image frees ≥ 90 % of the image's bytes.
//
//   node bench/convergence.ts [--runs 3] [--mib 256] [--heartbeat-seconds 10] [--gc-grace-seconds 60]
//                             [--pause-seconds 60] [--commit <label>] [--rate <tc rate, e.g. 200mbit>]
//
// With --rate (Linux, root) the same measurement runs in a private network namespace with each
// node's HTTP egress capped at that rate by tc, as bench/fleet.ts does (and with its helpers): it
// re-executes itself under `unshare -n`, node-i listens on 0.0.0.0:<7001 + i> and advertises
// http://127.0.0.1:<7001 + i> to its peers (what it sends from there, the blocks peers fetch over
// `GET /ipfs/<cid>`, is shaped, one HTB class per node); the skopeo clients (push, warm-up, single
// pulls) and this script's API, status and metrics requests use 127.0.0.2 (unshaped), as a
// machine's own docker would. libp2p (DHT, catalogue) is not shaped. So bandwidth between nodes,
// not the 2 cores shared by 5 nodes, is the bottleneck, as on a fleet of machines. Results then go
// to bench/out/convergence-<rate>-latest.{md,json}, with each node's tc class bytes per timed part.
//
// Nodes run with the node's defaults unless told otherwise: presence every 10 s (a node sends its
// presence 200 ms after its holdings or strategy states change, so convergence does not wait for
// the interval), and a GC grace of 60 s (the
// node collects at once after a drop and again after the grace, so the bytes come back about a
// minute after the drop: that time is reported).
//
// Every fleet gets the same warm-up before the clock: a 3 MiB image pushed to node-0 and pulled by
// a skopeo client through each of node-1..4 (JIT, connections, DHT), then the image under test
// pushed, and every node's inventory lists all five nodes, the tag, and node-0 as the holder.
// `sync` before each timed part. Run directories are deleted only at the end, and after a drop
// phase the next run waits --pause-seconds (ext4 without a journal skips inodes freed in the last
// 60 s, bench/RESULTS.md), so a run's pulls do not pay for the previous run's freed blocks.
//
// For diagnosis: CPU seconds of each node process (/proc/<pid>/stat) and of the skopeo client
// during each timed part, the machine's busy share (/proc/stat), the load average, the bytes each
// node fetched from each provider (/metrics), and each node's own fetch time from its logs (run at
// --log-level info: the reconciler logs when it starts fetching and how long the fetch took).
// Table to stdout and bench/out/convergence-latest.md, raw numbers to convergence-latest.json.

import { execFileSync } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { cachedImageLayout, findLayoutEntry } from '../test/support/oci-image.ts'
import type { ImageLayoutResult } from '../test/support/oci-image.ts'
import { REPO_ROOT, startNodeProcess } from '../test/support/node-process.ts'
import type { RegistryProcess } from '../test/support/node-process.ts'
import { blockBytes } from '../test/support/disk.ts'
import { copyFromRegistry, copyToRegistry } from '../test/support/skopeo.ts'
import { gitCommit, machineDescription, toolVersion } from './environment.ts'
import { LOCAL_HOST, SHAPED_HOST, classIdOf, readClassBytes, reexecInsideNamespace, shapePorts } from './fleet.ts'
import { CLOCK_TICKS, eventually, machineJiffies, processStat, scrapeMetrics, subtractMetrics, waitForHolder, waitForTag, type Sample } from './node-probes.ts'

const MiB = 1024 * 1024
const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
const IMAGES_DIR = path.join(OUT_DIR, 'images')
const WORK_DIR = path.join(OUT_DIR, 'work')
const WARMUP_DIR = path.join(IMAGES_DIR, 'warmup')

const NODES = 5
const REPOSITORY = 'conv/app'
const TAG = 'v1'
const WARMUP_REPOSITORY = 'conv/warmup'
const STATUS_POLL_MS = 100
const DROP_POLL_MS = 250
const CONVERGENCE_TIMEOUT_MS = 600_000
/** Block bytes that stopped shrinking this long ago (after the collections ran) count as settled. */
const SETTLED_MS = 2_000
const FREED_BAR = 0.9
const CONVERGENCE_BAR = 2
/** With --rate: node-i's HTTP port (tc class 1:(11 + i) in hex, bench/fleet.ts classIdOf). */
const SHAPED_HTTP_BASE_PORT = 7001

interface Settings {
  runs: number
  mib: number
  heartbeatSeconds: number
  gcGraceSeconds: number
  pauseSeconds: number
  commit: string
  /** tc rate capping each node's HTTP egress in a private network namespace; undefined: plain loopback. */
  rate?: string
}

interface CpuUse {
  /** Busy share of all the machine's cores during the part. */
  busy: number
  /** CPU seconds of this script's finished children (the skopeo client). */
  clientSeconds: number
  /** CPU seconds of each node process, node-0 first. */
  nodeSeconds: number[]
  /** CPU seconds of everything else on the machine (other people's work): busy time minus the above. */
  otherSeconds: number
}

interface SinglePull {
  node: number
  seconds: number
  loadBefore: number
  cpu: CpuUse
  /** Verified block bytes the pulling node fetched, by provider name. */
  fetchedFrom: Record<string, number>
  /** With --rate: bytes each node's tc class sent during the pull (to peers), node-0 first. */
  classBytes?: number[]
}

interface NodeConvergence {
  name: string
  /** Seconds after the POST: first status poll showing it held (node-0 holds it from the push). */
  heldSeen?: number
  /** From its log: when the reconciler started fetching (seconds after the POST) and how long it took. */
  fetchStarted?: number
  fetchSeconds?: number
  cpuSeconds: number
  fetchedFrom: Record<string, number>
  /** `/ipfs/:cid` requests it answered, by status. */
  gatewayRequests: Record<string, number>
  warnings: string[]
}

interface NodeDrop {
  name: string
  blocksBefore: number
  blocksAfter: number
  duBefore: number
  duAfter: number
  freed: number
  freedShare: number
  /** Seconds after the DELETE until its own inventory record stopped listing the image. */
  goneFromInventory?: number
  /** Seconds after the DELETE until it had freed ≥ 90 % of the image's bytes; undefined if never. */
  barReached?: number
  /** Seconds after the DELETE of the last drop in its block bytes (catalogue writes meanwhile would add a few blocks). */
  lastShrink?: number
  gcRuns: number
  gcBytesRemoved: number
  settled: boolean
}

interface ConvergenceRun {
  seconds: number
  loadBefore: number
  cpu: CpuUse
  /** With --rate: bytes each node's tc class sent during convergence (to peers), node-0 first. */
  classBytes?: number[]
  nodes: NodeConvergence[]
  drop: {
    nodes: NodeDrop[]
    seconds: number
    node0BlocksBefore: number
    node0BlocksAfter: number
  }
}

interface Run {
  index: number
  singles: SinglePull[]
  convergence: ConvergenceRun
}

interface Image extends ImageLayoutResult {
  dir: string
}

interface FleetNode {
  name: string
  dataDir: string
  process: RegistryProcess
  /** Base URL of this script's API, status and metrics requests (with --rate: the unshaped address). */
  url: string
  /** host:port the skopeo clients use (with --rate: the unshaped address). */
  clientHost: string
  id: string
  logs: LogLine[]
}

interface LogLine {
  time: number
  level: number
  msg: string
  ms?: number
  image?: string
}

const runDirs: string[] = []

// ---------------------------------------------------------------------------------------------

async function main (): Promise<void> {
  const { settings, inside } = parseSettings()
  if (settings.rate !== undefined) {
    if (!inside) {
      process.exitCode = await reexecInsideNamespace(fileURLToPath(import.meta.url))
      return
    }
    shapePorts(settings.rate, Array.from({ length: NODES }, (_, index) => SHAPED_HTTP_BASE_PORT + index))
  }
  const image = await prepareImage(settings.mib)
  const loadAtStart = uptime()
  log(`load at start: ${loadAtStart}`)
  const runs: Run[] = []
  try {
    for (let index = 1; index <= settings.runs; index++) {
      if (index > 1 && settings.pauseSeconds > 0) {
        log(`pausing ${settings.pauseSeconds} s after the previous run's drop (blocks freed in the last 60 s slow file creation)`)
        await sleep(settings.pauseSeconds * 1000)
      }
      const singles: SinglePull[] = []
      for (let node = 1; node < NODES; node++) {
        const single = await measureSingle(index, node, image, settings)
        singles.push(single)
        log(`run ${index}: single pull through node-${node}: ${single.seconds.toFixed(2)} s (load ${single.loadBefore.toFixed(2)}; ${describeCpu(single.cpu)}; fetched ${describeFetched(single.fetchedFrom)})`)
      }
      const convergence = await measureConvergence(index, image, settings)
      log(`run ${index}: convergence ${convergence.seconds.toFixed(2)} s (load ${convergence.loadBefore.toFixed(2)}; ${describeCpu(convergence.cpu)})`)
      for (const node of convergence.nodes) log(`  ${describeNodeConvergence(node)}`)
      for (const node of convergence.drop.nodes) log(`  ${describeDrop(node, image.totalSize)}`)
      runs.push({ index, singles, convergence })
    }
  } finally {
    for (const dir of runDirs) await rm(dir, { recursive: true, force: true })
  }
  const loadAtEnd = uptime()
  log(`load at end: ${loadAtEnd}`)
  const report = renderReport(settings, image, runs, loadAtStart, loadAtEnd)
  process.stdout.write(report)
  await mkdir(OUT_DIR, { recursive: true })
  const outName = settings.rate === undefined ? 'convergence-latest' : `convergence-${settings.rate}-latest`
  await writeFile(path.join(OUT_DIR, `${outName}.md`), report)
  await writeFile(path.join(OUT_DIR, `${outName}.json`), JSON.stringify({
    settings,
    machine: machineDescription(),
    node: process.version,
    skopeo: toolVersion('skopeo', ['--version']),
    loadAtStart,
    loadAtEnd,
    imageBytes: image.totalSize,
    manifestDigest: image.manifestDigest,
    summary: summarize(runs, image.totalSize),
    runs
  }, null, 2))
  log(`wrote ${path.relative(REPO_ROOT, path.join(OUT_DIR, `${outName}.md`))} and ${outName}.json`)
}

function parseSettings (): { settings: Settings, inside: boolean } {
  const { values } = parseArgs({
    options: {
      inside: { type: 'boolean', default: false },
      rate: { type: 'string' },
      runs: { type: 'string', default: '3' },
      mib: { type: 'string', default: '256' },
      'heartbeat-seconds': { type: 'string', default: '10' },
      'gc-grace-seconds': { type: 'string', default: '60' },
      'pause-seconds': { type: 'string', default: '60' },
      commit: { type: 'string' }
    }
  })
  const runs = Number(values.runs)
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`)
  const mib = Number(values.mib)
  if (!Number.isInteger(mib) || mib < 4 || mib % 4 !== 0) throw new Error(`--mib must be a multiple of 4 (4 layers), got ${values.mib}`)
  const heartbeatSeconds = Number(values['heartbeat-seconds'])
  if (!(heartbeatSeconds > 0)) throw new Error(`--heartbeat-seconds must be positive, got ${values['heartbeat-seconds']}`)
  const gcGraceSeconds = Number(values['gc-grace-seconds'])
  if (!(gcGraceSeconds >= 0)) throw new Error(`--gc-grace-seconds must be ≥ 0, got ${values['gc-grace-seconds']}`)
  const pauseSeconds = Number(values['pause-seconds'])
  if (!(pauseSeconds >= 0)) throw new Error(`--pause-seconds must be ≥ 0, got ${values['pause-seconds']}`)
  if (values.rate !== undefined && !/^\d+(\.\d+)?([kmg]?bit|[kmg]?bps)$/i.test(values.rate)) throw new Error(`--rate must be a tc rate such as 200mbit, got ${values.rate}`)
  // From a `git archive` snapshot there is no .git: --commit names what was measured.
  const settings: Settings = { runs, mib, heartbeatSeconds, gcGraceSeconds, pauseSeconds, commit: values.commit ?? gitCommit() }
  if (values.rate !== undefined) settings.rate = values.rate
  return { settings, inside: values.inside }
}

async function prepareImage (mib: number): Promise<Image> {
  await cachedImageLayout(WARMUP_DIR, { layers: [MiB, MiB, MiB], seed: 'shoal-bench-warmup-v1' })
  const seed = `shoal-fleet-${mib}-v1`
  const dir = path.join(IMAGES_DIR, seed)
  const started = performance.now()
  const image = await cachedImageLayout(dir, { layers: Array<number>(4).fill(mib / 4 * MiB), seed })
  log(`image ${seed}: ${image.manifestDigest} (${formatMiB(image.totalSize)}, 4 layers) ready in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  return { ...image, dir }
}

// ---------------------------------------------------------------------------------------------
// 1. The reference: one pull through one node, alone, on a fresh fleet

async function measureSingle (run: number, puller: number, image: Image, settings: Settings): Promise<SinglePull> {
  const runDir = await freshRunDir(`run${run}-single-${puller}`)
  const fleet = await startFleet(runDir, settings)
  try {
    await readyFleet(fleet, image, runDir)
    const node = fleet[puller]!
    execFileSync('sync')
    const loadBefore = loadAverage()
    const metricsBefore = await scrapeMetrics(node.url, node.name)
    const cpuBefore = await sampleCpu(fleet)
    const classBefore = settings.rate === undefined ? undefined : readClassBytes()
    const dir = path.join(runDir, 'pulled')
    const started = performance.now()
    await copyFromRegistry(`${node.clientHost}/${REPOSITORY}:${TAG}`, dir)
    const seconds = (performance.now() - started) / 1000
    const cpu = cpuUse(cpuBefore, await sampleCpu(fleet))
    const classBytes = classBefore === undefined ? undefined : fleetClassBytes(classBefore)
    const pulled = await findLayoutEntry(dir)
    if (pulled.digest !== image.manifestDigest) throw new Error(`pulled manifest ${pulled.digest}, pushed ${image.manifestDigest}`)
    // A few large files: deleting them now costs the next run nothing.
    await rm(dir, { recursive: true, force: true })
    const delta = subtractMetrics(await scrapeMetrics(node.url, node.name), metricsBefore)
    await stopFleet(fleet)
    return { node: puller, seconds, loadBefore, cpu, fetchedFrom: fetchedFrom(delta, fleet), ...(classBytes === undefined ? {} : { classBytes }) }
  } catch (error) {
    throw await failed(fleet, `run ${run}, single pull through node-${puller}`, error)
  }
}

// ---------------------------------------------------------------------------------------------
// 2 and 3. Convergence of an `all` strategy, then what dropping it frees

interface StrategyStatus {
  desired: Array<{ node: string, name?: string, state: string, reason?: string }>
  extra: Array<{ node: string }>
}

async function measureConvergence (run: number, image: Image, settings: Settings): Promise<ConvergenceRun> {
  const runDir = await freshRunDir(`run${run}-convergence`)
  const fleet = await startFleet(runDir, settings)
  try {
    await readyFleet(fleet, image, runDir)
    const ids = fleet.map((node) => node.id).sort()
    const nameOf = new Map(fleet.map((node) => [node.id, node.name]))
    execFileSync('sync')
    const loadBefore = loadAverage()
    const metricsBefore = await Promise.all(fleet.map(async (node) => await scrapeMetrics(node.url, node.name)))
    const cpuBefore = await sampleCpu(fleet)
    const classBefore = settings.rate === undefined ? undefined : readClassBytes()

    const postedAt = Date.now()
    const started = performance.now()
    const created = await api<{ strategy: { id: string } }>(fleet[0]!, 'POST', '/strategies', { image: `${REPOSITORY}:${TAG}`, kind: 'all' }, 201)
    const id = created.strategy.id
    const heldSeen = new Map<string, number>()
    let last: StrategyStatus | undefined
    let seconds: number | undefined
    while (seconds === undefined) {
      if (performance.now() - started > CONVERGENCE_TIMEOUT_MS) {
        throw new Error(`not converged after ${CONVERGENCE_TIMEOUT_MS / 1000} s: ${JSON.stringify(last)}`)
      }
      try {
        last = await api<StrategyStatus>(fleet[0]!, 'GET', `/strategies/${id}/status`)
        const now = (performance.now() - started) / 1000
        for (const desired of last.desired) if (desired.state === 'held' && !heldSeen.has(desired.node)) heldSeen.set(desired.node, now)
        const desiredIds = last.desired.map((d) => d.node).sort()
        if (desiredIds.join() === ids.join() && last.desired.every((d) => d.state === 'held')) seconds = now
      } catch (error) {
        log(`status poll failed: ${(error as Error).message}`)
      }
      if (seconds === undefined) await sleep(STATUS_POLL_MS)
    }
    const cpu = cpuUse(cpuBefore, await sampleCpu(fleet))
    const classBytes = classBefore === undefined ? undefined : fleetClassBytes(classBefore)
    const metricsAfter = await Promise.all(fleet.map(async (node) => await scrapeMetrics(node.url, node.name)))
    const nodes = fleet.map((node, index): NodeConvergence => {
      const delta = subtractMetrics(metricsAfter[index]!, metricsBefore[index]!)
      const fetchStart = node.logs.find((line) => line.msg === 'fetching an image a strategy places here' && line.time >= postedAt)
      const fetched = node.logs.find((line) => line.msg === 'fetched an image' && line.time >= postedAt)
      const gatewayRequests: Record<string, number> = {}
      for (const sample of delta) {
        if (sample.name === 'shoal_http_requests_total' && sample.labels.route === '/ipfs/:cid' && sample.value > 0) {
          gatewayRequests[sample.labels.status ?? '?'] = (gatewayRequests[sample.labels.status ?? '?'] ?? 0) + sample.value
        }
      }
      return {
        name: node.name,
        heldSeen: heldSeen.get(node.id),
        fetchStarted: fetchStart === undefined ? undefined : (fetchStart.time - postedAt) / 1000,
        fetchSeconds: fetched?.ms === undefined ? undefined : fetched.ms / 1000,
        cpuSeconds: cpu.nodeSeconds[index] ?? 0,
        fetchedFrom: fetchedFrom(delta, fleet),
        gatewayRequests,
        warnings: [...new Set(node.logs.filter((line) => line.level >= 40 && line.time >= postedAt).map((line) => line.msg))]
      }
    })
    log(`run ${run}: converged in ${seconds.toFixed(2)} s; held seen at ${[...heldSeen].map(([node, at]) => `${nameOf.get(node) ?? node} ${at.toFixed(2)}`).join(', ')}`)

    const drop = await measureDrop(fleet, id, image, settings)
    await stopFleet(fleet)
    return { seconds, loadBefore, cpu, ...(classBytes === undefined ? {} : { classBytes }), nodes, drop }
  } catch (error) {
    throw await failed(fleet, `run ${run}, convergence`, error)
  }
}

async function measureDrop (fleet: FleetNode[], strategyId: string, image: Image, settings: Settings): Promise<ConvergenceRun['drop']> {
  const imageCid = await imageCidOf(fleet[0]!)
  const dropped = fleet.slice(1)
  // Nothing else writes now; let the last inventory writes settle before the "before" figures.
  await sleep(1000)
  const blocksBefore = await Promise.all(dropped.map(async (node) => await blockBytes(path.join(node.dataDir, 'blocks'))))
  const duBefore = dropped.map((node) => du(node.dataDir))
  const node0BlocksBefore = await blockBytes(path.join(fleet[0]!.dataDir, 'blocks'))
  const gcBefore = await Promise.all(dropped.map(async (node) => gcFigures(await scrapeMetrics(node.url, node.name))))
  const collectionsWanted = settings.gcGraceSeconds > 0 ? 2 : 1

  const started = performance.now()
  const elapsed = (): number => (performance.now() - started) / 1000
  await api(fleet[2]!, 'DELETE', `/strategies/${strategyId}`, undefined, 204)
  const state = dropped.map((_, index) => ({
    bytes: blocksBefore[index]!,
    goneFromInventory: undefined as number | undefined,
    barReached: undefined as number | undefined,
    lastShrink: undefined as number | undefined,
    stableSince: 0,
    gcRuns: 0,
    gcBytesRemoved: 0,
    settled: false
  }))
  const deadline = settings.gcGraceSeconds + 120
  let polls = 0
  while (!state.every((s) => s.settled) && elapsed() < deadline) {
    await sleep(DROP_POLL_MS)
    polls++
    await Promise.all(dropped.map(async (node, index) => {
      const s = state[index]!
      if (s.settled) return
      const now = elapsed()
      if (s.goneFromInventory === undefined) {
        const self = (await api<{ nodes: Array<{ self?: boolean, images: string[] }> }>(node, 'GET', '/nodes').catch(() => undefined))?.nodes.find((n) => n.self === true)
        if (self !== undefined && !self.images.includes(imageCid)) s.goneFromInventory = now
      }
      const bytes = await blockBytes(path.join(node.dataDir, 'blocks'))
      if (bytes < s.bytes) {
        s.lastShrink = now
        s.stableSince = now
      }
      s.bytes = bytes
      if (s.barReached === undefined && blocksBefore[index]! - bytes >= FREED_BAR * image.totalSize) s.barReached = now
      if (polls % 4 === 0 || s.gcRuns < collectionsWanted) {
        const gc = gcFigures(await scrapeMetrics(node.url, node.name).catch(() => []))
        s.gcRuns = gc.runs - gcBefore[index]!.runs
        s.gcBytesRemoved = gc.bytesRemoved - gcBefore[index]!.bytesRemoved
      }
      s.settled = s.goneFromInventory !== undefined && s.gcRuns >= collectionsWanted && now - s.stableSince >= SETTLED_MS / 1000
    }))
  }
  const seconds = elapsed()
  if (!state.every((s) => s.settled)) log(`drop: not every node settled after ${deadline} s; reporting what was seen`)
  const nodes = await Promise.all(dropped.map(async (node, index): Promise<NodeDrop> => {
    const s = state[index]!
    const blocksAfter = await blockBytes(path.join(node.dataDir, 'blocks'))
    const freed = blocksBefore[index]! - blocksAfter
    return {
      name: node.name,
      blocksBefore: blocksBefore[index]!,
      blocksAfter,
      duBefore: duBefore[index]!,
      duAfter: du(node.dataDir),
      freed,
      freedShare: freed / image.totalSize,
      goneFromInventory: s.goneFromInventory,
      barReached: s.barReached,
      lastShrink: s.lastShrink,
      gcRuns: s.gcRuns,
      gcBytesRemoved: s.gcBytesRemoved,
      settled: s.settled
    }
  }))
  return { nodes, seconds, node0BlocksBefore, node0BlocksAfter: await blockBytes(path.join(fleet[0]!.dataDir, 'blocks')) }
}

async function imageCidOf (node: FleetNode): Promise<string> {
  const head = await fetch(`${node.url}/v2/${REPOSITORY}/manifests/${TAG}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
    signal: AbortSignal.timeout(5000)
  })
  const imageCid = head.headers.get('shoal-image-cid')
  if (!head.ok || imageCid === null) throw new Error(`HEAD ${REPOSITORY}:${TAG} on ${node.name} answered ${head.status} without Shoal-Image-CID`)
  return imageCid
}

/** Disk usage of a directory, in bytes (`du -sB1`). */
function du (dir: string): number {
  return Number(execFileSync('du', ['-sB1', dir], { encoding: 'utf8' }).split(/\s/)[0])
}

function gcFigures (samples: Sample[]): { runs: number, bytesRemoved: number } {
  return {
    runs: samples.filter((s) => s.name === 'shoal_gc_runs_total' && s.labels.outcome === 'completed').reduce((sum, s) => sum + s.value, 0),
    bytesRemoved: samples.filter((s) => s.name === 'shoal_gc_bytes_removed_total').reduce((sum, s) => sum + s.value, 0)
  }
}

// ---------------------------------------------------------------------------------------------
// Fleets

async function startFleet (runDir: string, settings: Settings): Promise<FleetNode[]> {
  const fleet: FleetNode[] = []
  try {
    fleet.push(await startNode(0, runDir, settings, ['--mesh']))
    const { id, address } = await eventually('node-0\'s mesh to start', async () => {
      const { self } = await api<{ self: { id: string, addresses: string[] } | null }>(fleet[0]!, 'GET', '/peers')
      const address = self?.addresses.find((a) => a.startsWith('/ip4/127.0.0.1/tcp/')) ?? self?.addresses[0]
      return self === null || address === undefined ? undefined : { id: self.id, address }
    })
    fleet[0]!.id = id
    fleet.push(...await Promise.all(Array.from({ length: NODES - 1 }, async (_, index) => await startNode(index + 1, runDir, settings, ['--peer', address]))))
    await eventually(`every node to list ${NODES} nodes`, async () => {
      const lists = await Promise.all(fleet.map(async (node) => (await api<{ nodes: Array<{ id: string, self?: boolean }> }>(node, 'GET', '/nodes')).nodes))
      if (!lists.every((nodes) => nodes.length === NODES)) return undefined
      for (const [index, nodes] of lists.entries()) fleet[index]!.id = nodes.find((node) => node.self === true)?.id ?? ''
      return true
    })
    return fleet
  } catch (error) {
    throw await failed(fleet, 'starting a fleet', error)
  }
}

async function startNode (index: number, runDir: string, settings: Settings, extraArgs: string[]): Promise<FleetNode> {
  const name = `node-${index}`
  const dataDir = path.join(runDir, name)
  const port = settings.rate === undefined ? undefined : SHAPED_HTTP_BASE_PORT + index
  // With --rate (as bench/fleet.ts): startNodeProcess passes --listen 127.0.0.1:<port>, the later
  // --listen wins; 0.0.0.0 inside the namespace is its loopback only. Peers are told 127.0.0.1
  // (shaped); this script and its skopeo clients use 127.0.0.2 (not shaped).
  const shaped = port === undefined ? [] : ['--listen', `0.0.0.0:${port}`, '--advertise-url', `http://${SHAPED_HOST}:${port}`]
  const child = await startNodeProcess({
    dataDir,
    ...(port === undefined ? {} : { port }),
    readyTimeoutMs: 60_000,
    args: [
      ...shaped,
      '--name', name,
      '--log-level', 'info',
      '--heartbeat-seconds', String(settings.heartbeatSeconds),
      '--gc-grace-seconds', String(settings.gcGraceSeconds),
      ...extraArgs
    ]
  })
  const node: FleetNode = port === undefined
    ? { name, dataDir, process: child, url: child.url, clientHost: child.host, id: '', logs: [] }
    : { name, dataDir, process: child, url: `http://${LOCAL_HOST}:${port}`, clientHost: `${LOCAL_HOST}:${port}`, id: '', logs: [] }
  // startNodeProcess keeps only the output's tail; keep the lines a diagnosis needs.
  let pending = ''
  const onData = (chunk: Buffer): void => {
    pending += chunk.toString('utf8')
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) {
      try {
        const entry = JSON.parse(line) as { time?: number, level?: number, msg?: string, ms?: number, image?: string }
        if (typeof entry.msg !== 'string' || typeof entry.time !== 'number') continue
        if (node.logs.length < 2000) node.logs.push({ time: entry.time, level: entry.level ?? 30, msg: entry.msg, ms: entry.ms, image: entry.image })
      } catch {
        // not a log line
      }
    }
  }
  child.process.stdout?.on('data', onData)
  child.process.stderr?.on('data', onData)
  return node
}

/** Warm-up, the image pushed to node-0, and every node ready to fetch it from node-0. */
async function readyFleet (fleet: FleetNode[], image: Image, runDir: string): Promise<void> {
  const started = performance.now()
  const seeder = fleet[0]!
  await copyToRegistry(WARMUP_DIR, `${seeder.clientHost}/${WARMUP_REPOSITORY}:${TAG}`)
  await waitForTag(fleet.map((node) => node.url), WARMUP_REPOSITORY, TAG)
  await waitForHolder(fleet, 'node-0', WARMUP_REPOSITORY, TAG)
  await Promise.all(fleet.slice(1).map(async (node) => {
    const dir = path.join(runDir, `warmup-${node.name}`)
    await copyFromRegistry(`${node.clientHost}/${WARMUP_REPOSITORY}:${TAG}`, dir)
    await rm(dir, { recursive: true, force: true })
  }))
  await copyToRegistry(image.dir, `${seeder.clientHost}/${REPOSITORY}:${TAG}`)
  await waitForTag(fleet.map((node) => node.url), REPOSITORY, TAG)
  await waitForHolder(fleet, 'node-0', REPOSITORY, TAG)
  log(`fleet ready in ${((performance.now() - started) / 1000).toFixed(1)} s (warm-up, push, catalogue)`)
}

/** With --rate: bytes each node's tc class sent since `before`, node-0 first. */
function fleetClassBytes (before: Map<string, number>): number[] {
  const after = readClassBytes()
  return Array.from({ length: NODES }, (_, index) => {
    const id = classIdOf(SHAPED_HTTP_BASE_PORT + index)
    return (after.get(id) ?? 0) - (before.get(id) ?? 0)
  })
}

async function stopFleet (fleet: FleetNode[]): Promise<void> {
  await Promise.all(fleet.map(async (node) => await node.process.stop()))
}

/** Kills the fleet and makes an error that carries each node's last output. */
async function failed (fleet: FleetNode[], what: string, error: unknown): Promise<Error> {
  await Promise.all(fleet.map(async (node) => await node.process.kill9()))
  const outputs = fleet.map((node) => `--- ${node.name} output ---\n${node.process.output().trim()}`).join('\n')
  return new Error(`${what}: ${(error as Error).message}\n${outputs}`, { cause: error })
}

// ---------------------------------------------------------------------------------------------
// CPU, load, metrics

interface CpuSample {
  busy: number
  total: number
  children: number
  nodes: number[]
}


async function sampleCpu (fleet: FleetNode[]): Promise<CpuSample> {
  return {
    ...await machineJiffies(),
    nodes: await Promise.all(fleet.map(async (node) => {
      const stat = await processStat(String(node.process.process.pid))
      return (stat[11] ?? 0) + (stat[12] ?? 0)
    }))
  }
}

function cpuUse (before: CpuSample, after: CpuSample): CpuUse {
  const clientSeconds = (after.children - before.children) / CLOCK_TICKS
  const nodeSeconds = after.nodes.map((ticks, index) => (ticks - (before.nodes[index] ?? 0)) / CLOCK_TICKS)
  // /proc/stat counts jiffies of all cores together.
  const busySeconds = (after.busy - before.busy) / CLOCK_TICKS
  return {
    busy: (after.busy - before.busy) / Math.max(1, after.total - before.total),
    clientSeconds,
    nodeSeconds,
    otherSeconds: Math.max(0, busySeconds - clientSeconds - nodeSeconds.reduce((sum, value) => sum + value, 0))
  }
}

function loadAverage (): number {
  return os.loadavg()[0] ?? 0
}

function uptime (): string {
  try {
    return execFileSync('uptime', { encoding: 'utf8' }).trim()
  } catch {
    return `load average: ${os.loadavg().map((l) => l.toFixed(2)).join(', ')}`
  }
}


/** Verified block bytes fetched, by the name of the provider. */
function fetchedFrom (delta: Sample[], fleet: FleetNode[]): Record<string, number> {
  const nameOf = new Map(fleet.map((node) => [node.id, node.name]))
  const bytes: Record<string, number> = {}
  for (const sample of delta) {
    if (sample.name !== 'shoal_mesh_bytes_fetched_total' || sample.value <= 0) continue
    const provider = nameOf.get(sample.labels.provider ?? '') ?? sample.labels.provider ?? '?'
    bytes[provider] = (bytes[provider] ?? 0) + sample.value
  }
  return bytes
}

// ---------------------------------------------------------------------------------------------
// Report

interface Summary {
  medianSlowestSingle: number
  medianConvergence: number
  ratio: number
  perRunRatios: number[]
  convergenceMet: boolean
  minFreedShare: number
  freedMet: boolean
}

function summarize (runs: Run[], imageBytes: number): Summary {
  const slowest = runs.map((run) => Math.max(...run.singles.map((s) => s.seconds)))
  const convergence = runs.map((run) => run.convergence.seconds)
  const medianSlowestSingle = median(slowest)
  const medianConvergence = median(convergence)
  const ratio = medianConvergence / medianSlowestSingle
  const minFreedShare = Math.min(...runs.flatMap((run) => run.convergence.drop.nodes.map((node) => node.freed / imageBytes)))
  return {
    medianSlowestSingle,
    medianConvergence,
    ratio,
    perRunRatios: runs.map((_, index) => convergence[index]! / slowest[index]!),
    convergenceMet: ratio <= CONVERGENCE_BAR,
    minFreedShare,
    freedMet: minFreedShare >= FREED_BAR
  }
}

function renderReport (settings: Settings, image: Image, runs: Run[], loadAtStart: string, loadAtEnd: string): string {
  const summary = summarize(runs, image.totalSize)
  const lines = [
    `## Convergence, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Machine: ${machineDescription()}. Client: ${toolVersion('skopeo', ['--version'])}. Node ${process.version}. Commit ${settings.commit}.`,
    `Image: ${formatMiB(image.totalSize)} in 4 layers (${image.manifestDigest.slice(0, 19)}…), pushed to node-0 of ${NODES} nodes on loopback` +
      (settings.rate === undefined
        ? ', '
        : ` in a private network namespace, each node's HTTP egress to its peers capped at ${settings.rate} by tc (skopeo clients and this script's requests unshaped), `) +
      `heartbeats every ${settings.heartbeatSeconds} s, GC grace ${settings.gcGraceSeconds} s. ${runs.length} run(s); each single pull and each convergence on a fresh fleet.`,
    `Load: at start \`${loadAtStart}\`; at end \`${loadAtEnd}\`.`,
    '',
    '| run | single pulls node-1..4 s | slowest single s | convergence s | convergence / slowest single | load (1 min) before convergence |',
    '|---:|---|---:|---:|---:|---:|'
  ]
  for (const run of runs) {
    const slowest = Math.max(...run.singles.map((s) => s.seconds))
    lines.push(`| ${run.index} | ${run.singles.map((s) => s.seconds.toFixed(2)).join(', ')} | ${slowest.toFixed(2)} | ` +
      `${run.convergence.seconds.toFixed(2)} | ${(run.convergence.seconds / slowest).toFixed(2)} | ${run.convergence.loadBefore.toFixed(2)} |`)
  }
  lines.push(`| median | | ${summary.medianSlowestSingle.toFixed(2)} | ${summary.medianConvergence.toFixed(2)} | ${summary.ratio.toFixed(2)} | |`)
  lines.push('', 'Freed by dropping the strategy (block file bytes under `<data>/blocks`; `du -sB1` of the data directory):', '',
    '| run | node | blocks before | blocks after | freed | freed / image | du before | du after | image off its inventory s | ≥ 90 % freed s | last shrink s | collections |',
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
  for (const run of runs) {
    for (const node of run.convergence.drop.nodes) {
      lines.push(`| ${run.index} | ${node.name} | ${formatMiB(node.blocksBefore)} | ${formatMiB(node.blocksAfter)} | ${formatMiB(node.freed)} | ` +
        `${(node.freed / image.totalSize * 100).toFixed(1)} % | ${formatMiB(node.duBefore)} | ${formatMiB(node.duAfter)} | ${seconds(node.goneFromInventory)} | ` +
        `${seconds(node.barReached)} | ${seconds(node.lastShrink)} | ${node.gcRuns}${node.settled ? '' : ' (not settled)'} |`)
    }
  }
  lines.push('', 'Bars:',
    `- Convergence of \`all\` on ${NODES} nodes / slowest single pull (medians): ${summary.ratio.toFixed(2)} (bar ≤ ${CONVERGENCE_BAR}): ${summary.convergenceMet ? 'met' : 'NOT met'}. ` +
      `Per run: ${summary.perRunRatios.map((r) => r.toFixed(2)).join(', ')}.`,
    `- Smallest share of the image's bytes freed by a node that dropped it: ${(summary.minFreedShare * 100).toFixed(1)} % (bar ≥ ${FREED_BAR * 100} %): ${summary.freedMet ? 'met' : 'NOT met'}.`,
    '', 'Per run, for diagnosis: CPU during each timed part (busy share of the machine; CPU s of the skopeo client and of each node process, node-0 first), ' +
      'bytes fetched by provider; during convergence, per node: when the status first showed it held, when its reconciler started fetching and how long the fetch took (its log).', '')
  for (const run of runs) {
    lines.push(`- Run ${run.index}:`)
    for (const single of run.singles) {
      lines.push(`  - single pull through node-${single.node}: ${single.seconds.toFixed(2)} s, load ${single.loadBefore.toFixed(2)}; ${describeCpu(single.cpu)}; fetched ${describeFetched(single.fetchedFrom)}${describeClassBytes(single.classBytes)}`)
    }
    const c = run.convergence
    lines.push(`  - convergence: ${c.seconds.toFixed(2)} s, load ${c.loadBefore.toFixed(2)}; ${describeCpu(c.cpu)}${describeClassBytes(c.classBytes)}`)
    for (const node of c.nodes) lines.push(`    - ${describeNodeConvergence(node)}`)
    lines.push(`  - drop: settled after ${c.drop.seconds.toFixed(1)} s; node-0 (pushed there, keeps it) blocks ${formatMiB(c.drop.node0BlocksBefore)} -> ${formatMiB(c.drop.node0BlocksAfter)}`)
  }
  return `${lines.join('\n')}\n`
}

function describeCpu (cpu: CpuUse): string {
  return `CPU busy ${(cpu.busy * 100).toFixed(0)} % of ${os.availableParallelism()} cores, CPU s: skopeo ${cpu.clientSeconds.toFixed(1)}, ` +
    `nodes ${cpu.nodeSeconds.map((s) => s.toFixed(1)).join(', ')} (together ${cpu.nodeSeconds.reduce((sum, value) => sum + value, 0).toFixed(1)}), other processes ${cpu.otherSeconds.toFixed(1)}`
}

function describeClassBytes (bytes: number[] | undefined): string {
  return bytes === undefined ? '' : `; tc class sent (to peers) ${bytes.map((n, index) => `node-${index} ${formatMiB(n)}`).join(', ')}`
}

function describeFetched (bytes: Record<string, number>): string {
  const entries = Object.entries(bytes).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
  return entries.length === 0 ? 'nothing' : entries.map(([provider, n]) => `${formatMiB(n)} from ${provider}`).join(', ')
}

function describeNodeConvergence (node: NodeConvergence): string {
  const gateway = Object.entries(node.gatewayRequests).map(([status, count]) => `${status}×${count}`).join(' ')
  const ended = node.fetchStarted !== undefined && node.fetchSeconds !== undefined ? node.fetchStarted + node.fetchSeconds : undefined
  const fetch = node.fetchStarted === undefined
    ? 'no fetch logged'
    : `fetch started at ${node.fetchStarted.toFixed(2)} s, took ${node.fetchSeconds === undefined ? '?' : node.fetchSeconds.toFixed(2)} s` +
      (ended !== undefined && node.heldSeen !== undefined ? ` (ended at ${ended.toFixed(2)} s, shown held ${(node.heldSeen - ended).toFixed(2)} s later)` : '')
  return `${node.name}: held seen at ${seconds(node.heldSeen)} s; ${fetch}; CPU ${node.cpuSeconds.toFixed(1)} s; fetched ${describeFetched(node.fetchedFrom)}; ` +
    `/ipfs answers ${gateway === '' ? 'none' : gateway}${node.warnings.length > 0 ? `; warnings: ${node.warnings.join(' | ')}` : ''}`
}

function describeDrop (node: NodeDrop, imageBytes: number): string {
  return `${node.name}: blocks ${formatMiB(node.blocksBefore)} -> ${formatMiB(node.blocksAfter)} (freed ${(node.freed / imageBytes * 100).toFixed(1)} % of the image), ` +
    `du ${formatMiB(node.duBefore)} -> ${formatMiB(node.duAfter)}, off its inventory at ${seconds(node.goneFromInventory)} s, ≥ 90 % freed at ${seconds(node.barReached)} s, ` +
    `last shrink ${seconds(node.lastShrink)} s, ${node.gcRuns} collections (${formatMiB(node.gcBytesRemoved)} removed)${node.settled ? '' : ', NOT settled'}`
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function api<T = unknown> (node: FleetNode, method: string, route: string, body?: unknown, expect = 200): Promise<T> {
  const response = await fetch(`${node.url}/api/v1${route}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(10_000)
  })
  if (response.status !== expect) {
    throw new Error(`${method} /api/v1${route} on ${node.name} answered ${response.status}: ${(await response.text()).slice(0, 300)}`)
  }
  return (response.status === 204 ? undefined : await response.json()) as T
}

async function freshRunDir (name: string): Promise<string> {
  const runDir = path.join(WORK_DIR, `convergence-${name}-${Date.now()}`)
  await mkdir(runDir, { recursive: true })
  runDirs.push(runDir)
  return runDir
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

function seconds (value: number | undefined): string {
  return value === undefined ? '—' : value.toFixed(1)
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

function formatMiB (bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`
}

function log (message: string): void {
  process.stderr.write(`[convergence] ${message}\n`)
}

main().catch((error: unknown) => {
  log((error as Error).message)
  process.exitCode = 1
})
