// Pull-through mirror benchmark (issue 13): a 256 MiB image (8 layers) on an upstream registry
// (Debian's docker-registry), pulled by skopeo into an empty OCI layout
//   - directly from the upstream (the baseline),
// The upstream is reached through a proxy that counts what it sends and shapes it to
// --upstream-mbps (200; 0: unshaped), all connections together, as an upstream across the
// internet is: the direct pull and the mirrors go through the same link.
//   - cold through a fresh Shoal node mirroring it (nothing cached: the node fetches it as it serves),
//   - warm through the same node (it holds the image now),
//   - cold and warm through docker-registry in proxy mode (Distribution's pull-through cache), the reference.
// Every run starts fresh mirrors on empty data directories. Medians over --runs; ratios against the
// direct pull of the same run. Upstream bytes per cold pull are counted by a proxy in front of it.
//
// --fleet N (0: off) adds a fleet phase: N meshed Shoal nodes, each pulling the image at once
// through itself, against N clients pulling at once through one docker-registry proxy: time until
// the last pull ends, and what the upstream sent.
//
//   node bench/mirror-pull.ts [--runs 3] [--mib 256] [--upstream-mbps 200] [--fleet 8]
import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { startCountingProxy } from '../test/support/counting-proxy.ts'
import { REPO_ROOT, startDockerRegistry, startNodeProcess, type RegistryProcess } from '../test/support/node-process.ts'
import { cachedImageLayout } from '../test/support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../test/support/skopeo.ts'
import { gitCommit, machineDescription, toolVersion } from './environment.ts'
import { freshRunDir, killFleet, startProcessFleet, stopFleet, waitForMembers } from './process-fleet.ts'

const MiB = 1024 * 1024
const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
const WORK_DIR = path.join(OUT_DIR, 'mirror-work')

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, mib: { type: 'string', default: '256' }, 'upstream-mbps': { type: 'string', default: '200' }, fleet: { type: 'string', default: '0' } } })
const fleetSize = Number(values.fleet)
if (!Number.isInteger(fleetSize) || fleetSize < 0) throw new Error(`--fleet must be a whole number ≥ 0, got ${values.fleet}`)
const upstreamMbps = Number(values['upstream-mbps'])
if (!Number.isFinite(upstreamMbps) || upstreamMbps < 0) throw new Error(`--upstream-mbps must be a number ≥ 0, got ${values['upstream-mbps']}`)
const runs = Number(values.runs)
const mib = Number(values.mib)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number ≥ 1, got ${values.runs}`)
if (!Number.isInteger(mib) || mib < 8) throw new Error(`--mib must be a whole number ≥ 8, got ${values.mib}`)

const log = (message: string): void => { process.stderr.write(`[mirror-pull ${new Date().toISOString().slice(11, 19)}] ${message}\n`) }
const median = (values: number[]): number => { const sorted = [...values].sort((a, b) => a - b); return sorted[Math.floor((sorted.length - 1) / 2)]! }

async function timed (work: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await work()
  return (performance.now() - started) / 1000
}

async function pull (ref: string, name: string): Promise<number> {
  const dest = path.join(WORK_DIR, 'pulled', name)
  await rm(dest, { recursive: true, force: true })
  const seconds = await timed(async () => await copyFromRegistry(ref, dest))
  await rm(dest, { recursive: true, force: true })
  return seconds
}

async function main (): Promise<void> {
  await rm(WORK_DIR, { recursive: true, force: true })
  await mkdir(path.join(WORK_DIR, 'pulled'), { recursive: true })
  const imageDir = path.join(OUT_DIR, 'images', `mirror-${mib}`)
  await cachedImageLayout(imageDir, { layers: Array<number>(8).fill(mib / 8 * MiB), seed: `shoal-mirror-bench-${mib}` })
  const upstream = await startDockerRegistry({ dataDir: path.join(WORK_DIR, 'upstream') })
  const counted = await startCountingProxy(upstream.url, upstreamMbps > 0 ? { bytesPerSecond: upstreamMbps * 125_000 } : {})
  const upstreamHost = new URL(counted.url).host
  const results: Record<string, number[]> = { direct: [], shoalCold: [], shoalWarm: [], registryCold: [], registryWarm: [] }
  const upstreamBytes: Record<string, number[]> = { shoalCold: [], registryCold: [] }
  const fleetRows: FleetRow[] = []
  try {
    await copyToRegistry(imageDir, `${upstream.host}/library/bench:1`, { preserveDigests: true })
    for (let run = 1; run <= runs; run++) {
      log(`run ${run}/${runs}`)
      results.direct!.push(await pull(`${upstreamHost}/library/bench:1`, 'direct'))
      const shoal = await startNodeProcess({ dataDir: path.join(WORK_DIR, `shoal-${run}`), args: ['--mirrors', JSON.stringify([{ registry: 'docker.io', url: counted.url }])] })
      let before = counted.bytesSent()
      results.shoalCold!.push(await pull(`${shoal.host}/docker.io/library/bench:1`, 'shoal-cold'))
      upstreamBytes.shoalCold!.push(counted.bytesSent() - before)
      results.shoalWarm!.push(await pull(`${shoal.host}/docker.io/library/bench:1`, 'shoal-warm'))
      await shoal.stop()
      const proxy: RegistryProcess = await startDockerRegistry({ dataDir: path.join(WORK_DIR, `proxy-${run}`), proxyUrl: counted.url })
      before = counted.bytesSent()
      results.registryCold!.push(await pull(`${proxy.host}/library/bench:1`, 'registry-cold'))
      upstreamBytes.registryCold!.push(counted.bytesSent() - before)
      results.registryWarm!.push(await pull(`${proxy.host}/library/bench:1`, 'registry-warm'))
      await proxy.stop()
      log(`direct ${results.direct!.at(-1)!.toFixed(2)} s, Shoal cold ${results.shoalCold!.at(-1)!.toFixed(2)} s warm ${results.shoalWarm!.at(-1)!.toFixed(2)} s, docker-registry proxy cold ${results.registryCold!.at(-1)!.toFixed(2)} s warm ${results.registryWarm!.at(-1)!.toFixed(2)} s`)
    }
    if (fleetSize > 0) fleetRows.push(...await fleetPhase(counted, fleetSize))
  } finally {
    await counted.stop()
    await upstream.stop()
  }
  const direct = median(results.direct!)
  const row = (label: string, key: string): string => `| ${label} | ${median(results[key]!).toFixed(2)} | ${(median(results[key]!) / direct).toFixed(2)}x | ${upstreamBytes[key] === undefined ? '' : `${(median(upstreamBytes[key]) / (mib * MiB)).toFixed(2)}x the image`} |`
  const report = [
    `## Mirror pull, ${new Date().toISOString().slice(0, 10)}: ${mib} MiB in 8 layers, ${runs} runs, upstream link ${upstreamMbps > 0 ? `${upstreamMbps} Mbit/s` : 'unshaped'}`,
    '',
    `Machine: ${machineDescription()}. Client: ${toolVersion('skopeo', ['--version'])}. Upstream and reference: ${toolVersion('docker-registry', ['--version'])}. Node ${process.version}. Commit ${gitCommit()}.`,
    '',
    '| pull | median s | / direct | upstream sent (cold) |',
    '|---|---:|---:|---:|',
    `| directly from the upstream | ${direct.toFixed(2)} | 1.00x | |`,
    row('Shoal mirror, cold (upstream miss)', 'shoalCold'),
    row('Shoal mirror, warm', 'shoalWarm'),
    row('docker-registry proxy, cold', 'registryCold'),
    row('docker-registry proxy, warm', 'registryWarm'),
    '',
    `Seconds per run: ${Object.entries(results).map(([key, list]) => `${key} ${list.map(value => value.toFixed(2)).join(', ')}`).join('; ')}.`,
    '',
    ...(fleetRows.length === 0
      ? []
      : [
          `${fleetSize} pulls at once (one run, cold): until the last ends, and what the upstream sent:`,
          '',
          '| pulls at once | s | / direct (median above) | upstream sent |',
          '|---|---:|---:|---:|',
          ...fleetRows.map(row => `| ${row.label} | ${row.seconds.toFixed(2)} | ${(row.seconds / direct).toFixed(2)}x | ${row.upstreamImages.toFixed(2)}x the image |`),
          ''
        ])
  ].join('\n')
  process.stdout.write(report)
  await mkdir(OUT_DIR, { recursive: true })
  await writeFile(path.join(OUT_DIR, 'mirror-pull-latest.md'), report)
  await rm(WORK_DIR, { recursive: true, force: true })
}

