// Push/pull benchmark: a Shoal node against the reference registry (CNCF Distribution, Debian's
// docker-registry), side by side in one run, skopeo as the client on both.
//
//   node bench/push-pull.ts [--runs 3] [--only small|large] [--registries shoal,docker-registry]
//   node bench/push-pull.ts --only large --registries shoal,shoal-auth,docker-registry,docker-registry-auth
//
// The -auth contenders sign in (htpasswd users): what authentication costs each registry.
//
// Every run of every registry starts from an empty data directory: a fresh process, warmed up with
// a 3 MiB image, takes the push (its VmHWM, reset after the warm-up, is the push's peak), then a
// second fresh process on the same data, warmed up the same way, serves the pull into an empty
// OCI layout. Images are incompressible (AES-CTR keystream) and uncompressed, pushed
// with --preserve-digests so both registries receive exactly the same bytes. The table goes to
// stdout and to bench/out/latest.md, the raw numbers to bench/out/latest.json.

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { htpasswdText } from '../test/support/htpasswd.ts'
import { cachedImageLayout, findLayoutEntry } from '../test/support/oci-image.ts'
import type { ImageLayoutResult } from '../test/support/oci-image.ts'
import { REPO_ROOT, startDockerRegistry, startNodeProcess } from '../test/support/node-process.ts'
import type { RegistryProcess } from '../test/support/node-process.ts'
import { copyFromRegistry, copyToRegistry } from '../test/support/skopeo.ts'
import { gitCommit, machineDescription, toolVersion } from './environment.ts'
import { CLOCK_TICKS, processStat } from './node-probes.ts'

const MiB = 1024 * 1024
const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
const IMAGES_DIR = path.join(OUT_DIR, 'images')
const WORK_DIR = path.join(OUT_DIR, 'work')

interface BenchCase {
  name: 'large' | 'small'
  label: string
  layers: number[]
  seed: string
}

const CASES: BenchCase[] = [
  { name: 'large', label: '1 GiB, 8 layers', layers: Array<number>(8).fill(128 * MiB), seed: 'shoal-bench-large-v1' },
  { name: 'small', label: '64 MiB, 4 layers', layers: Array<number>(4).fill(16 * MiB), seed: 'shoal-bench-small-v1' }
]

interface Contender {
  name: string
  start: (dataDir: string) => Promise<RegistryProcess>
  /** user:password skopeo signs in with; none: no authentication. */
  creds?: string
}

/**
 * The authenticated contenders' users: an htpasswd file as `htpasswd -B` writes it (bcrypt, cost
 * 5), made once per run. Shoal goes through its token flow (a 401 Bearer challenge, a token from
 * /auth/token); docker-registry's `auth.htpasswd` takes Basic credentials on every request.
 */
const BENCH_USER = 'bench'
const BENCH_PASSWORD = 'bench-password'
const HTPASSWD = path.join(WORK_DIR, 'htpasswd')

const CONTENDERS: Record<string, Contender> = {
  shoal: { name: 'Shoal', start: async (dataDir) => await startNodeProcess({ dataDir, readyTimeoutMs: 60_000 }) },
  'docker-registry': { name: 'docker-registry', start: async (dataDir) => await startDockerRegistry({ dataDir }) },
  'shoal-auth': {
    name: 'Shoal (htpasswd, tokens)',
    start: async (dataDir) => await startNodeProcess({ dataDir, readyTimeoutMs: 60_000, args: ['--htpasswd', HTPASSWD] }),
    creds: `${BENCH_USER}:${BENCH_PASSWORD}`
  },
  'docker-registry-auth': {
    name: 'docker-registry (htpasswd)',
    start: async (dataDir) => await startDockerRegistry({ dataDir, htpasswd: HTPASSWD }),
    creds: `${BENCH_USER}:${BENCH_PASSWORD}`
  }
}

type Operation = 'push' | 'pull'

interface Measurement {
  seconds: number
  peakRssBytes: number
  /** CPU seconds (user and system, every thread) the registry process spent on the operation. */
  cpuSeconds: number
}

/** results[case][contender][operation] = one measurement per run */
type Results = Record<string, Record<string, Record<Operation, Measurement[]>>>

interface Settings {
  runs: number
  cases: BenchCase[]
  contenders: string[]
}

const finishedRunDirs: string[] = []

