// Start time of a node with a month of catalogue history (issue 11): time from process start to
// GET /v2/ 200 and to a current catalogue (every tag listed with its latest digest), and the data
// directory's size, with compaction (the defaults) and without (a threshold no log reaches: the
// one log per database that today's main kept). Optionally also a fresh node joining the one
// with the history: time until it lists every tag.
//
//   node bench/catalogue-history.ts                  # a month: 30 days x 1,000 rewrites, 200 repos
//   node bench/catalogue-history.ts --days 2 --runs 1 --join false   # a small trial
//
// History is written in-process through the Catalogue class (not 30,000 HTTP pushes), by a node
// that then stops; the measured nodes are real processes (bin/shoal serve).
import { execFileSync } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { pino } from 'pino'
import type { TagRecord } from '../src/catalogue/catalogue.ts'
import { DEFAULT_CONFIG } from '../src/config.ts'
import { ShoalNode } from '../src/node.ts'
import { startNodeProcess, type RegistryProcess } from '../test/support/node-process.ts'
import { eventually } from './node-probes.ts'
import { seededRandom } from '../test/support/random.ts'

const { values: args } = parseArgs({
  options: {
    days: { type: 'string', default: '30' },
    rewrites: { type: 'string', default: '1000' },
    repos: { type: 'string', default: '200' },
    tags: { type: 'string', default: '5' },
    deletes: { type: 'string', default: '50' },
    strategies: { type: 'string', default: '20' },
    'strategy-edits': { type: 'string', default: '10' },
    runs: { type: 'string', default: '3' },
    modes: { type: 'string', default: 'on,off' },
    join: { type: 'string', default: 'true' }
  }
})
const DAYS = Number(args.days)
const REWRITES_PER_DAY = Number(args.rewrites)
const REPOS = Number(args.repos)
const TAGS_PER_REPO = Number(args.tags)
const DELETES_PER_DAY = Number(args.deletes)
const STRATEGIES = Number(args.strategies)
const STRATEGY_EDITS_PER_DAY = Number(args['strategy-edits'])
const RUNS = Number(args.runs)
const MODES = args.modes.split(',') as Array<'on' | 'off'>
const JOIN = args.join === 'true'
const HISTORY_GC_GRACE_SECONDS = 3
/** No log reaches it: compaction off. */
const NEVER = 1_000_000_000
const TAG_NAMES = ['latest', 'stable', 'v1', 'v2', 'v3', 'v4', 'v5', 'v6', 'v7', 'v8'].slice(0, TAGS_PER_REPO)


interface History {
  /** repo:tag -> digest at the end. */
  tags: Map<string, string>
  writes: number
  writeSeconds: number
}

