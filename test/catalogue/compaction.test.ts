// Catalogue compaction on real nodes (real libp2p, real OrbitDB, in this process): logs restart
// from snapshots, old generations are dropped and their blocks collected, no write is lost
// around a compaction, and a node away across compactions catches up.
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Catalogue, CatalogueGeneration, TagRecord } from '../../src/catalogue/catalogue.ts'
import type { Config } from '../../src/config.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'

const COMPACT_ENTRIES = 30
const GRACE_SECONDS = 1
// A short collector grace, not 0: the collection after a drop runs while writes go on, and a
// block OrbitDB has put but not yet pinned must not go.
const config: Partial<Config> = { catalogueCompactEntries: COMPACT_ENTRIES, catalogueGraceSeconds: GRACE_SECONDS, gcGraceSeconds: 1, heartbeatSeconds: 60 }

function catalogueOf (node: TestNode): Catalogue {
  const fleet = node.node.fleet
  if (fleet === undefined) throw new Error('not in a mesh')
  return fleet.catalogue
}

function tag (repository: string, name: string, value: string, node = 'test'): TagRecord {
  return { repository, tag: name, digest: `sha256:${value}`, mediaType: 'application/vnd.oci.image.manifest.v1+json', imageCid: `bafy${value}`, node, pushedAt: new Date(0).toISOString() }
}

/** repo:tag -> digest, as a node lists them. */
async function tagsOn (node: TestNode): Promise<Map<string, string>> {
  return new Map((await catalogueOf(node).allTags()).map(record => [`${record.repository}:${record.tag}`, record.digest]))
}

async function tagGeneration (node: TestNode): Promise<CatalogueGeneration> {
  const tags = (await catalogueOf(node).generations()).find(generation => generation.name === 'shoal.tags')
  assert.ok(tags !== undefined)
  return tags
}

/**
 * Waits until every node lists exactly `expected`, has dropped all but its current generation,
 * and that generation is the same on every node and at least `generation`.
 */
async function converged (nodes: TestNode[], expected: Map<string, string>, generation = 0, timeoutMs = 20_000): Promise<void> {
  for (const node of nodes) {
    await eventually(async () => {
      const tags = await tagsOn(node)
      const state = await tagGeneration(node)
      const settled = state.open.length === 1 && state.current >= generation
      return settled && sameMap(tags, expected) ? true : undefined
    }, timeoutMs, `${node.url} to list the ${expected.size} expected tags on one generation (at least ${generation})`).catch(async err => {
      const tags = await tagsOn(node)
      const missing = [...expected].filter(([key, digest]) => tags.get(key) !== digest)
      throw new Error(`${(err as Error).message}; generation ${JSON.stringify(await tagGeneration(node))}; wrong or missing: ${JSON.stringify(missing.slice(0, 5))}; extra: ${JSON.stringify([...tags.keys()].filter(key => !expected.has(key)).slice(0, 5))}`)
    })
  }
  // One generation on every node, eventually: a compaction that the writes above made due may
  // still be spreading when the last node settles (seen in CI: 3, 2, 2 for a moment).
  const states = async (): Promise<CatalogueGeneration[]> => await Promise.all(nodes.map(async node => await tagGeneration(node)))
  await eventually(async () => {
    const all = await states()
    return new Set(all.map(state => state.current)).size === 1 && all.every(state => state.open.length === 1) ? true : undefined
  }, timeoutMs, 'every node on one generation, the others dropped').catch(async (err: unknown) => {
    throw new Error(`${(err as Error).message} (${(await states()).map(state => `${state.current} of [${state.open.join(',')}]`).join('; ')})`)
  })
  for (const node of nodes) assert.ok(sameMap(await tagsOn(node), expected), `${node.url} lists the expected tags on the common generation`)
}

function sameMap (a: Map<string, string>, b: Map<string, string>): boolean {
  return a.size === b.size && [...a].every(([key, value]) => b.get(key) === value)
}

async function pinnedCount (node: TestNode): Promise<number> {
  let count = 0
  for await (const _ of (node.node.fleet?.mesh.helia.pins.ls() ?? [])) count++
  return count
}

async function blockFiles (node: TestNode): Promise<number> {
  return (await readdir(join(node.dataDir, 'blocks'), { recursive: true, withFileTypes: true })).filter(entry => entry.isFile()).length
}

