// Catalogue growth with no pushes (issue 11): what a fleet that only stays up adds to each node's
// data directory, measured accelerated and extrapolated to 10 nodes at the default 10 s presence
// interval for a day.
//
//   node bench/catalogue-growth.ts [--nodes 3] [--heartbeat-seconds 1] [--minutes 10] [--sample-seconds 30]
//                                  [--node-arg=<flag> ...]   (for diagnosis, e.g. --node-arg=--gc-interval-minutes=1)
//
// Real node processes on loopback (bench/process-fleet.ts: node i told of node i-1 and ⌊i/2⌋),
// default settings apart from ports, data directories, peers and --heartbeat-seconds. Nothing is
// pushed. Once every node lists all of them and 10 s more, each node's data directory is measured
// (files, bytes of their sizes, bytes allocated on disk: st_blocks × 512) by part:
//   - orbitdb/: OrbitDB's own storage (its LevelDB heads, index and entry stores, keystore);
//   - blocks/: the node's blockstore, where OrbitDB's log entries go as blocks (with no pushes,
//     every block added is the catalogue's);
//   - mesh/: the mesh's LevelDB datastore (helia's pin records: OrbitDB pins every block it
//     writes) and the identity key;
//   - rest: metadata/, uploads/, the lock, verified-blocks.
// and again every --sample-seconds until --minutes have passed. Reported: per node and part, what
// was added per minute (last measurement minus first, divided by the minutes between them), and
// the extrapolation (see the report's text).
//
// Progress on stderr; the table on stdout and in bench/out/catalogue-growth-latest.md, raw numbers
// (every sample) in catalogue-growth-latest.json. Every node process is killed and the run
// directory removed on any exit.
import { lstat, readdir } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { gitCommit, machineDescription } from './environment.ts'
import { freshRunDir, killFleet, median, seconds, startProcessFleet, stopFleet, waitForMembers, writeResults, type FleetNode } from './process-fleet.ts'

const PARTS = ['orbitdb', 'blocks', 'mesh', 'rest'] as const
type Part = typeof PARTS[number]
const SETTLE_MS = 10_000
/** What the issue asks about: 10 nodes, presence every 10 s, one day; bar 1 MB per node. */
const TARGET = { nodes: 10, heartbeatSeconds: 10, minutes: 24 * 60, barBytes: 1_000_000 }

interface Settings {
  nodes: number
  heartbeatSeconds: number
  minutes: number
  sampleSeconds: number
  /** Extra `shoal serve` arguments, for diagnosis (the issue's figure uses none). */
  nodeArgs: string[]
}

interface Usage {
  files: number
  bytes: number
  allocated: number
}

interface Sample {
  /** Seconds since the first measurement. */
  at: number
  /** Per node, per part. */
  nodes: Array<Record<Part, Usage>>
}

interface NodeGrowth {
  name: string
  /** Added per minute, per part and in all. */
  perMinute: Record<Part | 'total', Usage>
}

