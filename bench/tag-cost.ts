// What one push costs the rest of a fleet, in CPU (issue 11: a tag's latency at 30 nodes on a
// 2-core machine is bound by the CPU every node spends on it).
//
//   node bench/tag-cost.ts [--nodes 12] [--pushes 30] [--gap-ms 1000] [--settle-seconds 20]
//
// N node processes (bench/process-fleet.ts, default settings). Once every node lists all N and
// --settle-seconds more, two windows of the same length, --pushes x --gap-ms:
//   1. idle: nothing is sent to the nodes;
//   2. pushes: a small image (a config and a layer blob, then the manifest under a new tag)
//      pushed to node-0 every --gap-ms; nothing polls the nodes.
// Per node: CPU (utime + stime of every thread) in the push window minus the idle window,
// divided by the pushes: the CPU ms one push cost it. node-0 (the pusher) is reported apart.
// At the end every node must list every tag (checked, not timed).

import { randomBytes } from 'node:crypto'
import os from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { RegistryClient } from '../test/support/registry-client.ts'
import { gitCommit, machineDescription } from './environment.ts'
import { CLOCK_TICKS, machineJiffies, processCpuTicks, waitForTag } from './node-probes.ts'
import { freshRunDir, killFleet, median, seconds, startProcessFleet, stopFleet, waitForMembers, writeResults, type FleetNode } from './process-fleet.ts'

interface Settings {
  nodes: number
  pushes: number
  gapMs: number
  settleSeconds: number
}

const REPOSITORY = 'cost/tags'

function log (message: string): void {
  process.stderr.write(`${message}\n`)
}

async function cpuMs (fleet: FleetNode[]): Promise<number[]> {
  return await Promise.all(fleet.map(async (node) => await processCpuTicks(node.pid) / CLOCK_TICKS * 1000))
}

/** CPU ms each node used during `work`, and the machine's busy share meanwhile. */
async function measure (fleet: FleetNode[], work: () => Promise<void>): Promise<{ perNode: number[], seconds: number, machineBusy: number }> {
  const machineBefore = await machineJiffies()
  const before = await cpuMs(fleet)
  const started = performance.now()
  await work()
  const after = await cpuMs(fleet)
  const machineAfter = await machineJiffies()
  return {
    perNode: after.map((ms, i) => ms - before[i]!),
    seconds: (performance.now() - started) / 1000,
    machineBusy: (machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total)
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      nodes: { type: 'string', default: '12' },
      pushes: { type: 'string', default: '30' },
      'gap-ms': { type: 'string', default: '1000' },
      'settle-seconds': { type: 'string', default: '20' }
    }
  })
  const settings: Settings = { nodes: Number(values.nodes), pushes: Number(values.pushes), gapMs: Number(values['gap-ms']), settleSeconds: Number(values['settle-seconds']) }
  if (!(settings.nodes >= 2) || !(settings.pushes >= 1) || !(settings.gapMs >= 100)) throw new Error('--nodes must be at least 2, --pushes at least 1, --gap-ms at least 100')
  const loadAtStart = os.loadavg().map((load) => Number(load.toFixed(2)))
  log(`${settings.nodes} nodes; load ${loadAtStart.join(' ')}${loadAtStart[0]! > 1 ? ' (a busy machine: CPU figures will not be valid)' : ''}`)
  const started = performance.now()
  const runDir = await freshRunDir('tag-cost')
  const fleet = await startProcessFleet({ size: settings.nodes, runDir, concurrency: 2, log })
  try {
    await waitForMembers(fleet, log)
    const urls = fleet.map((node) => node.url)
    const pusher = new RegistryClient(fleet[0]!.url)
    // The repository's first push, not counted: every node has seen it once.
    await pusher.pushImage(REPOSITORY, 'warmup', 'warm-up layer')
    await waitForTag(urls, REPOSITORY, 'warmup')
    log(`settling ${settings.settleSeconds} s`)
    await sleep(settings.settleSeconds * 1000)
    const windowMs = settings.pushes * settings.gapMs
    log(`idle window ${windowMs / 1000} s`)
    const idle = await measure(fleet, async () => { await sleep(windowMs) })
    log(`push window: ${settings.pushes} pushes to ${fleet[0]!.name}, one every ${settings.gapMs} ms`)
    const pushes = await measure(fleet, async () => {
      for (let k = 0; k < settings.pushes; k++) {
        const started = performance.now()
        const manifest = await pusher.pushImageBlobs(REPOSITORY, `layer ${k} ${randomBytes(8).toString('hex')}`)
        const response = await pusher.pushManifest(REPOSITORY, `t${k}`, manifest, 'application/vnd.oci.image.manifest.v1+json')
        if (response.status !== 201) throw new Error(`PUT ${REPOSITORY}:t${k} answered ${response.status}: ${await response.text()}`)
        await sleep(Math.max(0, settings.gapMs - (performance.now() - started)))
      }
    })
    await waitForTag(urls, REPOSITORY, `t${settings.pushes - 1}`)
    // Idle CPU scaled to the push window's length, then per push.
    const perPush = pushes.perNode.map((ms, i) => (ms - idle.perNode[i]! * pushes.seconds / idle.seconds) / settings.pushes)
    const others = perPush.slice(1)
    const idlePercent = idle.perNode.map((ms) => ms / 10 / idle.seconds)
    log(`stopping the fleet (${seconds(started)} s since the start)`)
    await stopFleet(fleet)
    const report = [
      `| measure (${settings.nodes} nodes, ${settings.pushes} pushes to node-0, one every ${settings.gapMs} ms) | median | min | max |`,
      '|---|---:|---:|---:|',
      `| CPU ms one push cost each other node | ${median(others).toFixed(1)} | ${Math.min(...others).toFixed(1)} | ${Math.max(...others).toFixed(1)} |`,
      `| CPU ms one push cost the pusher (node-0) | ${perPush[0]!.toFixed(1)} | | |`,
      `| idle CPU per node, % of a core (${idle.seconds.toFixed(0)} s before the pushes) | ${median(idlePercent).toFixed(2)} | ${Math.min(...idlePercent).toFixed(2)} | ${Math.max(...idlePercent).toFixed(2)} |`,
      '',
      `Machine busy: ${(idle.machineBusy * 100).toFixed(0)} % idle window, ${(pushes.machineBusy * 100).toFixed(0)} % push window; load at the start ${loadAtStart.join(' ')}. ` +
        `Per push to the whole fleet: ${(perPush.reduce((sum, ms) => sum + ms, 0) / 1000).toFixed(2)} CPU s.`
    ].join('\n')
    process.stdout.write(`${report}\n`)
    await writeResults('tag-cost', report, { settings, commit: gitCommit(), machine: machineDescription(), node: process.version, loadAtStart, idle, pushes, perPush }, log)
  } catch (error) {
    await killFleet(fleet)
    throw error
  }
}

await main()