describe('catalogue compaction', () => {
  const dirs: string[] = []
  let a: TestNode
  let b: TestNode
  let c: TestNode
  const expected = new Map<string, string>()
  let peers: string[]

  const write = async (node: TestNode, repository: string, name: string, value: string): Promise<void> => {
    await catalogueOf(node).putTag(tag(repository, name, value))
    expected.set(`${repository}:${name}`, `sha256:${value}`)
  }
  const remove = async (node: TestNode, repository: string, name: string): Promise<void> => {
    await catalogueOf(node).deleteTag(repository, name)
    expected.delete(`${repository}:${name}`)
  }

  before(async () => {
    for (let i = 0; i < 3; i++) dirs.push(await mkdtemp(join(tmpdir(), 'shoal-compact-')))
    a = await startTestNode({ dataDir: dirs[0], config: { ...config, mesh: true } })
    peers = [a.node.fleet?.mesh.addresses[0] ?? '']
    b = await startTestNode({ dataDir: dirs[1], config: { ...config, peers } })
    c = await startTestNode({ dataDir: dirs[2], config: { ...config, peers } })
  })
  after(async () => {
    await Promise.all([a, b, c].map(async node => await node?.stop()))
    await Promise.all(dirs.map(async dir => await rm(dir, { recursive: true, force: true })))
  })

  it('starts a new generation once the log is mostly history, drops the old one and its blocks are collected', async () => {
    const filesAtStart = await blockFiles(b)
    // 5 live tags rewritten without a pause until the log is compacted: past max(30, 5)
    // entries, while the writes go on.
    let writes = 0
    while ((await tagGeneration(a)).current < 1) {
      assert.ok(writes < 300, 'compacted while writes go on')
      // Five at once, one per tag: updates arrive faster than any pause a compaction waits for.
      await Promise.all([0, 1, 2, 3, 4].map(async i => { await write(a, 'app', `t${i}`, `v${writes}-${i}`) }))
      writes += 5
    }
    assert.ok(writes > COMPACT_ENTRIES)
    await remove(a, 'app', 't4')
    await converged([a, b, c], expected, 1)
    for (const node of [a, b, c]) {
      const state = await tagGeneration(node)
      // The snapshot, the writes carried over from the compaction's moments, the delete.
      assert.ok(state.logEntries < 10, `the new log holds ${state.logEntries} entries`)
      assert.equal(state.liveKeys, 4)
    }
    // The old generation's entries were unpinned, and the collection that follows a drop removed
    // their blocks: what stays is the new log (a few entries), not the history.
    const pins = await pinnedCount(b)
    const grown = await eventually(async () => {
      const files = await blockFiles(b) - filesAtStart
      return files < 15 ? files : undefined
    }, 10_000, 'the old generation\'s blocks to be collected')
    assert.ok(grown < 15, `${grown} block files more than before ${writes + 1} writes`)
    assert.equal(await pinnedCount(b), pins, 'only unpinned blocks went')
    assert.ok(pins < writes, `fewer pins (${pins}) than the history's ${writes + 1} entries`)
    // OrbitDB's own files of the old generation are gone too.
    const orbitFiles = await readdir(join(b.dataDir, 'orbitdb', 'orbitdb'))
    assert.ok(orbitFiles.length <= 5, `one directory per open database (${orbitFiles.join(', ')})`)
    // Writes go on in the new generation.
    await write(b, 'app', 't0', 'after')
    await converged([a, b, c], expected, 1)
  })

  it('loses no write made before, during or right after a compaction, on any node', async () => {
    const from = (await tagGeneration(a)).current
    // Writes on all three nodes while a compacts; b's and c's race the switch.
    const racing = Promise.all([b, c].map(async (node, n) => {
      for (let i = 0; i < 25; i++) await write(node, `race${n}`, `t${i % 3}`, `${n}-${i}`)
    }))
    await catalogueOf(a).compact('tag')
    await write(a, 'app', 't1', 'right-after')
    await racing
    await remove(c, 'race0', 't1')
    await converged([a, b, c], expected, from + 1)
  })

  it('two nodes compacting at once agree on one generation and lose nothing', async () => {
    const from = (await tagGeneration(a)).current
    await Promise.all([catalogueOf(a).compact('tag'), catalogueOf(b).compact('tag'), write(c, 'app', 't2', 'meanwhile')])
    await converged([a, b, c], expected, from + 1)
  })

  it('a node that wrote while cut off carries its writes into the generation the fleet moved to', async () => {
    await c.stop()
    // c alone (no peers): its writes reach nobody.
    c = await startTestNode({ dataDir: dirs[2], config: { ...config, mesh: true } })
    await write(c, 'offline', 'only-c', 'c1')
    await remove(c, 'app', 't3')
    await c.stop()
    const from = (await tagGeneration(a)).current
    await catalogueOf(a).compact('tag')
    c = await startTestNode({ dataDir: dirs[2], config: { ...config, peers } })
    await converged([a, b, c], expected, from + 1)
  })

  it('a node stopped across two compactions rejoins and sees the current state, and start reads a bounded log', async () => {
    await c.stop()
    const from = (await tagGeneration(a)).current
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 50; i++) await write(round === 0 ? a : b, 'away', `t${i % 4}`, `r${round}-${i}`)
      await remove(b, 'away', `t${round}`)
      await eventually(async () => (await tagGeneration(b)).current === from + round + 1 && (await tagGeneration(a)).current === from + round + 1 ? true : undefined, 20_000, 'the compaction of round ' + String(round))
    }
    c = await startTestNode({ dataDir: dirs[2], config: { ...config, peers } })
    // Up to OrbitDB's 30 s block timeout more: the returning node may have joined an entry of its
    // old generation whose references nobody serves any more (the others dropped it), and that
    // generation is dropped only once the join gives up (seen once in CI: every tag right, the old
    // generation still open after 20 s).
    await converged([a, b, c], expected, from + 2, 45_000)
    // Start reads the current generation only: a snapshot and what came after, however long the history.
    const history = 50 + 25 * 2 + 50 * 2
    const restarted = await tagGeneration(c)
    // A log compacts once it passes COMPACT_ENTRIES, so at any moment it may hold a few more.
    assert.ok(restarted.logEntries < 2 * COMPACT_ENTRIES, `a restart reads ${restarted.logEntries} entries, not the ${history}+ of the history`)
  })

  it('a generation announced with no snapshot behind it (its compactor gone) loses nothing: the nodes write their own', async () => {
    const from = (await tagGeneration(a)).current
    await write(b, 'app', 't0', 'before-the-announcement')
    await converged([a, b, c], expected, from)
    // What a compactor that stopped right after its announcement leaves: a generation nobody
    // can fetch a snapshot of.
    const pubsub = a.node.fleet?.mesh.helia.libp2p.services.pubsub
    assert.ok(pubsub !== undefined)
    await pubsub.publish('shoal/catalogue/generations/1', new TextEncoder().encode(JSON.stringify({ 'shoal.tags': from + 1 })))
    await eventually(async () => (await tagGeneration(b)).current === from + 1 ? true : undefined, 10_000, 'b to move to the announced generation')
    await write(c, 'app', 't1', 'after-the-announcement')
    await converged([a, b, c], expected, from + 1)
    const logged = [a, b, c].flatMap(node => node.logs).filter(line => line.msg === 'no snapshot of the current catalogue generation arrived: wrote one')
    assert.ok(logged.length > 0, 'a node wrote a snapshot itself')
  })
})