async function main (): Promise<void> {
  const settings = parseSettings()
  const started = performance.now()
  log(`${settings.nodes} nodes, heartbeat ${settings.heartbeatSeconds} s, ${settings.minutes} min; load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  const runDir = await freshRunDir('catalogue-growth')
  const fleet = await startProcessFleet({ size: settings.nodes, runDir, args: ['--heartbeat-seconds', String(settings.heartbeatSeconds), ...settings.nodeArgs], log })
  try {
    await waitForMembers(fleet, log)
    await sleep(SETTLE_MS)
    const samples: Sample[] = []
    const measured = performance.now()
    const durationMs = settings.minutes * 60_000
    for (;;) {
      const at = (performance.now() - measured) / 1000
      const sample = { at, nodes: await Promise.all(fleet.map(async (node) => await usageByPart(node.dataDir))) }
      samples.push(sample)
      if (samples.length > 1) log(`${at.toFixed(0)}/${durationMs / 1000} s: ${describeProgress(samples[0]!, sample, fleet)}`)
      if (performance.now() - measured >= durationMs) break
      await sleep(Math.min(settings.sampleSeconds * 1000, durationMs - (performance.now() - measured)))
    }
    const loadAverage = os.loadavg()
    log(`stopping the fleet (${seconds(started)} s since the start)`)
    await stopFleet(fleet)
    const growth = growthOf(samples, fleet)
    const json = { settings, commit: gitCommit(), machine: machineDescription(), node: process.version, loadAverage, growth, extrapolation: extrapolate(settings, growth), samples }
    await writeResults('catalogue-growth', renderReport(settings, growth, samples, loadAverage), json, log)
  } catch (error) {
    await killFleet(fleet)
    throw error
  }
}

function parseSettings (): Settings {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '3' },
      'heartbeat-seconds': { type: 'string', default: '1' },
      minutes: { type: 'string', default: '10' },
      'sample-seconds': { type: 'string', default: '30' },
      'node-arg': { type: 'string', multiple: true, default: [] }
    }
  })
  const number = (name: keyof typeof values, min: number): number => {
    const value = Number(values[name])
    if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number ≥ ${min}, got ${values[name]}`)
    return value
  }
  return {
    nodes: number('nodes', 1),
    heartbeatSeconds: number('heartbeat-seconds', 0.1),
    minutes: number('minutes', 0.1),
    sampleSeconds: number('sample-seconds', 1),
    nodeArgs: values['node-arg']
  }
}

// ---------------------------------------------------------------------------------------------
// Measuring a data directory

async function usageByPart (dataDir: string): Promise<Record<Part, Usage>> {
  const usage = Object.fromEntries(PARTS.map((part) => [part, { files: 0, bytes: 0, allocated: 0 }])) as Record<Part, Usage>
  for (const entry of await readdir(dataDir, { withFileTypes: true })) {
    const part: Part = (PARTS as readonly string[]).includes(entry.name) ? entry.name as Part : 'rest'
    add(usage[part], await usageOf(path.join(dataDir, entry.name)))
  }
  return usage
}

/** Files under `target` (or `target` itself), the bytes of their sizes and what they take on disk; directories not counted. */
async function usageOf (target: string): Promise<Usage> {
  const usage = { files: 0, bytes: 0, allocated: 0 }
  let info
  try {
    info = await lstat(target)
  } catch (error) {
    // Removed between the listing and the stat (LevelDB compactions, temp files).
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return usage
    throw error
  }
  if (info.isDirectory()) {
    let entries: string[]
    try {
      entries = await readdir(target)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return usage
      throw error
    }
    for (const entry of entries) add(usage, await usageOf(path.join(target, entry)))
  } else {
    usage.files = 1
    usage.bytes = info.size
    usage.allocated = info.blocks * 512
  }
  return usage
}

function totalOf (parts: Record<Part, Usage>): Usage {
  const total = { files: 0, bytes: 0, allocated: 0 }
  for (const part of PARTS) add(total, parts[part])
  return total
}

function add (into: Usage, more: Usage): void {
  into.files += more.files
  into.bytes += more.bytes
  into.allocated += more.allocated
}

// ---------------------------------------------------------------------------------------------
// Growth and extrapolation

function growthOf (samples: Sample[], fleet: FleetNode[]): NodeGrowth[] {
  const first = samples[0]!
  const last = samples.at(-1)!
  const minutes = (last.at - first.at) / 60
  return fleet.map((node, index) => {
    const perMinute = {} as Record<Part | 'total', Usage>
    const total = { files: 0, bytes: 0, allocated: 0 }
    for (const part of PARTS) {
      const before = first.nodes[index]![part]
      const after = last.nodes[index]![part]
      perMinute[part] = {
        files: (after.files - before.files) / minutes,
        bytes: (after.bytes - before.bytes) / minutes,
        allocated: (after.allocated - before.allocated) / minutes
      }
      add(total, perMinute[part])
    }
    perMinute.total = total
    return { name: node.name, perMinute }
  })
}

interface Extrapolation {
  /** Median over nodes of the bytes (sizes) added per minute, as measured. */
  measuredBytesPerMinute: number
  measuredAllocatedPerMinute: number
  measuredFilesPerMinute: number
  /** Per node per day at the target, if growth ∝ nodes / heartbeat interval (records rewritten per heartbeat, kept by every node). */
  perHeartbeat: Usage
  /** Per node per day at the target, if growth ∝ nodes only (not slowed by a longer interval): an upper bound. */
  perNodeOnly: Usage
}

