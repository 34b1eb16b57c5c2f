// Bitswap with the rest of IPFS (issue 15): one N MiB layer (1 MiB raw leaves) moved
//   (a) from a Shoal node to a plain helia node over bitswap (the helia node walks the layer's
//       DAG, 8 blocks in flight, every block checked against its CID by helia),
//   (b) from a Shoal node to another Shoal node over the HTTP path (GET of the blob through B,
//       which only A holds: B fetches it from A's /ipfs/ with 8 leaves in flight),
//   (c) from a plain helia node to a Shoal node over bitswap (GET of the blob of an image only the
//       helia node holds, `/v2/ipfs/<cid>/blobs/<digest>`: B's fetcher finds no HTTP holder and
//       asks bitswap, 8 leaves in flight, each checked against its CID),
//   (c') the same through the gateway, `GET /ipfs/<file cid>` (one block after another).
// Shoal nodes are processes of their own (bin/shoal), and so is the helia node that holds (c)'s
// image (bench/helia-holder.ts); the helia node that fetches in (a) runs in this process, as do
// the HTTP clients of (b) and (c), which hash what they get and check it against the layer's
// digest ((a)'s copy is checked after the clock stops). Every run starts a fresh receiving side
// on empty storage. The first request of (c) waits out the holder lookup that finds no Shoal
// holder (~7 s): it is not in (c)'s time, and is reported on its own.
// Seconds and MiB/s are medians over --runs.
//
//   node bench/bitswap.ts [--runs 3] [--mib 256] [--swarm-key]
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createHash } from 'node:crypto'
import { createInterface } from 'node:readline'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { exporter } from 'ipfs-unixfs-exporter'
import { CID } from 'multiformats/cid'
import { newSwarmKey, readSwarmKey } from '../src/mesh/swarm-key.ts'
import { REPO_ROOT, startNodeProcess, type RegistryProcess } from '../test/support/node-process.ts'
import { cachedImageLayout, layoutBlobPath, readLayoutIndex, type ImageLayoutResult } from '../test/support/oci-image.ts'
import { dial, fetchDag, startPlainHelia, type PlainHelia } from '../test/support/plain-helia.ts'
import { RegistryClient } from '../test/support/registry-client.ts'
import { gitCommit, machineDescription } from './environment.ts'
import { eventually } from './node-probes.ts'