describe('catalogue compaction with no grace', () => {
  it('loses no acknowledged write or delete made while a compaction switches generations', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-compact-'))
    // Grace 0: the superseded generation is dropped at the first look after the switch, so a
    // write that began before the switch and ended after that look had to be waited for.
    const node = await startTestNode({ dataDir: dir, config: { ...config, catalogueGraceSeconds: 0, mesh: true } })
    try {
      const catalogue = catalogueOf(node)
      const expected = new Map<string, string>()
      for (let i = 0; i < 400; i++) {
        const repository = `app${i % 7}`
        const name = `t${i % 5}`
        await catalogue.putTag(tag(repository, name, `v${i}`))
        expected.set(`${repository}:${name}`, `sha256:v${i}`)
        if (i % 10 === 0) {
          await catalogue.putTag(tag(repository, `pr-${i}`, `v${i}`))
          await catalogue.deleteTag(repository, `pr-${i}`)
        }
      }
      assert.ok((await tagGeneration(node)).current >= 3, 'several compactions happened while the writes went on')
      const tags = await tagsOn(node)
      const wrong = [...new Set([...expected.keys(), ...tags.keys()])].filter(key => expected.get(key) !== tags.get(key))
      assert.deepEqual(wrong.map(key => `${key}: ${tags.get(key) ?? 'none'} instead of ${expected.get(key) ?? 'none'}`), [])
    } finally {
      await node.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})
