// Serving CPU: what a registry process spends to send 1 GiB of blobs it holds, with curl as the
// client (it writes to /dev/null and hashes nothing), so the client's own work hardly competes
// with the server's for this 2-core machine. Shoal and the reference (Debian's docker-registry)
// hold the same image and are read alternately, `--runs` times each.
//
//   node bench/serve-cpu.ts [--runs 5] [--parallel 8] [--limit-rate 30M] [--registries shoal,docker-registry]
//
// --limit-rate caps each curl (curl's own option, e.g. 30M): a reader slower than the server, as
// skopeo is, makes the server write in many partial pieces, which costs more per GiB.
//
// Reports per registry: the median seconds and MB/s of fetching every layer blob (`--parallel`
// at a time), and the median server CPU seconds per GiB sent (user and system, all threads).

import { execFile } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { cachedImageLayout } from '../test/support/oci-image.ts'
import { REPO_ROOT, startDockerRegistry, startNodeProcess, type RegistryProcess } from '../test/support/node-process.ts'
import { copyToRegistry } from '../test/support/skopeo.ts'
import { gitCommit, machineDescription } from './environment.ts'
import { CLOCK_TICKS, processStat } from './node-probes.ts'

const execFileAsync = promisify(execFile)
const MiB = 1024 * 1024
const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
const IMAGE_DIR = path.join(OUT_DIR, 'images', 'large')
const WORK_DIR = path.join(OUT_DIR, 'serve-cpu')

const STARTERS: Record<string, (dataDir: string) => Promise<RegistryProcess>> = {
  shoal: async (dataDir) => await startNodeProcess({ dataDir, readyTimeoutMs: 60_000 }),
  'docker-registry': async (dataDir) => await startDockerRegistry({ dataDir })
}

interface Sample { seconds: number, cpuSeconds: number }

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      runs: { type: 'string', default: '5' },
      parallel: { type: 'string', default: '8' },
      registries: { type: 'string', default: 'shoal,docker-registry' },
      'limit-rate': { type: 'string' }
    }
  })
  const runs = Number(values.runs)
  const parallel = Number(values.parallel)
  const names = values.registries.split(',')
  const curlArgs = values['limit-rate'] === undefined ? [] : ['--limit-rate', values['limit-rate']]
  const image = await cachedImageLayout(IMAGE_DIR, { layers: Array<number>(8).fill(128 * MiB), seed: 'shoal-bench-large-v1' })
  const layers = image.layerDigests
  const bytes = image.layerSizes.reduce((sum, size) => sum + size, 0)
  await rm(WORK_DIR, { recursive: true, force: true })
  const registries = new Map<string, RegistryProcess>()
  try {
    for (const name of names) {
      const dataDir = path.join(WORK_DIR, name)
      await mkdir(dataDir, { recursive: true })
      const registry = await STARTERS[name]!(dataDir)
      registries.set(name, registry)
      await copyToRegistry(IMAGE_DIR, `${registry.host}/bench/large:latest`)
      // A first read warms the page cache and the JIT alike for both.
      await fetchAll(registry, layers, parallel, curlArgs)
    }
    const samples = new Map<string, Sample[]>(names.map(name => [name, []]))
    for (let run = 0; run < runs; run++) {
      for (const name of names) {
        const registry = registries.get(name)!
        const cpuBefore = await cpuJiffies(registry)
        const started = performance.now()
        await fetchAll(registry, layers, parallel, curlArgs)
        const seconds = (performance.now() - started) / 1000
        const cpuSeconds = (await cpuJiffies(registry) - cpuBefore) / CLOCK_TICKS
        samples.get(name)!.push({ seconds, cpuSeconds })
        console.error(`run ${run + 1} ${name}: ${seconds.toFixed(2)} s, server CPU ${cpuSeconds.toFixed(2)} s`)
      }
    }
    const gib = bytes / (1024 * MiB)
    const lines = [
      `serve-cpu: ${(bytes / MiB).toFixed(0)} MiB in ${layers.length} blobs, ${parallel} at a time, curl to /dev/null, ${runs} runs; ${gitCommit()}; ${machineDescription()}`,
      '',
      '| registry | median s | MB/s | server CPU s/GiB (median) | per run CPU s |',
      '|---|---:|---:|---:|---|'
    ]
    for (const name of names) {
      const list = samples.get(name)!
      const seconds = median(list.map(sample => sample.seconds))
      const cpu = median(list.map(sample => sample.cpuSeconds)) / gib
      lines.push(`| ${name} | ${seconds.toFixed(2)} | ${(bytes / 1e6 / seconds).toFixed(0)} | ${cpu.toFixed(2)} | ${list.map(sample => sample.cpuSeconds.toFixed(2)).join(', ')} |`)
    }
    console.log(lines.join('\n'))
  } finally {
    for (const registry of registries.values()) await registry.stop()
  }
}

async function fetchAll (registry: RegistryProcess, digests: string[], parallel: number, curlArgs: string[]): Promise<void> {
  const queue = [...digests]
  await Promise.all(Array.from({ length: Math.min(parallel, queue.length) }, async () => {
    for (let digest = queue.shift(); digest !== undefined; digest = queue.shift()) {
      await execFileAsync('curl', ['-sSf', ...curlArgs, '-o', '/dev/null', `${registry.url}/v2/bench/large/blobs/${digest}`])
    }
  }))
}

async function cpuJiffies (registry: RegistryProcess): Promise<number> {
  const stat = await processStat(String(registry.process.pid))
  return (stat[11] ?? 0) + (stat[12] ?? 0)
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

await main()