async function writeHistory (dataDir: string, compaction: boolean): Promise<History> {
  const node = await ShoalNode.create({
    config: {
      ...DEFAULT_CONFIG,
      listen: '127.0.0.1:0',
      data: dataDir,
      mesh: true,
      heartbeatSeconds: 3600,
      catalogueCompactEntries: compaction ? DEFAULT_CONFIG.catalogueCompactEntries : NEVER,
      // The history node is alone: nobody's writes can race its compactions.
      catalogueGraceSeconds: 0,
      // Short, not 0: the collections that follow each drop run while writes go on, and a block
      // OrbitDB has put but not yet pinned must not go.
      gcGraceSeconds: HISTORY_GC_GRACE_SECONDS
    },
    logger: pino({ level: 'warn' })
  })
  await node.start()
  const catalogue = node.fleet?.catalogue
  if (catalogue === undefined) throw new Error('the history node is not in a mesh')
  const next = seededRandom(11)
  const tags = new Map<string, string>()
  let writes = 0
  let counter = 0
  const digest = (): string => `sha256:${(counter++).toString(16).padStart(64, '0')}`
  const started = performance.now()
  const put = async (repository: string, tag: string): Promise<void> => {
    const imageCid = CID.createV1(0x70, await sha256.digest(new TextEncoder().encode(String(counter)))).toString()
    const record: TagRecord = { repository, tag, digest: digest(), mediaType: 'application/vnd.oci.image.manifest.v1+json', imageCid, node: 'history', pushedAt: new Date().toISOString() }
    await catalogue.putTag(record)
    tags.set(`${repository}:${tag}`, record.digest)
    writes++
  }
  for (let day = 0; day < DAYS; day++) {
    for (let i = 0; i < REWRITES_PER_DAY; i++) {
      await put(`repo${Math.floor(next() * REPOS)}`, TAG_NAMES[Math.floor(next() * TAG_NAMES.length)]!)
    }
    // Short-lived tags (pull requests): pushed, then deleted.
    for (let i = 0; i < DELETES_PER_DAY; i++) {
      const repository = `repo${Math.floor(next() * REPOS)}`
      await put(repository, `pr-${day}-${i}`)
      await catalogue.deleteTag(repository, `pr-${day}-${i}`)
      tags.delete(`${repository}:pr-${day}-${i}`)
      writes++
    }
    for (let i = 0; i < STRATEGY_EDITS_PER_DAY; i++) {
      const id = `strategy-${Math.floor(next() * STRATEGIES)}`
      const at = new Date().toISOString()
      // A selector no node matches: the strategy is edited and stored, and places nothing.
      await catalogue.putStrategy({ id, kind: 'labels', image: `repo${Math.floor(next() * REPOS)}:latest`, selector: { bench: `edit-${day}-${i}` }, createdAt: at, updatedAt: at })
      writes++
    }
    process.stderr.write(`\r  ${compaction ? 'on ' : 'off'}: day ${day + 1}/${DAYS}, ${writes} writes`)
  }
  process.stderr.write('\n')
  const writeSeconds = (performance.now() - started) / 1000
  // Superseded generations go once their grace is over; the collector then removes their blocks
  // (a running node collects every gcIntervalMinutes).
  await eventually('old generations to be dropped', async () => (await catalogue.generations()).every(db => db.open.length === 1) ? true : undefined)
  await new Promise(resolve => setTimeout(resolve, (HISTORY_GC_GRACE_SECONDS + 1) * 1000))
  await node.gc.collect()
  const generations = await catalogue.generations()
  console.log(`  ${compaction ? 'on ' : 'off'}: ${writes} writes in ${writeSeconds.toFixed(0)} s; ` +
    generations.map(db => `${db.name} generation ${db.current}, ${db.logEntries} log entries, ${db.liveKeys} live keys`).join('; '))
  await node.stop()
  return { tags, writes, writeSeconds }
}

/** Every tag listed with its latest digest. */
async function current (node: RegistryProcess, expected: Map<string, string>): Promise<true> {
  const answer = await (await fetch(`${node.url}/api/v1/datastore`)).json() as { databases?: Array<{ name: string, entries: Array<{ key: string, value: { digest?: string } }> }> }
  const tags = answer.databases?.find(db => db.name === 'shoal.tags')?.entries ?? []
  const wrong = tags.filter(entry => expected.get(entry.key) !== entry.value.digest)
  if (tags.length === expected.size && wrong.length === 0) return true
  throw new Error(`${tags.length} of ${expected.size} tags listed, ${wrong.length} not as expected (${wrong.slice(0, 2).map(entry => `${entry.key} ${entry.value.digest ?? ''} instead of ${expected.get(entry.key) ?? 'none'}`).join(', ')})`)
}

function median (values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
}

function du (dir: string): { bytes: number, files: number } {
  const bytes = Number(execFileSync('du', ['-sb', dir], { encoding: 'utf8' }).split('\t')[0])
  const files = Number(execFileSync('sh', ['-c', `find "${dir}" -type f | wc -l`], { encoding: 'utf8' }).trim())
  return { bytes, files }
}

interface ModeResult {
  mode: 'on' | 'off'
  writes: number
  liveTags: number
  size: { bytes: number, files: number }
  v2Seconds: number[]
  catalogueSeconds: number[]
  joinSeconds?: number
}