const MiB = 1024 * 1024
const OUT_DIR = path.join(REPO_ROOT, 'bench', 'out')
const WORK_DIR = path.join(OUT_DIR, 'bitswap-work')
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, mib: { type: 'string', default: '256' }, 'swarm-key': { type: 'boolean', default: false } } })
const runs = Number(values.runs)
const mib = Number(values.mib)
if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number ≥ 1, got ${values.runs}`)
if (!Number.isInteger(mib) || mib < 1) throw new Error(`--mib must be a whole number ≥ 1, got ${values.mib}`)

const log = (message: string): void => { process.stderr.write(`[bitswap ${new Date().toISOString().slice(11, 19)}] ${message}\n`) }
const median = (list: number[]): number => { const sorted = [...list].sort((x, y) => x - y); return sorted[Math.floor((sorted.length - 1) / 2)] as number }

async function timed (work: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  await work()
  return (performance.now() - started) / 1000
}

/** GET `url`, hashing the body as it comes; throws unless it is `digest`. */
async function getAndCheck (url: string, digest: string): Promise<void> {
  const response = await fetch(url)
  if (response.status !== 200 || response.body === null) throw new Error(`GET ${url}: ${response.status} ${await response.text()}`)
  const hash = createHash('sha256')
  for await (const chunk of response.body) hash.update(chunk)
  const got = `sha256:${hash.digest('hex')}`
  if (got !== digest) throw new Error(`GET ${url}: ${got}, not ${digest}`)
}

/** Pushes an OCI layout's one image (manifest, config, layers) with monolithic uploads. */
async function pushLayout (url: string, repository: string, tag: string, dir: string): Promise<string> {
  const client = new RegistryClient(url)
  const top = (await readLayoutIndex(dir)).manifests[0]
  if (top === undefined) throw new Error(`${dir} names no image`)
  const manifest = await readFile(layoutBlobPath(dir, top.digest))
  const { config, layers } = JSON.parse(manifest.toString()) as { config: { digest: string }, layers: Array<{ digest: string }> }
  for (const { digest } of [config, ...layers]) await client.pushBlob(repository, await readFile(layoutBlobPath(dir, digest)), digest)
  const response = await client.pushManifest(repository, tag, manifest.toString(), top.mediaType)
  if (response.status !== 201) throw new Error(`manifest push: ${response.status} ${await response.text()}`)
  return response.headers.get('shoal-image-cid') ?? ''
}

/**
 * A Shoal node process; started again on another port when its free port was taken before it
 * bound it (an outgoing connection of this machine's can take a port from the ephemeral range).
 */
async function startShoal (dataDir: string, args: string[]): Promise<RegistryProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startNodeProcess({ dataDir, args })
    } catch (err) {
      if (attempt === 3 || !String(err).includes('EADDRINUSE')) throw err
    }
  }
}

/** bench/helia-holder.ts serving `dir`: its libp2p address and the directory's root CID. */
async function startHeliaHolder (dir: string, swarmKeyFile: string | undefined): Promise<{ address: string, root: CID, stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [path.join(REPO_ROOT, 'bench', 'helia-holder.ts'), '--dir', dir, ...(swarmKeyFile === undefined ? [] : ['--swarm-key', swarmKeyFile])], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] })
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    await exited
  }
  try {
    const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream })
    const [line] = await Promise.race([once(lines, 'line'), once(child, 'exit').then(([code]) => { throw new Error(`helia-holder exited (${String(code)}) before it was ready`) })]) as [string]
    const { address, root } = JSON.parse(line) as { address: string, root: string }
    return { address, root: CID.parse(root), stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/** The libp2p address of a Shoal node process (its API). */
async function meshAddress (node: RegistryProcess): Promise<string> {
  return await eventually('the mesh address', async () => {
    const answer = await (await fetch(`${node.url}/api/v1/peers`)).json() as { self: { addresses: string[] } | null }
    return answer.self?.addresses[0]
  }, 30_000)
}

/** The CID at the end of a path below an image CID, as the node's gateway resolves it. */
async function cidAt (node: RegistryProcess, path: string): Promise<CID> {
  const response = await fetch(`${node.url}/ipfs/${path}?format=raw`, { method: 'HEAD' })
  const roots = response.headers.get('x-ipfs-roots')?.split(',') ?? []
  const last = roots.at(-1)
  if (response.status !== 200 || last === undefined) throw new Error(`HEAD /ipfs/${path}: ${response.status}`)
  return CID.parse(last)
}

/** Reads a UnixFS file out of helia's own store (no network) and checks its digest. */
async function checkHeld (helia: PlainHelia, cid: CID, digest: string): Promise<void> {
  const hash = createHash('sha256')
  const entry = await exporter(cid, helia.blockstore, { offline: true })
  if (entry.type !== 'file') throw new Error(`${cid.toString()} is a ${entry.type}, not a file`)
  for await (const chunk of entry.content({ offline: true })) hash.update(chunk)
  if (`sha256:${hash.digest('hex')}` !== digest) throw new Error(`helia's copy of ${cid.toString()} does not hash to ${digest}`)
}

