// Membership as a fleet lives it (issue 11): presence travels between members and leaves nothing on disk;
// a node that stops answering for a while is silent, not gone; a node gone for the grace is
// placed around and can be forgotten; a late joiner learns everyone within seconds.
import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { FleetNode } from '../../src/mesh/membership.ts'
import { shoal } from '../support/cli.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { startNodeProcess, type RegistryProcess } from '../support/node-process.ts'
import { RegistryClient } from '../support/registry-client.ts'

async function nodesSeenBy (url: string): Promise<FleetNode[]> {
  return ((await (await fetch(`${url}/api/v1/nodes`)).json()) as { nodes: FleetNode[] }).nodes
}

async function standingOf (url: string, id: string): Promise<string | undefined> {
  return (await nodesSeenBy(url)).find(node => node.id === id)?.standing
}

/** Files and bytes under a directory, recursively. */
async function usage (dir: string): Promise<{ files: number, bytes: number }> {
  const total = { files: 0, bytes: 0 }
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    total.files++
    total.bytes += (await stat(join(entry.parentPath, entry.name))).size
  }
  return total
}

const idOf = (node: TestNode): string => node.node.fleet?.peerId ?? assert.fail('not in a mesh')

describe('membership on a fleet with one node in its own process', () => {
  const fast = { heartbeatSeconds: 1, goneAfterSeconds: 6 }
  let a: TestNode
  let b: RegistryProcess
  let bId: string
  let bDir: string
  let c: TestNode
  let cStopped = false

  before(async () => {
    a = await startTestNode({ config: { ...fast, mesh: true, name: 'a' } })
    const peer = a.node.fleet?.addresses[0] ?? assert.fail('no address')
    bDir = await mkdtemp(join(tmpdir(), 'shoal-member-'))
    b = await startNodeProcess({ dataDir: bDir, args: ['--peer', peer, '--name', 'b', '--heartbeat-seconds', '1', '--gone-after-seconds', '6'] })
    c = await startTestNode({ config: { ...fast, peers: [peer], name: 'c' } })
    const named = await eventually(async () => {
      const nodes = await nodesSeenBy(a.url)
      return nodes.length === 3 && nodes.every(node => node.standing === 'live') ? nodes : undefined
    }, 15_000, 'three live nodes')
    bId = named.find(node => node.name === 'b')?.id ?? assert.fail('no b')
  })
  after(async () => {
    await b?.stop()
    if (!cStopped) await c?.stop()
    await a?.stop()
    await rm(bDir, { recursive: true, force: true })
  })

  it('presence every second writes nothing to the catalogue or the blockstore', async () => {
    // Let start-up writes (identities) settle, then watch a few heartbeats go by.
    await new Promise(resolve => setTimeout(resolve, 2_000))
    const before = { blocks: await usage(join(a.dataDir, 'blocks')), orbitdb: await usage(join(a.dataDir, 'orbitdb')) }
    await new Promise(resolve => setTimeout(resolve, 5_000))
    const afterwards = { blocks: await usage(join(a.dataDir, 'blocks')), orbitdb: await usage(join(a.dataDir, 'orbitdb')) }
    assert.deepEqual(afterwards.blocks, before.blocks)
    assert.equal(afterwards.orbitdb.files, before.orbitdb.files)
    // Presence still flows: b's heartbeat is at most a few seconds old.
    const seen = (await nodesSeenBy(a.url)).find(node => node.id === bId)
    assert.ok(seen?.heartbeatAt !== undefined && Date.now() - Date.parse(seen.heartbeatAt) < 4_000, `b heard lately: ${seen?.heartbeatAt}`)
  })

  it('a node that stops answering for less than the grace is silent, never gone, and live again after', async () => {
    const standings = new Set<string>()
    b.process.kill('SIGSTOP')
    try {
      const until = Date.now() + 5_000
      while (Date.now() < until) {
        standings.add(await standingOf(a.url, bId) ?? 'unknown')
        await new Promise(resolve => setTimeout(resolve, 200))
      }
    } finally {
      b.process.kill('SIGCONT')
    }
    assert.ok(standings.has('silent'), `seen: ${[...standings].join(', ')}`)
    assert.ok(!standings.has('gone'), `seen: ${[...standings].join(', ')}`)
    // Its next presence makes it live; on a CI machine running another test file beside this one
    // that once took more than 5 s.
    await eventually(async () => await standingOf(a.url, bId) === 'live' ? true : undefined, 10_000, 'b live again')
    assert.ok(!a.logs.some(line => line.msg?.toString().startsWith('node gone')), 'a logged no node as gone')
  })

  it('a node gone for the grace is gone; shoal nodes forget refuses a live node and itself, and forgets a gone one everywhere', async () => {
    const cId = idOf(c)
    await c.stop()
    cStopped = true
    await eventually(async () => await standingOf(a.url, cId) === 'gone' ? true : undefined, 15_000, 'c gone on a')
    assert.ok(a.logs.some(line => line.peer === cId && String(line.msg).startsWith('node gone')), 'a said once that c is gone')

    const live = await shoal('nodes', 'forget', bId, '--node', a.url)
    assert.notEqual(live.code, 0)
    assert.match(live.stderr, /is live \(a sign of life \d+ s ago\): stop it first/)
    assert.equal(live.stderr.trim().split('\n').length, 1)
    const self = await shoal('nodes', 'forget', idOf(a), '--node', a.url)
    assert.notEqual(self.code, 0)
    assert.match(self.stderr, /is this node/)
    const unknown = await shoal('nodes', 'forget', '12D3KooWNothingHereAtAll', '--node', a.url)
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.stderr, /no node "12D3KooWNothingHereAtAll"/)

    const forgot = await shoal('nodes', 'forget', cId, '--node', b.url)
    assert.equal(forgot.code, 0, forgot.stderr)
    assert.equal(forgot.stdout.trim(), `forgot node ${cId}`)
    for (const url of [a.url, b.url]) {
      await eventually(async () => (await nodesSeenBy(url)).some(node => node.id === cId) ? undefined : true, 10_000, `c forgotten on ${url}`)
    }
    const listing = await shoal('nodes', '--node', a.url)
    assert.doesNotMatch(listing.stdout, new RegExp(cId))
    assert.match(listing.stdout, new RegExp(`^${bId}  b .* live$`, 'm'))
  })
})