async function measure (mode: 'on' | 'off'): Promise<ModeResult> {
  const root = await mkdtemp(join(tmpdir(), `shoal-history-${mode}-`))
  const compactArgs = ['--catalogue-compact-entries', String(mode === 'on' ? DEFAULT_CONFIG.catalogueCompactEntries : NEVER)]
  try {
    const dataDir = join(root, 'history')
    const history = await writeHistory(dataDir, mode === 'on')
    const size = du(dataDir)
    const v2Seconds: number[] = []
    const catalogueSeconds: number[] = []
    let joinSeconds: number | undefined
    for (let run = 0; run < RUNS; run++) {
      const started = performance.now()
      const node = await startNodeProcess({ dataDir, args: ['--mesh', ...compactArgs], readyTimeoutMs: 600_000 })
      try {
        v2Seconds.push((performance.now() - started) / 1000)
        await eventually('every tag listed', async () => await current(node, history.tags), 600_000)
        catalogueSeconds.push((performance.now() - started) / 1000)
        if (JOIN && run === RUNS - 1) {
          const peers = await (await fetch(`${node.url}/api/v1/peers`)).json() as { self: { addresses: string[] } }
          const joinStarted = performance.now()
          const joiner = await startNodeProcess({ dataDir: join(root, 'joiner'), args: ['--peer', peers.self.addresses[0] ?? '', ...compactArgs], readyTimeoutMs: 600_000 })
          try {
            await eventually('the joiner to list every tag', async () => await current(joiner, history.tags), 600_000)
            joinSeconds = (performance.now() - joinStarted) / 1000
          } finally {
            await joiner.stop()
          }
        }
      } finally {
        await node.stop()
      }
      console.log(`  ${mode}: run ${run + 1}: /v2/ after ${v2Seconds.at(-1)!.toFixed(2)} s, every tag after ${catalogueSeconds.at(-1)!.toFixed(2)} s${joinSeconds === undefined || run !== RUNS - 1 ? '' : `; a fresh node joining lists every tag after ${joinSeconds.toFixed(2)} s`}`)
    }
    return { mode, writes: history.writes, liveTags: history.tags.size, size, v2Seconds, catalogueSeconds, joinSeconds }
  } finally {
    await rm(root, { recursive: true, force: true })
  }
}

/** A node with an empty data directory, for what start costs without any history. */
async function baseline (): Promise<number[]> {
  const seconds: number[] = []
  for (let run = 0; run < RUNS; run++) {
    const root = await mkdtemp(join(tmpdir(), 'shoal-history-empty-'))
    try {
      const started = performance.now()
      const node = await startNodeProcess({ dataDir: root, args: ['--mesh'] })
      seconds.push((performance.now() - started) / 1000)
      await node.stop()
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  }
  console.log(`  empty data directory: /v2/ after ${seconds.map(s => s.toFixed(2)).join(', ')} s`)
  return seconds
}

console.log(`history: ${DAYS} days x (${REWRITES_PER_DAY} tag rewrites over ${REPOS} repositories x ${TAG_NAMES.length} tags, ${DELETES_PER_DAY} short-lived tags pushed and deleted, ${STRATEGY_EDITS_PER_DAY} edits of ${STRATEGIES} strategies); ${RUNS} restarts per mode`)
const empty = await baseline()
const results: ModeResult[] = []
for (const mode of MODES) results.push(await measure(mode))
console.log('')
console.log('| compaction | writes | live tags | data dir | files | /v2/ 200 (median) | every tag listed (median) | fresh node joining: every tag |')
console.log('|---|---|---|---|---|---|---|---|')
console.log(`| (empty data directory) | 0 | 0 | - | - | ${median(empty).toFixed(2)} s | - | - |`)
for (const r of results) {
  console.log(`| ${r.mode} | ${r.writes} | ${r.liveTags} | ${(r.size.bytes / 1e6).toFixed(1)} MB | ${r.size.files} | ${median(r.v2Seconds).toFixed(2)} s | ${median(r.catalogueSeconds).toFixed(2)} s | ${r.joinSeconds === undefined ? '-' : `${r.joinSeconds.toFixed(2)} s`} |`)
}
const on = results.find(r => r.mode === 'on')
const off = results.find(r => r.mode === 'off')
if (on !== undefined && off !== undefined) {
  console.log(`\noff / on: data dir ${(off.size.bytes / on.size.bytes).toFixed(1)}x, /v2/ ${(median(off.v2Seconds) / median(on.v2Seconds)).toFixed(1)}x, every tag ${(median(off.catalogueSeconds) / median(on.catalogueSeconds)).toFixed(1)}x`)
}