function extrapolate (settings: Settings, growth: NodeGrowth[]): Extrapolation {
  const measured = {
    files: median(growth.map((node) => node.perMinute.total.files)),
    bytes: median(growth.map((node) => node.perMinute.total.bytes)),
    allocated: median(growth.map((node) => node.perMinute.total.allocated))
  }
  const scale = (factor: number): Usage => ({
    files: measured.files * TARGET.minutes * factor,
    bytes: measured.bytes * TARGET.minutes * factor,
    allocated: measured.allocated * TARGET.minutes * factor
  })
  const nodesFactor = TARGET.nodes / settings.nodes
  return {
    measuredBytesPerMinute: measured.bytes,
    measuredAllocatedPerMinute: measured.allocated,
    measuredFilesPerMinute: measured.files,
    perHeartbeat: scale(nodesFactor * settings.heartbeatSeconds / TARGET.heartbeatSeconds),
    perNodeOnly: scale(Math.max(1, nodesFactor))
  }
}

// ---------------------------------------------------------------------------------------------
// Report

function renderReport (settings: Settings, growth: NodeGrowth[], samples: Sample[], loadAverage: number[]): string {
  const minutes = (samples.at(-1)!.at - samples[0]!.at) / 60
  const extrapolation = extrapolate(settings, growth)
  const nodesFactor = TARGET.nodes / settings.nodes
  const heartbeatFactor = settings.heartbeatSeconds / TARGET.heartbeatSeconds
  const cell = (usage: Usage): string => `${kB(usage.bytes)} (${kB(usage.allocated)} on disk), ${usage.files.toFixed(1)} files`
  const lines = [
    `## Catalogue growth with no pushes, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Machine: ${machineDescription()}. Node ${process.version}. Commit ${gitCommit()}. Load average at the end: ${loadAverage.map((l) => l.toFixed(2)).join(' ')}.`,
    `${settings.nodes} node processes on loopback, \`--heartbeat-seconds ${settings.heartbeatSeconds}${settings.nodeArgs.map((arg) => ` ${arg}`).join('')}\`, otherwise default settings; nothing pushed. ` +
      `Measured over ${minutes.toFixed(1)} min, from 10 s after every node listed all ${settings.nodes}. ` +
      'Counted: every file under each part of the data directory, as the bytes of its size and as bytes allocated on disk (st_blocks × 512); ' +
      'orbitdb/ is OrbitDB\'s own storage, blocks/ the blockstore where OrbitDB writes its log entries as blocks (with no pushes, every block added is the catalogue\'s), ' +
      'mesh/ the mesh\'s LevelDB datastore (helia\'s pin records: OrbitDB pins every block it writes) and identity, rest: metadata/, uploads/, lock, verified-blocks.',
    '',
    '| node | orbitdb/ per min | blocks/ per min | mesh/ per min | rest per min | data directory per min |',
    '|---|---:|---:|---:|---:|---:|'
  ]
  for (const node of growth) {
    lines.push(`| ${node.name} | ${cell(node.perMinute.orbitdb)} | ${cell(node.perMinute.blocks)} | ${cell(node.perMinute.mesh)} | ${cell(node.perMinute.rest)} | ${cell(node.perMinute.total)} |`)
  }
  lines.push('', 'Data directory in all (bytes / files): at the first measurement, the largest seen, at the last. A compacted catalogue ' +
    'saws up and down; growth that is not net across compactions shows as a largest size well above the last.', '',
  '| node | first | largest | last |', '|---|---:|---:|---:|')
  for (const [index, node] of growth.entries()) {
    const totals = samples.map((sample) => totalOf(sample.nodes[index]!))
    const largest = totals.reduce((max, total) => total.bytes > max.bytes ? total : max)
    const show = (usage: Usage): string => `${kB(usage.bytes)} / ${usage.files}`
    lines.push(`| ${node.name} | ${show(totals[0]!)} | ${show(largest)} | ${show(totals.at(-1)!)} |`)
  }
  const shrank = samples.some((sample, index) => index > 0 && sample.nodes.some((node, n) => totalOf(node).bytes < totalOf(samples[index - 1]!.nodes[n]!).bytes * 0.9))
  if (shrank) {
    lines.push('', '**A data directory shrank during the run** (a compaction dropped an old generation, or a collection removed its blocks): ' +
      'the size is then bounded by the compaction cycle rather than growing with time, and a rate taken from the two ends of a run that covers ' +
      'part of a cycle says little. Read the largest size above, and run long enough to cover several cycles.')
  }
  const verdict = (bytes: number): string => `${bytes <= TARGET.barBytes ? 'met' : 'NOT met'}`
  lines.push('',
    `Extrapolation to ${TARGET.nodes} nodes at ${TARGET.heartbeatSeconds} s presence, per node per day, from the median node's ${kB(extrapolation.measuredBytesPerMinute)} ` +
      `(${kB(extrapolation.measuredAllocatedPerMinute)} on disk, ${extrapolation.measuredFilesPerMinute.toFixed(1)} files) per minute:`,
    '',
    `- If growth comes from records written at every heartbeat by every node and kept by all (as when the inventory record was rewritten into the OrbitDB log at each ` +
      `heartbeat): it is proportional to nodes × heartbeat rate, so × ${nodesFactor.toFixed(2)} (nodes ${TARGET.nodes}/${settings.nodes}) × ${heartbeatFactor.toFixed(2)} ` +
      `(heartbeat ${settings.heartbeatSeconds} s/${TARGET.heartbeatSeconds} s) × ${TARGET.minutes} min: **${MB(extrapolation.perHeartbeat.bytes)}** ` +
      `(${MB(extrapolation.perHeartbeat.allocated)} on disk, ${Math.round(extrapolation.perHeartbeat.files)} files). Bar ≤ 1 MB: ${verdict(extrapolation.perHeartbeat.bytes)}.`,
    `- Upper bound if what remains grows with the number of nodes but not with the heartbeat rate (so a 10 s interval would not slow it): ` +
      `× ${Math.max(1, nodesFactor).toFixed(2)} × ${TARGET.minutes} min: ${MB(extrapolation.perNodeOnly.bytes)} (${MB(extrapolation.perNodeOnly.allocated)} on disk, ` +
      `${Math.round(extrapolation.perNodeOnly.files)} files). Bar ≤ 1 MB: ${verdict(extrapolation.perNodeOnly.bytes)}.`,
    '',
    'Samples (seconds, then per node data-directory bytes and files):',
    '',
    samples.map((sample) => `${sample.at.toFixed(0)} s: ${sample.nodes.map((node) => {
      const total = totalOf(node)
      return `${kB(total.bytes)}/${total.files}`
    }).join(', ')}`).join('; '),
    '')
  return `${lines.join('\n')}\n`
}

function describeProgress (first: Sample, now: Sample, fleet: FleetNode[]): string {
  const minutes = (now.at - first.at) / 60
  return fleet.map((node, index) => {
    const before = totalOf(first.nodes[index]!)
    const after = totalOf(now.nodes[index]!)
    return `${node.name} ${kB(after.bytes)} in ${after.files} files (${signed(after.bytes - before.bytes, minutes)} kB/min, ${signed(after.files - before.files, minutes, 1)} files/min)`
  }).join(', ')
}

function signed (amount: number, minutes: number, scale = 1000): string {
  const rate = amount / minutes / scale
  return `${rate >= 0 ? '+' : ''}${rate.toFixed(1)}`
}

function kB (bytes: number): string {
  return `${(bytes / 1000).toFixed(1)} kB`
}

function MB (bytes: number): string {
  return `${(bytes / 1_000_000).toFixed(bytes < 10_000_000 ? 2 : 0)} MB`
}

async function sleep (ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms))
}

function log (message: string): void {
  process.stderr.write(`[catalogue-growth ${new Date().toISOString().slice(11, 19)}] ${message}\n`)
}

main().catch((error: unknown) => {
  log((error as Error).message)
  process.exit(1)
})
