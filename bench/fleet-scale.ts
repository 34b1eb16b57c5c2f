// Fleet at scale on one machine (issue 11): N Shoal nodes (default 30), one process each, on
// loopback, default settings apart from ports, data directories and peers (each node is told of
// two others at most, bench/process-fleet.ts peersOf; no mDNS). In order, on one fleet:
//
//   1. Idle: after every node lists all N and --settle-seconds more, a window of --idle-minutes
//      in which this script sends the nodes nothing. Per node: CPU (utime + stime from
//      /proc/<pid>/stat) as % of one core; control-plane bytes, i.e. bytes sent + received over
//      TCP connections with one end on a node's libp2p port (DHT, gossipsub, identify, ping; HTTP
//      left out), read from outside with `ss` every 5 s (node-probes.ts SocketBytes); RSS.
//   2. Tag visibility: --pushes tags, each pushed (a small image, blobs then the manifest) to node
//      k mod N in turn; the clock starts when the manifest PUT is answered and stops when the last
//      node has it. --watch events (the default): each node's GET /api/v1/events stream, open
//      before the pushes, tells of the tag once the node answers it on /v2 (a node told before
//      the PUT's answer counts 0 ms); after each push every node's tags/list is checked to list
//      it (not timed). --watch poll: each node's /v2/<repo>/tags/list polled with one request per
//      node in flight every --poll-ms (node-probes.ts tagVisibleAfter), which loads the machine
//      it measures and adds up to --poll-ms to each node's time. --gap-ms between pushes.
//   3. `all` strategy: a --mib image (one layer of random hex text, unique 1 MiB chunks) pushed to
//      node-0; once every node lists the tag and node-0 as its holder, POST /api/v1/strategies
//      {kind: all} to node-0 and GET its status every 250 ms until all N are desired and held.
//      Seeder egress: node-0's shoal_blob_bytes_sent_total during it (blob and block bytes it sent,
//      to peers over /ipfs/ here), and the bytes the others fetched from node-0 by their metrics.
//
//   node bench/fleet-scale.ts [--nodes 30] [--settle-seconds 60] [--idle-minutes 3] [--pushes 20]
//                             [--watch events|poll] [--poll-ms 25] [--gap-ms 1000] [--mib 16]
//                             [--concurrency 3] [--operator-key]
// --operator-key: the fleet is a trusted one (issue 12): an operator key made for the run, every
// node started with it, node-0 admitted as admin and the others as members (through node-0's API)
// before the measures start.
//
// Progress on stderr; the table on stdout and in bench/out/fleet-scale-latest.md, raw numbers in
// fleet-scale-latest.json. Every node process is killed and the run directory removed on any exit.
import { randomBytes } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import os from 'node:os'
import { parseArgs } from 'node:util'
import { newOperatorKeys, signStatement } from '../src/access/certificates.ts'
import { RegistryClient } from '../test/support/registry-client.ts'
import { openTagEvents, type TagEventStream } from '../test/support/tag-events.ts'
import { gitCommit, machineDescription } from './environment.ts'
import { CLOCK_TICKS, SocketBytes, machineJiffies, processCpuTicks, processMemory, scrapeMetrics, subtractMetrics, tagVisibleAfter, waitForHolder, waitForTag } from './node-probes.ts'
import { freshRunDir, median, peersOf, quantile, seconds, startProcessFleet, stopFleet, killFleet, waitForMembers, writeResults, type FleetNode } from './process-fleet.ts'

const MiB = 1024 * 1024
const SOCKET_SAMPLE_MS = 5_000
const STATUS_POLL_MS = 250
const CONVERGENCE_TIMEOUT_MS = 600_000
const TAG_TIMEOUT_MS = 60_000
const BARS = { idleCpuPercent: 1, tagP50Ms: 250, tagP99Ms: 1000 }

interface Settings {
  nodes: number
  settleSeconds: number
  idleMinutes: number
  pushes: number
  watch: 'events' | 'poll'
  pollMs: number
  gapMs: number
  mib: number
  concurrency: number
  operatorKey: boolean
}

interface IdleNode {
  name: string
  cpuPercent: number
  /** Control-plane bytes per minute, sent and received. */
  sentPerMinute: number
  receivedPerMinute: number
  sockets: number
  rss: number
}

