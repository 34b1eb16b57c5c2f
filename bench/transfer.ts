// Transfers from the CLI (issue 14): `shoal push` and `shoal pull` against skopeo copying the same
// image to and from the same kind of node, side by side in one run, and the encrypted ones
// (`--encrypt jwe:` / `--decrypt`) against the plain ones.
//
//   node bench/transfer.ts [--runs 3] [--mib 1024] [--layers 8]
//
// Each push goes to a fresh node (an empty data directory: nothing to skip or mount); each pull
// reads from a node that holds the image into an empty OCI layout. The image is the push-pull
// benchmark's (incompressible, uncompressed layers); skopeo keeps it as it is
// (--preserve-digests, --dest-oci-accept-uncompressed-layers), so both move the same bytes.
// Contenders alternate their order from run to run. Medians; the table goes to stdout.
import { execFile, execFileSync } from 'node:child_process'
import { mkdir, rm } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs, promisify } from 'node:util'
import { cachedImageLayout } from '../test/support/oci-image.ts'
import { REPO_ROOT, startNodeProcess, type RegistryProcess } from '../test/support/node-process.ts'
import { copyFromRegistry, copyToRegistry } from '../test/support/skopeo.ts'
import { gitCommit, machineDescription, toolVersion } from './environment.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const WORK_DIR = path.join(REPO_ROOT, 'bench', 'out', 'transfer')
const SHOAL = path.join(REPO_ROOT, 'bin', 'shoal')

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, mib: { type: 'string', default: '1024' }, layers: { type: 'string', default: '8' } } })
const runs = Number(values.runs)
const mib = Number(values.mib)
const layerCount = Number(values.layers)

function median (numbers: number[]): number {
  const sorted = [...numbers].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

async function shoal (...args: string[]): Promise<void> {
  await run(SHOAL, [...args, '--quiet'], { env: { ...process.env, XDG_STATE_HOME: path.join(WORK_DIR, 'state') }, maxBuffer: 16 * MiB })
}

/** Starts a fresh node, runs `work` against it, stops it; the seconds `work` took. */
async function onFreshNode (name: string, work: (node: RegistryProcess) => Promise<void>, prepare?: (node: RegistryProcess) => Promise<void>): Promise<number> {
  const dataDir = path.join(WORK_DIR, `node-${name}`)
  await rm(dataDir, { recursive: true, force: true })
  await mkdir(dataDir, { recursive: true })
  const node = await startNodeProcess({ dataDir, readyTimeoutMs: 60_000 })
  try {
    await prepare?.(node)
    execFileSync('sync')
    const started = performance.now()
    await work(node)
    return (performance.now() - started) / 1000
  } finally {
    await node.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}

async function main (): Promise<void> {
  await mkdir(WORK_DIR, { recursive: true })
  const imageDir = path.join(REPO_ROOT, 'bench', 'out', 'images', `transfer-${mib}x${layerCount}`)
  const image = await cachedImageLayout(imageDir, { layers: Array<number>(layerCount).fill(Math.round(mib * MiB / layerCount)), seed: `shoal-bench-transfer-${mib}x${layerCount}-v1` })
  const keys = path.join(WORK_DIR, 'keys')
  await mkdir(keys, { recursive: true })
  await run('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path.join(keys, 'priv.pem')])
  await run('openssl', ['pkey', '-in', path.join(keys, 'priv.pem'), '-pubout', '-out', path.join(keys, 'pub.pem')])
  const out = (name: string): string => path.join(WORK_DIR, `out-${name}`)
  const seconds: Record<string, number[]> = { skopeoPush: [], shoalPush: [], encryptedPush: [], skopeoPull: [], shoalPull: [], decryptedPull: [] }
  for (let index = 0; index < runs; index++) {
    const pushes: Array<[string, () => Promise<number>]> = [
      ['skopeoPush', async () => await onFreshNode('skopeo', async node => { await copyToRegistry(imageDir, `${node.host}/bench/app:1`, { preserveDigests: true }) })],
      ['shoalPush', async () => await onFreshNode('shoal', async node => { await shoal('push', `oci:${imageDir}`, `${node.host}/bench/app:1`) })],
      ['encryptedPush', async () => await onFreshNode('encrypted', async node => { await shoal('push', `oci:${imageDir}`, `${node.host}/bench/app:1`, '--encrypt', `jwe:${path.join(keys, 'pub.pem')}`) })]
    ]
    const pulls: Array<[string, () => Promise<number>]> = [
      ['skopeoPull', async () => await onFreshNode('pull-skopeo', async node => { await copyFromRegistry(`${node.host}/bench/app:1`, out('skopeo')) }, async node => { await shoal('push', `oci:${imageDir}`, `${node.host}/bench/app:1`) })],
      ['shoalPull', async () => await onFreshNode('pull-shoal', async node => { await shoal('pull', `${node.host}/bench/app:1`, `oci:${out('shoal')}`) }, async node => { await shoal('push', `oci:${imageDir}`, `${node.host}/bench/app:1`) })],
      ['decryptedPull', async () => await onFreshNode('pull-decrypted', async node => { await shoal('pull', `${node.host}/bench/app:1`, `oci:${out('decrypted')}`, '--decrypt', path.join(keys, 'priv.pem')) }, async node => { await shoal('push', `oci:${imageDir}`, `${node.host}/bench/app:1`, '--encrypt', `jwe:${path.join(keys, 'pub.pem')}`) })]
    ]
    // Each run in another order: no contender always goes first (or last, on a warmer disk).
    const rotate = <T>(list: T[]): T[] => [...list.slice(index % list.length), ...list.slice(0, index % list.length)]
    for (const [name, measure] of [...rotate(pushes), ...rotate(pulls)]) {
      seconds[name]!.push(await measure())
      await Promise.all(['skopeo', 'shoal', 'decrypted'].map(async name => { await rm(out(name), { recursive: true, force: true }) }))
      console.error(`run ${index + 1} ${name}: ${seconds[name]!.at(-1)!.toFixed(2)} s`)
    }
  }
  const gib = image.totalSize / (1024 * MiB)
  const row = (label: string, key: string, against: string, versus: string): string => {
    const s = median(seconds[key]!)
    return `| ${label} | ${s.toFixed(2)} | ${(gib * 1024 / s).toFixed(0)} | ${(median(seconds[against]!) / s).toFixed(2)}x ${versus} |`
  }
  console.log(`Transfers, ${mib} MiB in ${layerCount} layers, ${runs} runs, medians (${gitCommit()}; ${machineDescription()}; ${toolVersion('skopeo', ['--version'])})\n`)
  console.log('| transfer | s | MiB/s | throughput against |')
  console.log('|---|---|---|---|')
  console.log(row('skopeo push', 'skopeoPush', 'skopeoPush', 'skopeo'))
  console.log(row('shoal push', 'shoalPush', 'skopeoPush', 'skopeo'))
  console.log(row('shoal push --encrypt', 'encryptedPush', 'shoalPush', 'shoal push'))
  console.log(row('skopeo pull', 'skopeoPull', 'skopeoPull', 'skopeo'))
  console.log(row('shoal pull', 'shoalPull', 'skopeoPull', 'skopeo'))
  console.log(row('shoal pull --decrypt', 'decryptedPull', 'shoalPull', 'shoal pull'))
  console.log(`\nencrypted push ${(median(seconds.encryptedPush!) / median(seconds.shoalPush!)).toFixed(2)}x the plain push's time, decrypted pull ${(median(seconds.decryptedPull!) / median(seconds.shoalPull!)).toFixed(2)}x the plain pull's`)
}

await main()