async function main (): Promise<void> {
  const settings = parseSettings()
  checkShoalIsThere(settings.contenders)
  const images = await prepareImages(settings.cases)
  await mkdir(WORK_DIR, { recursive: true })
  await writeFile(HTPASSWD, htpasswdText({ [BENCH_USER]: BENCH_PASSWORD }))
  const idlePeakRss = await measureIdlePeakRss(settings.contenders)
  const results: Results = {}
  for (const benchCase of settings.cases) {
    results[benchCase.name] = {}
    for (let run = 0; run < settings.runs; run++) {
      // Alternate who goes first so neither always meets the warmer page cache.
      const order = run % 2 === 0 ? settings.contenders : [...settings.contenders].reverse()
      for (const contenderKey of order) {
        const measured = await measureRun(benchCase, images.get(benchCase.name)!, contenderKey, run)
        const perContender = results[benchCase.name]![contenderKey] ??= { push: [], pull: [] }
        perContender.push.push(measured.push)
        perContender.pull.push(measured.pull)
      }
    }
  }
  for (const runDir of finishedRunDirs) await rm(runDir, { recursive: true, force: true })
  const report = renderReport(settings, images, results, idlePeakRss)
  process.stdout.write(report)
  await mkdir(OUT_DIR, { recursive: true })
  await writeFile(path.join(OUT_DIR, 'latest.md'), report)
  await writeFile(path.join(OUT_DIR, 'latest.json'), JSON.stringify({ settings: { ...settings, cases: settings.cases.map((c) => c.name) }, idlePeakRss, results }, null, 2))
  log(`wrote ${path.relative(REPO_ROOT, path.join(OUT_DIR, 'latest.md'))}`)
}