async function main (): Promise<void> {
  await rm(WORK_DIR, { recursive: true, force: true })
  await mkdir(WORK_DIR, { recursive: true })
  const swarmKeyFile = path.join(WORK_DIR, 'swarm.key')
  await writeFile(swarmKeyFile, newSwarmKey())
  const swarmKey = values['swarm-key'] ? await readSwarmKey(swarmKeyFile) : undefined
  const keyArgs = swarmKey === undefined ? [] : ['--swarm-key', swarmKeyFile]
  // The same size twice, different bytes: Shoal's image (a, b) and the helia node's (c).
  const shoalLayout = path.join(OUT_DIR, 'images', `bitswap-shoal-${mib}`)
  const heliaLayout = path.join(OUT_DIR, 'images', `bitswap-helia-${mib}`)
  const shoalImage = await cachedImageLayout(shoalLayout, { layers: [mib * MiB], seed: `shoal-bitswap-bench-a-${mib}` })
  const heliaImage = await cachedImageLayout(heliaLayout, { layers: [mib * MiB], seed: `shoal-bitswap-bench-c-${mib}` })
  const layerOf = (image: ImageLayoutResult): { digest: string, size: number } => ({ digest: image.layerDigests[0] as string, size: image.layerSizes[0] as number })

  const a = await startShoal(path.join(WORK_DIR, 'a'), ['--mesh', ...keyArgs])
  const started: Array<{ stop(): Promise<unknown> }> = [a]
  const seconds: Record<'a' | 'b' | 'c' | 'gateway' | 'lookup', number[]> = { a: [], b: [], c: [], gateway: [], lookup: [] }
  try {
    const aAddress = await meshAddress(a)
    const imageCid = await pushLayout(a.url, 'bench/bitswap', '1', shoalLayout)
    const shoalLayer = layerOf(shoalImage)
    const shoalLayerCid = await cidAt(a, `${imageCid}/blobs/sha256/${shoalLayer.digest.slice('sha256:'.length)}`)
    log(`A holds image ${imageCid}, layer ${shoalLayerCid.toString()} (${(shoalLayer.size / MiB).toFixed(1)} MiB)`)
    const holder = await startHeliaHolder(heliaLayout, swarmKey === undefined ? undefined : swarmKeyFile)
    started.push(holder)
    const { address: holderAddress, root: heliaRoot } = holder
    const heliaLayer = layerOf(heliaImage)
    log(`helia holds image ${heliaRoot.toString()}`)

    for (let run = 1; run <= runs; run++) {
      log(`run ${run}/${runs}: (a) helia <- Shoal over bitswap`)
      const fetching = await startPlainHelia({ swarmKey })
      try {
        await dial(fetching, aAddress)
        seconds.a.push(await timed(async () => await fetchDag(fetching, shoalLayerCid, AbortSignal.timeout(600_000), 8, false)))
        await checkHeld(fetching, shoalLayerCid, shoalLayer.digest)
      } finally {
        await fetching.stop()
      }

      log(`run ${run}/${runs}: (b) Shoal <- Shoal over HTTP`)
      const b = await startShoal(path.join(WORK_DIR, `b-${run}`), ['--peer', aAddress, ...keyArgs])
      try {
        // B adopts the image (tag from the catalogue, manifest from A) and knows A holds it.
        await eventually('the tag on B', async () => (await fetch(`${b.url}/v2/bench/bitswap/manifests/1`, { headers: { accept: OCI_MANIFEST } })).status === 200 ? true : undefined, 60_000)
        seconds.b.push(await timed(async () => await getAndCheck(`${b.url}/v2/bench/bitswap/blobs/${shoalLayer.digest}`, shoalLayer.digest)))
      } finally {
        await b.stop()
        await rm(path.join(WORK_DIR, `b-${run}`), { recursive: true, force: true })
      }

      log(`run ${run}/${runs}: (c) Shoal <- helia over bitswap`)
      const c = await startShoal(path.join(WORK_DIR, `c-${run}`), ['--peer', holderAddress, '--gateway-fetch', ...keyArgs])
      try {
        await eventually('C connected to helia', async () => (await (await fetch(`${c.url}/api/v1/peers`)).json() as { peers: unknown[] }).peers.length > 0 ? true : undefined, 30_000)
        // The first request finds no Shoal holder (the lookup's ~7 s), then reads the image's directories over bitswap.
        seconds.lookup.push(await timed(async () => {
          const response = await fetch(`${c.url}/v2/ipfs/${heliaRoot.toString()}/manifests/latest`, { headers: { accept: OCI_MANIFEST } })
          if (response.status !== 200) throw new Error(`manifest through C: ${response.status} ${await response.text()}`)
        }))
        seconds.c.push(await timed(async () => await getAndCheck(`${c.url}/v2/ipfs/${heliaRoot.toString()}/blobs/${heliaLayer.digest}`, heliaLayer.digest)))
      } finally {
        await c.stop()
        await rm(path.join(WORK_DIR, `c-${run}`), { recursive: true, force: true })
      }

      log(`run ${run}/${runs}: (c') Shoal <- helia over bitswap, gateway`)
      const g = await startShoal(path.join(WORK_DIR, `g-${run}`), ['--peer', holderAddress, '--gateway-fetch', ...keyArgs])
      try {
        await eventually('the node connected to helia', async () => (await (await fetch(`${g.url}/api/v1/peers`)).json() as { peers: unknown[] }).peers.length > 0 ? true : undefined, 30_000)
        // Untimed: the layer's CID (through the image's path), then its first byte, which waits out
        // the lookup that finds no Shoal holder of that CID. Then the whole file.
        const heliaLayerCid = await cidAt(g, `${heliaRoot.toString()}/blobs/sha256/${heliaLayer.digest.slice('sha256:'.length)}`)
        const first = await fetch(`${g.url}/ipfs/${heliaLayerCid.toString()}`, { headers: { range: 'bytes=0-0' } })
        if (first.status !== 206) throw new Error(`first byte of the layer through the gateway: ${first.status} ${await first.text()}`)
        seconds.gateway.push(await timed(async () => await getAndCheck(`${g.url}/ipfs/${heliaLayerCid.toString()}`, heliaLayer.digest)))
      } finally {
        await g.stop()
        await rm(path.join(WORK_DIR, `g-${run}`), { recursive: true, force: true })
      }
    }
  } finally {
    for (const part of started.reverse()) await part.stop().catch(() => {})
  }

  const size = layerOf(shoalImage).size / MiB
  const row = (what: string, path: string, list: number[]): string => `| ${what} | ${path} | ${median(list).toFixed(2)} | ${(size / median(list)).toFixed(1)} | ${list.map(s => s.toFixed(2)).join(', ')} |`
  const table = [
    `Bitswap interop, one ${size.toFixed(1)} MiB layer (1 MiB raw leaves), medians of ${runs} run(s)${swarmKey === undefined ? '' : ', private mesh (swarm key)'}; ${machineDescription()}, commit ${gitCommit()}`,
    '',
    '| transfer | path | seconds | MiB/s | runs (s) |',
    '|---|---|---:|---:|---|',
    row('(a) Shoal -> plain helia', 'bitswap, helia walks the DAG, 8 blocks in flight', seconds.a),
    row('(b) Shoal -> Shoal', 'HTTP (/ipfs/ raw blocks), 8 leaves in flight', seconds.b),
    row('(c) plain helia -> Shoal', 'bitswap fallback, /v2/ipfs/<cid>/blobs, 8 leaves in flight', seconds.c),
    row('(c\') plain helia -> Shoal', 'bitswap fallback, gateway GET /ipfs/<cid>, one block at a time', seconds.gateway),
    '',
    `First request of (c) (manifest, holder lookup included): median ${median(seconds.lookup).toFixed(2)} s (${seconds.lookup.map(s => s.toFixed(2)).join(', ')}).`
  ].join('\n')
  process.stdout.write(`${table}\n`)
  await writeFile(path.join(OUT_DIR, 'bitswap-latest.md'), `${table}\n`)
  await rm(WORK_DIR, { recursive: true, force: true })
}

await main()