interface Idle {
  seconds: number
  /** Busy share of the machine's cores during the window (the fleet, this script, anyone else). */
  machineBusy: number
  loadAverage: number[]
  closedSockets: number
  nodes: IdleNode[]
}

interface TagPush {
  tag: string
  pushedTo: string
  /** Per node, ms from the PUT's answer to its tags/list listing the tag. */
  perNode: number[]
  /** The last node's. */
  all: number
  /** While polling for it: busy share of the machine, and CPU ms this script used (its polling competes with the nodes). */
  machineBusy: number
  scriptCpuMs: number
}

interface Convergence {
  imageBytes: number
  seconds: number
  seederSentBytes: number
  fetchedFromSeeder: number
  fetchedFromOthers: number
  machineBusy: number
  /** Seconds after the POST when the status first showed each node held, in node order. */
  heldSeen: Array<number | undefined>
}

interface Memory {
  name: string
  rss: number
  peak: number
}

async function main (): Promise<void> {
  const settings = parseSettings()
  const started = performance.now()
  const loadAtStart = loadAverage()
  log(`${settings.nodes} nodes on ${os.availableParallelism()} cores; load ${loadAtStart.join(' ')}${loadAtStart[0]! > 1 ? ' (a busy machine: CPU figures will not be valid)' : ''}`)
  const runDir = await freshRunDir('fleet-scale')
  const operator = settings.operatorKey ? newOperatorKeys() : undefined
  if (operator !== undefined) await writeFile(path.join(runDir, 'operator.pub'), operator.publicPem)
  const fleet = await startProcessFleet({ size: settings.nodes, runDir, concurrency: settings.concurrency, log, args: operator === undefined ? [] : ['--operator-key', path.join(runDir, 'operator.pub')] })
  try {
    await waitForMembers(fleet, log)
    if (operator !== undefined) await admitAll(fleet, operator.privatePem)
    const ids = await nodeIds(fleet)
    log(`settling ${settings.settleSeconds} s`)
    await sleep(settings.settleSeconds * 1000)
    const idle = await measureIdle(fleet, settings)
    const tags = await measureTags(fleet, settings)
    const convergence = await measureConvergence(fleet, ids, settings)
    const memory = await Promise.all(fleet.map(async (node) => ({ name: node.name, ...await processMemory(node.pid) })))
    log(`stopping the fleet (${seconds(started)} s since the start)`)
    await stopFleet(fleet)
    const json = { settings, commit: gitCommit(), machine: machineDescription(), node: process.version, loadAtStart, idle, tags, convergence, memory }
    await writeResults('fleet-scale', renderReport(settings, loadAtStart, idle, tags, convergence, memory), json, log)
  } catch (error) {
    // The nodes that died on their own say most; otherwise the first few.
    const exited = fleet.filter((node) => node.process.process.exitCode !== null || node.process.process.signalCode !== null)
    await killFleet(fleet)
    const tails = (exited.length > 0 ? exited : fleet).slice(0, 3).map((node) => `--- ${node.name} output ---\n${node.process.output().trim().slice(-3000)}`).join('\n')
    throw new Error(`${(error as Error).message}\n${tails}`, { cause: error })
  }
}