/** N meshed Shoal nodes pulling at once through themselves, then N clients through one docker-registry proxy. */
interface FleetRow { label: string, seconds: number, upstreamImages: number }

async function fleetPhase (counted: Awaited<ReturnType<typeof startCountingProxy>>, size: number): Promise<FleetRow[]> {
  const runDir = await freshRunDir('mirror-fleet')
  const fleet = await startProcessFleet({ size, runDir, concurrency: 2, log, args: ['--mirrors', JSON.stringify([{ registry: 'docker.io', url: counted.url }])] })
  const rows: FleetRow[] = []
  try {
    await waitForMembers(fleet, log)
    let before = counted.bytesSent()
    const shoalSeconds = await timed(async () => await Promise.all(fleet.map(async node => await pull(`${new URL(node.url).host}/docker.io/library/bench:1`, `fleet-${node.name}`))))
    rows.push({ label: `Shoal, ${size} nodes, each through itself`, seconds: shoalSeconds, upstreamImages: (counted.bytesSent() - before) / (mib * MiB) })
    log(`${size} Shoal nodes: ${shoalSeconds.toFixed(2)} s`)
    await stopFleet(fleet)
    const proxy = await startDockerRegistry({ dataDir: path.join(WORK_DIR, 'proxy-fleet'), proxyUrl: counted.url })
    before = counted.bytesSent()
    const registrySeconds = await timed(async () => await Promise.all(fleet.map(async node => await pull(`${proxy.host}/library/bench:1`, `proxy-${node.name}`))))
    rows.push({ label: `docker-registry proxy, ${size} clients`, seconds: registrySeconds, upstreamImages: (counted.bytesSent() - before) / (mib * MiB) })
    log(`${size} clients through docker-registry's proxy: ${registrySeconds.toFixed(2)} s`)
    await proxy.stop()
  } finally {
    await killFleet(fleet)
    await rm(runDir, { recursive: true, force: true })
  }
  return rows
}

await main()