describe('a fleet forgets departed nodes by itself, and a late joiner learns everyone at once', () => {
  const nodes: TestNode[] = []
  after(async () => {
    await Promise.all(nodes.map(async node => { await node.stop() }))
  })

  it('forgets a node gone for forgetAfterHours without anyone asking', async () => {
    const config = { heartbeatSeconds: 1, goneAfterSeconds: 3, forgetAfterHours: 1 / 1800 }
    const first = await startTestNode({ config: { ...config, mesh: true } })
    nodes.push(first)
    const leaving = await startTestNode({ config: { ...config, peers: first.node.fleet?.addresses ?? [] } })
    const leavingId = idOf(leaving)
    // Its identity has reached the catalogue: it was a member, not a passer-by.
    await eventually(async () => (await first.node.fleet?.catalogue.getNode(leavingId)), 15_000, 'the second node\'s identity in the catalogue')
    await leaving.stop()
    // Gone after 3 s, forgotten 2 s later (and the tick may be a second late each time).
    await eventually(async () => (await nodesSeenBy(first.url)).some(node => node.id === leavingId) ? undefined : true, 15_000, 'the departed node forgotten')
    assert.equal((await first.node.fleet?.catalogue.allNodes())?.some(node => node.id === leavingId), false)
  })

  it('a late joiner learns every node\'s holdings within seconds at the default interval', async () => {
    const config = { heartbeatSeconds: 10, goneAfterSeconds: 60 }
    const holder = await startTestNode({ config: { ...config, mesh: true, name: 'holder' } })
    nodes.push(holder)
    await new RegistryClient(holder.url).pushImage('late/app', '1', 'a layer')
    const middle = await startTestNode({ config: { ...config, peers: holder.node.fleet?.addresses ?? [], name: 'middle' } })
    nodes.push(middle)
    // Past the first presences of both: what a late joiner hears now is only the joiners' welcome.
    await new Promise(resolve => setTimeout(resolve, 3_000))
    const started = Date.now()
    // Joins through the middle node only: it learns of the holder from the catalogue and dials it.
    const late = await startTestNode({ config: { ...config, peers: middle.node.fleet?.addresses ?? [], name: 'late' } })
    nodes.push(late)
    const seen = await eventually(async () => {
      const holderSeen = (await nodesSeenBy(late.url)).find(node => node.name === 'holder')
      return holderSeen !== undefined && holderSeen.images.length === 1 && holderSeen.disk !== undefined ? holderSeen : undefined
    }, 8_000, 'the holder\'s presence on the late joiner')
    assert.equal(seen.standing, 'live')
    assert.ok(Date.now() - started < 8_000)
  })

  it('a connected member that libp2p never reported (its identify lost) still gets presence', async () => {
    const config = { heartbeatSeconds: 2, goneAfterSeconds: 60 }
    const holder = await startTestNode({ config: { ...config, mesh: true, name: 'unreported-holder' } })
    nodes.push(holder)
    const other = await startTestNode({ config: { ...config, peers: holder.node.fleet?.addresses ?? [], name: 'unreported' } })
    nodes.push(other)
    await eventually(async () => (await nodesSeenBy(other.url)).find(node => node.name === 'unreported-holder')?.heartbeatAt, 10_000, 'the holder heard by the other node')
    // What a lost identify leaves on a busy machine: the holder's presence link does not count
    // the other node as a member, so its broadcasts pass it by.
    const link = (holder.node.fleet as unknown as { presenceLink: { members: Map<string, unknown> } }).presenceLink
    assert.ok(link.members.delete(idOf(other)))
    await new RegistryClient(holder.url).pushImage('unreported/app', '1', 'a layer')
    await eventually(async () => {
      const holderSeen = (await nodesSeenBy(other.url)).find(node => node.name === 'unreported-holder')
      return holderSeen?.images.length === 1 ? true : undefined
    }, 10_000, 'the holder\'s new image in its presence on the other node')
  })
})