function parseSettings (): Settings {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '30' },
      'settle-seconds': { type: 'string', default: '60' },
      'idle-minutes': { type: 'string', default: '3' },
      pushes: { type: 'string', default: '20' },
      watch: { type: 'string', default: 'events' },
      'poll-ms': { type: 'string', default: '25' },
      'gap-ms': { type: 'string', default: '1000' },
      mib: { type: 'string', default: '16' },
      concurrency: { type: 'string', default: '3' },
      'operator-key': { type: 'boolean', default: false }
    }
  })
  const number = (name: keyof typeof values, min: number): number => {
    const value = Number(values[name])
    if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${values[name]}`)
    return value
  }
  return {
    nodes: number('nodes', 2),
    settleSeconds: number('settle-seconds', 0),
    idleMinutes: number('idle-minutes', 0.1),
    pushes: number('pushes', 1),
    watch: watchOf(values.watch),
    pollMs: number('poll-ms', 1),
    gapMs: number('gap-ms', 0),
    mib: number('mib', 1),
    concurrency: number('concurrency', 1),
    operatorKey: values['operator-key'] === true
  }
}

/** Certifies node-0 as admin and the rest as members, through node-0's API; waits until every node holds its role. */
async function admitAll (fleet: FleetNode[], operatorPem: string): Promise<void> {
  const started = performance.now()
  const { nodes } = await (await fetch(`${fleet[0]!.url}/api/v1/nodes`)).json() as { nodes: Array<{ id: string, writer?: string }> }
  for (const node of fleet) {
    const writer = nodes.find(candidate => candidate.id === node.peerId)?.writer
    if (writer === undefined) throw new Error(`node-0 has not heard ${node.name}'s writer key`)
    const certificate = signStatement({ kind: 'certificate', peer: node.peerId, writer, role: node.index === 0 ? 'admin' : 'member', issuedAt: new Date().toISOString() }, operatorPem)
    const answer = await fetch(`${fleet[0]!.url}/api/v1/fleet/statements`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(certificate) })
    if (answer.status !== 201) throw new Error(`admitting ${node.name}: ${answer.status} ${await answer.text()}`)
  }
  for (const node of fleet) {
    for (;;) {
      const trust = await (await fetch(`${node.url}/api/v1/fleet/trust`)).json() as { self: { role: string | null }, statements: unknown[] }
      if (trust.self.role !== null && trust.statements.length === fleet.length) break
      await sleep(250)
    }
  }
  log(`admitted ${fleet.length} nodes in ${seconds(started)} s`)
}

function watchOf (value: string | undefined): Settings['watch'] {
  if (value === 'events' || value === 'poll') return value
  throw new Error(`--watch must be events or poll, got ${value}`)
}

// ---------------------------------------------------------------------------------------------
// 1. Idle

async function measureIdle (fleet: FleetNode[], settings: Settings): Promise<Idle> {
  const windowMs = settings.idleMinutes * 60_000
  log(`idle window: ${settings.idleMinutes} min, nothing sent to the nodes; sockets sampled every ${SOCKET_SAMPLE_MS / 1000} s`)
  const sockets = new SocketBytes(fleet.map((node) => node.p2pPort))
  await sockets.begin()
  const machineBefore = await machineJiffies()
  const cpuBefore = await Promise.all(fleet.map(async (node) => await processCpuTicks(node.pid)))
  const started = performance.now()
  let lastReport = started
  while (performance.now() - started < windowMs) {
    await sleep(Math.min(SOCKET_SAMPLE_MS, windowMs - (performance.now() - started)))
    await sockets.sample()
    if (performance.now() - lastReport >= 30_000) {
      lastReport = performance.now()
      const cpu = await Promise.all(fleet.map(async (node, index) => await processCpuTicks(node.pid) - cpuBefore[index]!))
      const elapsed = (performance.now() - started) / 1000
      log(`idle ${elapsed.toFixed(0)}/${(windowMs / 1000).toFixed(0)} s: CPU per node median ${percent(median(cpu), elapsed)}, max ${percent(Math.max(...cpu), elapsed)} of a core; load ${loadAverage().join(' ')}`)
    }
  }
  const cpuAfter = await Promise.all(fleet.map(async (node) => await processCpuTicks(node.pid)))
  const machineAfter = await machineJiffies()
  const elapsed = (performance.now() - started) / 1000
  const { byPid, closed } = await sockets.totals()
  const minutes = elapsed / 60
  const nodes = await Promise.all(fleet.map(async (node, index): Promise<IdleNode> => {
    const bytes = byPid.get(node.pid) ?? { sent: 0, received: 0, sockets: 0 }
    return {
      name: node.name,
      cpuPercent: (cpuAfter[index]! - cpuBefore[index]!) / CLOCK_TICKS / elapsed * 100,
      sentPerMinute: bytes.sent / minutes,
      receivedPerMinute: bytes.received / minutes,
      sockets: bytes.sockets,
      rss: (await processMemory(node.pid)).rss
    }
  }))
  const idle: Idle = {
    seconds: elapsed,
    machineBusy: (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total),
    loadAverage: loadAverage(),
    closedSockets: closed,
    nodes
  }
  const cpu = nodes.map((node) => node.cpuPercent)
  const bytes = nodes.map((node) => node.sentPerMinute + node.receivedPerMinute)
  log(`idle: CPU per node median ${cpuPercent(median(cpu))}, max ${cpuPercent(Math.max(...cpu))}; control-plane bytes per node per minute median ${kB(median(bytes))}, max ${kB(Math.max(...bytes))}; machine busy ${(idle.machineBusy * 100).toFixed(0)} %`)
  return idle
}