function parseSettings (): Settings {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '3' },
      only: { type: 'string' },
      registries: { type: 'string', default: 'shoal,docker-registry' }
    }
  })
  const runs = Number(values.runs)
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a positive integer, got ${values.runs}`)
  const cases = values.only === undefined ? CASES : CASES.filter((c) => c.name === values.only)
  if (cases.length === 0) throw new Error(`--only must be one of ${CASES.map((c) => c.name).join(', ')}`)
  const contenders = values.registries.split(',').map((name) => name.trim()).filter((name) => name !== '')
  for (const name of contenders) {
    if (CONTENDERS[name] === undefined) throw new Error(`unknown registry ${name}; known: ${Object.keys(CONTENDERS).join(', ')}`)
  }
  return { runs, cases, contenders }
}

function checkShoalIsThere (contenders: string[]): void {
  if (contenders.includes('shoal') && !existsSync(path.join(REPO_ROOT, 'src', 'cli', 'main.ts'))) {
    throw new Error('the Shoal server (src/cli/main.ts) does not exist yet; run with --registries docker-registry')
  }
}

async function prepareImages (cases: BenchCase[]): Promise<Map<string, ImageLayoutResult>> {
  await cachedImageLayout(path.join(IMAGES_DIR, 'warmup'), { layers: [MiB, MiB, MiB], seed: 'shoal-bench-warmup-v1' })
  const images = new Map<string, ImageLayoutResult>()
  for (const benchCase of cases) {
    const started = performance.now()
    const image = await cachedImageLayout(imageDir(benchCase), { layers: benchCase.layers, seed: benchCase.seed })
    log(`image ${benchCase.name}: ${image.manifestDigest} (${formatMiB(image.totalSize)}) ready in ${formatSeconds(performance.now() - started)}`)
    images.set(benchCase.name, image)
  }
  return images
}

function imageDir (benchCase: BenchCase): string {
  return path.join(IMAGES_DIR, `${benchCase.name}-${benchCase.seed}`)
}

/** VmHWM of a process that only started and took the warm-up: the baseline under the push figures. */
async function measureIdlePeakRss (contenders: string[]): Promise<Record<string, number>> {
  const idle: Record<string, number> = {}
  for (const contenderKey of contenders) {
    const dataDir = path.join(WORK_DIR, `idle-${contenderKey}`)
    await rm(dataDir, { recursive: true, force: true })
    await mkdir(dataDir, { recursive: true })
    const { peakRssBytes } = await timed(CONTENDERS[contenderKey]!, dataDir, async () => {})
    idle[contenderKey] = peakRssBytes
    await rm(dataDir, { recursive: true, force: true })
  }
  return idle
}

/** One push and one pull of one image on one registry, each on a fresh process. */
async function measureRun (benchCase: BenchCase, image: ImageLayoutResult, contenderKey: string, run: number): Promise<Record<Operation, Measurement>> {
  const contender = CONTENDERS[contenderKey]!
  const runDir = path.join(WORK_DIR, `${benchCase.name}-${contenderKey}-${run}`)
  const dataDir = path.join(runDir, 'data')
  const pulledDir = path.join(runDir, 'pulled')
  await rm(runDir, { recursive: true, force: true })
  await mkdir(dataDir, { recursive: true })
  const reference = (registry: RegistryProcess): string => `${registry.host}/bench/${benchCase.name}:latest`
  try {
    const push = await timed(contender, dataDir, async (registry) => {
      await copyToRegistry(imageDir(benchCase), reference(registry), { creds: contender.creds })
    })
    const pull = await timed(contender, dataDir, async (registry) => {
      await copyFromRegistry(reference(registry), pulledDir, { creds: contender.creds })
    })
    const pulled = await findLayoutEntry(pulledDir)
    if (pulled.digest !== image.manifestDigest) {
      throw new Error(`${contender.name} returned manifest ${pulled.digest}, pushed ${image.manifestDigest}`)
    }
    log(`${benchCase.name} run ${run + 1} ${contender.name}: push ${push.seconds.toFixed(2)} s, pull ${pull.seconds.toFixed(2)} s, ` +
      `CPU push ${push.cpuSeconds.toFixed(2)} s pull ${pull.cpuSeconds.toFixed(2)} s, peak RSS push ${formatMiB(push.peakRssBytes)} pull ${formatMiB(pull.peakRssBytes)}`)
    return { push, pull }
  } finally {
    // Run directories are removed only at the end: on ext4 without a journal (this machine's
    // disk), inodes freed in the last 60 s are skipped when new files are created, so a run
    // right after deleting another run's thousands of block files pays for that deletion
    // (measured: Shoal's 1 GiB push 5.9 s instead of ~4.5 s).
    finishedRunDirs.push(runDir)
    execFileSync('sync') // the next run should not pay for this run's dirty pages
  }
}

/**
 * Starts the registry on dataDir, warms it up, times `operation`, stops it and reads its peak
 * RSS. The warm-up (a 3 MiB image pushed and pulled) stands for a registry that has been
 * running: without it the first requests of a fresh Node process pay for JIT compilation, which
 * a Go binary does not, and a 64 MiB copy is short enough for that to show. The peak RSS is
 * reset after the warm-up, so it belongs to the timed operation.
 */
async function timed (contender: Contender, dataDir: string, operation: (registry: RegistryProcess) => Promise<void>): Promise<Measurement> {
  const registry = await contender.start(dataDir)
  try {
    const warmupRef = `${registry.host}/warmup/image:latest`
    const warmupOut = `${dataDir}-warmup-out`
    await copyToRegistry(path.join(IMAGES_DIR, 'warmup'), warmupRef, { creds: contender.creds })
    await copyFromRegistry(warmupRef, warmupOut, { creds: contender.creds })
    await rm(warmupOut, { recursive: true, force: true })
    await registry.resetPeakRss()
    const cpuBefore = await cpuJiffies(registry)
    const started = performance.now()
    await operation(registry)
    const seconds = (performance.now() - started) / 1000
    const cpuSeconds = (await cpuJiffies(registry) - cpuBefore) / CLOCK_TICKS
    const { peakRssBytes } = await registry.stop()
    return { seconds, peakRssBytes, cpuSeconds }
  } catch (error) {
    await registry.kill9()
    throw new Error(`${contender.name}: ${(error as Error).message}\n--- registry output ---\n${registry.output()}`, { cause: error })
  }
}

/** User and system jiffies of the registry process, all its threads. */
async function cpuJiffies (registry: RegistryProcess): Promise<number> {
  const stat = await processStat(String(registry.process.pid))
  return (stat[11] ?? 0) + (stat[12] ?? 0)
}

// ---------------------------------------------------------------------------------------------
// Report

/** What signing in costs: each registry with authentication against itself without, and Shoal against docker-registry, both signed in. */
function authTable (settings: Settings, images: Map<string, ImageLayoutResult>, results: Results): string[] {
  const lines = [
    'What authentication costs (throughput ratios of the medians; > 1: the first is faster):',
    '',
    '| image | op | Shoal s | Shoal signed in s | signed in / not | docker-registry s | docker-registry signed in s | signed in / not | Shoal / docker-registry, both signed in |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|'
  ]
  const ratio = (a: { megabytesPerSecond: number } | undefined, b: { megabytesPerSecond: number } | undefined): string =>
    a === undefined || b === undefined ? '—' : (a.megabytesPerSecond / b.megabytesPerSecond).toFixed(2)
  for (const benchCase of settings.cases) {
    const bytes = images.get(benchCase.name)!.totalSize
    for (const operation of ['push', 'pull'] as const) {
      const of = (key: string): ReturnType<typeof summarize> => summarize(results[benchCase.name]?.[key]?.[operation], bytes)
      const [shoal, shoalAuth, reference, referenceAuth] = [of('shoal'), of('shoal-auth'), of('docker-registry'), of('docker-registry-auth')]
      lines.push(`| ${benchCase.label} | ${operation} | ${shoal?.seconds ?? '—'} | ${shoalAuth?.seconds ?? '—'} | ${ratio(shoalAuth, shoal)} | ` +
        `${reference?.seconds ?? '—'} | ${referenceAuth?.seconds ?? '—'} | ${ratio(referenceAuth, reference)} | ${ratio(shoalAuth, referenceAuth)} |`)
    }
  }
  return lines
}

function renderReport (settings: Settings, images: Map<string, ImageLayoutResult>, results: Results, idlePeakRss: Record<string, number>): string {
  const shoalAndReference = settings.contenders.includes('shoal') && settings.contenders.includes('docker-registry')
  const lines = [
    `## Push/pull, ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Machine: ${machineDescription()}. Client: ${toolVersion('skopeo', ['--version'])}. ` +
      `Reference: ${toolVersion('docker-registry', ['--version'])}. Node ${process.version}. Commit ${gitCommit()}.`,
    `Median of ${settings.runs} run(s); every run on a fresh data directory and a fresh process per push and per pull. ` +
      'MB/s = bytes of all blobs (manifest, config, layers) / 10^6 / seconds of the whole `skopeo copy`. ' +
      'CPU s/GiB = user and system CPU seconds of the registry process (all threads) during the copy, per GiB of blobs, median. ' +
      'Peak RSS = VmHWM of the registry process, highest over the runs.',
    '',
    '| image | op | Shoal s | Shoal MB/s | docker-registry s | docker-registry MB/s | Shoal / docker-registry | Shoal CPU s/GiB | docker-registry CPU s/GiB | Shoal peak RSS | docker-registry peak RSS |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|'
  ]
  for (const benchCase of settings.cases) {
    const bytes = images.get(benchCase.name)!.totalSize
    for (const operation of ['push', 'pull'] as const) {
      const shoal = summarize(results[benchCase.name]?.shoal?.[operation], bytes)
      const reference = summarize(results[benchCase.name]?.['docker-registry']?.[operation], bytes)
      const ratio = shoalAndReference && shoal !== undefined && reference !== undefined
        ? (shoal.megabytesPerSecond / reference.megabytesPerSecond).toFixed(2)
        : '—'
      lines.push(`| ${benchCase.label} | ${operation} | ${shoal?.seconds ?? '—'} | ${shoal?.throughput ?? '—'} | ` +
        `${reference?.seconds ?? '—'} | ${reference?.throughput ?? '—'} | ${ratio} | ${shoal?.cpuPerGiB ?? '—'} | ${reference?.cpuPerGiB ?? '—'} | ` +
        `${shoal?.peakRss ?? '—'} | ${reference?.peakRss ?? '—'} |`)
    }
  }
  if (settings.contenders.some((key) => key.endsWith('-auth'))) lines.push('', ...authTable(settings, images, results))
  const idle = settings.contenders.map((key) => `${CONTENDERS[key]!.name} ${formatMiB(idlePeakRss[key] ?? 0)}`).join(', ')
  lines.push('', `Idle peak RSS (process started, warmed up with the 3 MiB image, stopped): ${idle}.`)
  lines.push('', 'Seconds per run:', '')
  for (const benchCase of settings.cases) {
    for (const contenderKey of settings.contenders) {
      const runs = results[benchCase.name]?.[contenderKey]
      if (runs === undefined) continue
      lines.push(`- ${benchCase.label}, ${CONTENDERS[contenderKey]!.name}: push ${runs.push.map((m) => m.seconds.toFixed(2)).join(', ')}; ` +
        `pull ${runs.pull.map((m) => m.seconds.toFixed(2)).join(', ')}`)
    }
  }
  return `${lines.join('\n')}\n`
}

interface Summary {
  seconds: string
  throughput: string
  megabytesPerSecond: number
  cpuPerGiB: string
  peakRss: string
}

function summarize (measurements: Measurement[] | undefined, bytes: number): Summary | undefined {
  if (measurements === undefined || measurements.length === 0) return undefined
  const seconds = median(measurements.map((m) => m.seconds))
  const megabytesPerSecond = bytes / 1e6 / seconds
  return {
    seconds: seconds.toFixed(2),
    throughput: megabytesPerSecond.toFixed(0),
    megabytesPerSecond,
    cpuPerGiB: (median(measurements.map((m) => m.cpuSeconds)) / (bytes / (1024 * MiB))).toFixed(2),
    peakRss: formatMiB(Math.max(...measurements.map((m) => m.peakRssBytes)))
  }
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}




function formatMiB (bytes: number): string {
  return `${(bytes / MiB).toFixed(0)} MiB`
}

function formatSeconds (milliseconds: number): string {
  return `${(milliseconds / 1000).toFixed(1)} s`
}

function log (message: string): void {
  process.stderr.write(`[bench] ${message}\n`)
}

main().catch((error: unknown) => {
  log((error as Error).message)
  process.exitCode = 1
})