// ---------------------------------------------------------------------------------------------
// 2. Tag visibility

async function measureTags (fleet: FleetNode[], settings: Settings): Promise<TagPush[]> {
  const repository = 'scale/tags'
  const urls = fleet.map((node) => node.url)
  // Not timed: the repository's first push, so every node has seen it once.
  await new RegistryClient(fleet[0]!.url).pushImage(repository, 'warmup', 'warm-up layer')
  await waitForTag(urls, repository, 'warmup')
  const streams = settings.watch === 'events' ? await Promise.all(urls.map(async (url) => await openTagEvents(url))) : []
  try {
    return await pushTags(fleet, settings, repository, streams)
  } finally {
    for (const stream of streams) stream.close()
  }
}

async function pushTags (fleet: FleetNode[], settings: Settings, repository: string, streams: TagEventStream[]): Promise<TagPush[]> {
  const urls = fleet.map((node) => node.url)
  const pushes: TagPush[] = []
  for (let k = 0; k < settings.pushes; k++) {
    const pusher = fleet[k % fleet.length]!
    const tag = `t${k}`
    const client = new RegistryClient(pusher.url)
    const manifest = await client.pushImageBlobs(repository, `layer ${k} ${randomBytes(8).toString('hex')}`)
    const response = await client.pushManifest(repository, tag, manifest, 'application/vnd.oci.image.manifest.v1+json')
    const since = performance.now()
    if (response.status !== 201) throw new Error(`PUT ${repository}:${tag} on ${pusher.name} answered ${response.status}: ${await response.text()}`)
    const machineBefore = await machineJiffies()
    const scriptBefore = process.cpuUsage()
    const perNode = settings.watch === 'poll'
      ? await tagVisibleAfter(urls, repository, tag, since, settings.pollMs, TAG_TIMEOUT_MS)
      : await Promise.all(streams.map(async (stream) => Math.max(0, (await stream.next((change) => change.repository === repository && change.tag === tag && !change.deleted, TAG_TIMEOUT_MS)).at - since)))
    const scriptCpu = process.cpuUsage(scriptBefore)
    const machineAfter = await machineJiffies()
    // What the events said, as the registry answers it.
    if (settings.watch === 'events') await assertListed(urls, repository, tag)
    const push: TagPush = {
      tag,
      pushedTo: pusher.name,
      perNode,
      all: Math.max(...perNode),
      machineBusy: (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total),
      scriptCpuMs: (scriptCpu.user + scriptCpu.system) / 1000
    }
    pushes.push(push)
    log(`tag ${k + 1}/${settings.pushes} pushed to ${pusher.name}: on all ${fleet.length} after ${push.all.toFixed(0)} ms (median node ${median(perNode).toFixed(0)} ms)`)
    await sleep(settings.gapMs)
  }
  return pushes
}

/** Every node lists the tag now (its event came first): events that ran ahead of /v2 would fail here. */
async function assertListed (urls: string[], repository: string, tag: string): Promise<void> {
  await Promise.all(urls.map(async (url) => {
    const response = await fetch(`${url}/v2/${repository}/tags/list`, { signal: AbortSignal.timeout(5000) })
    const tags = response.ok ? (await response.json() as { tags?: string[] | null }).tags ?? [] : []
    if (!tags.includes(tag)) throw new Error(`${url} told of ${repository}:${tag} by its events but does not list it (${response.status})`)
  }))
}

// ---------------------------------------------------------------------------------------------
// 3. An `all` strategy

interface StrategyStatus {
  desired: Array<{ node: string, state: string }>
}

async function measureConvergence (fleet: FleetNode[], ids: string[], settings: Settings): Promise<Convergence> {
  const repository = 'scale/app'
  const seeder = fleet[0]!
  // Hex text of random bytes: every 1 MiB chunk differs, so nothing is deduplicated.
  const layer = randomBytes(settings.mib * MiB / 2).toString('hex')
  const client = new RegistryClient(seeder.url)
  const { body } = await client.pushImage(repository, 'v1', layer)
  const imageBytes = Buffer.byteLength(layer) + Buffer.byteLength(body)
  log(`pushed a ${(imageBytes / MiB).toFixed(1)} MiB image to ${seeder.name}; waiting until every node lists it and its holder`)
  const nodes = fleet.map((node, index) => ({ id: ids[index]!, url: node.url }))
  await waitForTag(fleet.map((node) => node.url), repository, 'v1')
  await waitForHolder(nodes, seeder.name, repository, 'v1')
  const metricsBefore = await Promise.all(fleet.map(async (node) => await scrapeMetrics(node.url, node.name)))
  const machineBefore = await machineJiffies()
  const started = performance.now()
  const created = await fetch(`${seeder.url}/api/v1/strategies`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ image: `${repository}:v1`, kind: 'all' }),
    signal: AbortSignal.timeout(10_000)
  })
  if (created.status !== 201) throw new Error(`POST /api/v1/strategies answered ${created.status}: ${await created.text()}`)
  const { strategy } = await created.json() as { strategy: { id: string } }
  const heldSeen = new Map<string, number>()
  const wanted = [...ids].sort().join()
  let lastReport = started
  let converged: number | undefined
  while (converged === undefined) {
    if (performance.now() - started > CONVERGENCE_TIMEOUT_MS) throw new Error(`not converged after ${CONVERGENCE_TIMEOUT_MS / 1000} s: ${heldSeen.size}/${fleet.length} held`)
    try {
      const response = await fetch(`${seeder.url}/api/v1/strategies/${strategy.id}/status`, { signal: AbortSignal.timeout(10_000) })
      if (!response.ok) throw new Error(`status answered ${response.status}`)
      const status = await response.json() as StrategyStatus
      const now = (performance.now() - started) / 1000
      for (const desired of status.desired) if (desired.state === 'held' && !heldSeen.has(desired.node)) heldSeen.set(desired.node, now)
      if (status.desired.map((d) => d.node).sort().join() === wanted && status.desired.every((d) => d.state === 'held')) converged = now
    } catch (error) {
      log(`status poll failed: ${(error as Error).message}`)
    }
    if (performance.now() - lastReport > 5_000) {
      lastReport = performance.now()
      log(`all strategy: ${heldSeen.size}/${fleet.length} held after ${seconds(started)} s`)
    }
    if (converged === undefined) await sleep(STATUS_POLL_MS)
  }
  const machineAfter = await machineJiffies()
  const metricsAfter = await Promise.all(fleet.map(async (node) => await scrapeMetrics(node.url, node.name)))
  let fetchedFromSeeder = 0
  let fetchedFromOthers = 0
  for (const [index, after] of metricsAfter.entries()) {
    for (const sample of subtractMetrics(after, metricsBefore[index]!)) {
      if (sample.name !== 'shoal_mesh_bytes_fetched_total') continue
      if (sample.labels.provider === ids[0]) fetchedFromSeeder += sample.value
      else fetchedFromOthers += sample.value
    }
  }
  const seederSentBytes = subtractMetrics(metricsAfter[0]!, metricsBefore[0]!)
    .filter((sample) => sample.name === 'shoal_blob_bytes_sent_total').reduce((sum, sample) => sum + sample.value, 0)
  const convergence: Convergence = {
    imageBytes,
    seconds: converged,
    seederSentBytes,
    fetchedFromSeeder,
    fetchedFromOthers,
    machineBusy: (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total),
    heldSeen: ids.map((id) => heldSeen.get(id))
  }
  log(`all strategy: held on all ${fleet.length} after ${converged.toFixed(2)} s; seeder sent ${(seederSentBytes / MiB).toFixed(1)} MiB (${(seederSentBytes / imageBytes).toFixed(2)}× the image)`)
  return convergence
}

// ---------------------------------------------------------------------------------------------
// Report

function renderReport (settings: Settings, loadAtStart: number[], idle: Idle, tags: TagPush[], convergence: Convergence, memory: Memory[]): string {
  const cpu = idle.nodes.map((node) => node.cpuPercent)
  const sent = idle.nodes.map((node) => node.sentPerMinute)
  const received = idle.nodes.map((node) => node.receivedPerMinute)
  const both = idle.nodes.map((node) => node.sentPerMinute + node.receivedPerMinute)
  const all = tags.map((push) => push.all)
  const everyNode = tags.flatMap((push) => push.perNode)
  const rss = memory.map((node) => node.rss)
  const peak = memory.map((node) => node.peak)
  const verdict = (value: number, bar: number, unit: string): string => `${value.toFixed(unit === 'ms' ? 0 : 2)} ${unit} (bar ≤ ${bar} ${unit}): ${value <= bar ? 'met' : 'NOT met'}`
  const lines = [
    `## Fleet at scale, ${new Date().toISOString().slice(0, 10)}: ${settings.nodes} nodes, one process each${settings.operatorKey ? ', under an operator key (every node certified)' : ''}`,
    '',
    `Machine: ${machineDescription()}. Node ${process.version}. Commit ${gitCommit()}. Load average at the start: ${loadAtStart.join(' ')}.`,
    `Default settings apart from ports, data directories and peers (node i told of node i-1 and node ⌊i/2⌋; node-0 of none). ` +
      `Idle window ${(idle.seconds / 60).toFixed(1)} min after every node listed all ${settings.nodes} and ${settings.settleSeconds} s more; ` +
      `machine busy ${(idle.machineBusy * 100).toFixed(0)} % during it, load average at its end ${idle.loadAverage.join(' ')}.`,
    '',
    '| measure | median | max | bar |',
    '|---|---:|---:|---|',
    `| idle CPU per node, % of one core | ${median(cpu).toFixed(2)} | ${Math.max(...cpu).toFixed(2)} | ≤ ${BARS.idleCpuPercent} |`,
    `| control-plane bytes per node per minute, sent + received | ${kB(median(both))} | ${kB(Math.max(...both))} | |`,
    `| … sent | ${kB(median(sent))} | ${kB(Math.max(...sent))} | |`,
    `| … received | ${kB(median(received))} | ${kB(Math.max(...received))} | |`,
    `| RSS per node at the end of the idle window | ${mib(median(idle.nodes.map((node) => node.rss)))} | ${mib(Math.max(...idle.nodes.map((node) => node.rss)))} | |`,
    `| RSS per node at the end of the run | ${mib(median(rss))} | ${mib(Math.max(...rss))} | |`,
    `| peak RSS (VmHWM) per node over the run | ${mib(median(peak))} | ${mib(Math.max(...peak))} | |`,
    '',
    `Fleet RSS at the end: ${mib(rss.reduce((sum, value) => sum + value, 0))} for ${settings.nodes} processes.`,
    '',
    `| tag pushed to one node, visible on all ${settings.nodes} (${tags.length} pushes) | p50 | p99 | max |`,
    '|---|---:|---:|---:|',
    `| until the last node lists it, ms | ${quantile(all, 0.5).toFixed(0)} | ${quantile(all, 0.99).toFixed(0)} | ${Math.max(...all).toFixed(0)} |`,
    `| each node, ms (${everyNode.length} samples) | ${quantile(everyNode, 0.5).toFixed(0)} | ${quantile(everyNode, 0.99).toFixed(0)} | ${Math.max(...everyNode).toFixed(0)} |`,
    '',
    `While waiting for a tag (${settings.watch === 'poll' ? 'polling' : 'event streams'}): machine busy ${(median(tags.map((push) => push.machineBusy)) * 100).toFixed(0)} % (median over pushes); this script used ` +
      `${median(tags.map((push) => push.scriptCpuMs / push.all * 100)).toFixed(0)} % of a core (median), the cost of watching. ` +
      `Slowest pushes: ${[...tags].sort((a, b) => b.all - a.all).slice(0, 3).map((push) => `${push.tag} to ${push.pushedTo} ${push.all.toFixed(0)} ms`).join(', ')}.`,
    '',
    `\`all\` strategy, ${mib(convergence.imageBytes)} image pushed to node-0: held on all ${settings.nodes} after **${convergence.seconds.toFixed(2)} s** ` +
      `(status polled every ${STATUS_POLL_MS} ms; machine busy ${(convergence.machineBusy * 100).toFixed(0)} %). ` +
      `Seeder egress (node-0's shoal_blob_bytes_sent_total): ${mib(convergence.seederSentBytes)} = ${(convergence.seederSentBytes / convergence.imageBytes).toFixed(2)}× the image; ` +
      `the others fetched ${mib(convergence.fetchedFromSeeder)} from node-0 and ${mib(convergence.fetchedFromOthers)} from each other. ` +
      `Status first showed each node held at (s, in order): ${convergence.heldSeen.map((at) => at?.toFixed(1) ?? '—').sort((a, b) => Number(a) - Number(b)).join(', ')}.`,
    '',
    'Bars:',
    `- idle CPU per node, max over nodes: ${verdict(Math.max(...cpu), BARS.idleCpuPercent, '%')}`,
    `- tag visible on all, p50: ${verdict(quantile(all, 0.5), BARS.tagP50Ms, 'ms')}`,
    `- tag visible on all, p99: ${verdict(quantile(all, 0.99), BARS.tagP99Ms, 'ms')}`,
    '',
    'How: CPU = utime + stime from /proc/<pid>/stat over the window. Control-plane bytes = bytes_sent and bytes_received (the kernel\'s ' +
      'tcp_info, `ss -tinp`) of each node\'s TCP sockets with one end on a libp2p listen port, sampled every 5 s ' +
      `(${idle.closedSockets} counted socket(s) closed during the window; what a socket carried after its last sample is not counted). ` +
      (settings.watch === 'poll'
        ? `Tag visibility: one request per node in flight to /v2/<repo>/tags/list, the next ${settings.pollMs} ms after each answer; the clock starts at the manifest PUT's answer; `
        : 'Tag visibility: each node\'s GET /api/v1/events stream tells of the tag once the node answers it (checked on tags/list after each push); the clock starts at the manifest PUT\'s answer; ') +
      `pushes go to node k mod N in turn; nearest-rank quantiles, so with ${tags.length} pushes p99 is the slowest push.`,
    '',
    'Per node (idle window): CPU %, control-plane kB/min sent/received, RSS:',
    '',
    idle.nodes.map((node) => `${node.name} ${node.cpuPercent.toFixed(2)} % ${kB(node.sentPerMinute)}/${kB(node.receivedPerMinute)} ${mib(node.rss)}`).join('; '),
    '',
    `Peers: ${Array.from({ length: settings.nodes }, (_, index) => `${index}→${peersOf(index).join('+') || '-'}`).join(' ')}.`,
    ''
  ]
  return `${lines.join('\n')}\n`
}

// ---------------------------------------------------------------------------------------------
// Helpers

async function nodeIds (fleet: FleetNode[]): Promise<string[]> {
  return await Promise.all(fleet.map(async (node) => {
    const response = await fetch(`${node.url}/api/v1/nodes`, { signal: AbortSignal.timeout(10_000) })
    const self = (await response.json() as { nodes: Array<{ id: string, self?: boolean }> }).nodes.find((record) => record.self === true)
    if (self === undefined) throw new Error(`${node.name} lists no record of itself`)
    return self.id
  }))
}

function percent (ticks: number, elapsedSeconds: number): string {
  return cpuPercent(ticks / CLOCK_TICKS / elapsedSeconds * 100)
}

function cpuPercent (value: number): string {
  return `${value.toFixed(2)} %`
}

function kB (bytes: number): string {
  return `${(bytes / 1000).toFixed(1)} kB`
}

function mib (bytes: number): string {
  return `${(bytes / MiB).toFixed(1)} MiB`
}

function loadAverage (): number[] {
  return os.loadavg().map((load) => Math.round(load * 100) / 100)
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

function log (message: string): void {
  process.stderr.write(`[fleet-scale ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

main().catch((error: unknown) => {
  log((error as Error).message)
  process.exit(1)
})
