// Real nodes, real libp2p, real OrbitDB on loopback: membership, the shared catalogue, pnet.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { newSwarmKey } from '../../src/mesh/swarm-key.ts'
import { REPO_ROOT } from '../support/node-process.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { openTagEvents } from '../support/tag-events.ts'

const run = promisify(execFile)
const peersOf = async (node: TestNode): Promise<string[]> => {
  const answer = await (await fetch(`${node.url}/api/v1/peers`)).json() as { peers: Array<{ id: string }> }
  return answer.peers.map(p => p.id)
}
const tagsOf = async (node: TestNode, repository: string): Promise<string[] | undefined> => {
  const response = await fetch(`${node.url}/v2/${repository}/tags/list`)
  return response.ok ? (await response.json() as { tags: string[] }).tags : undefined
}

describe('a fleet of three nodes', () => {
  let a: TestNode
  let b: TestNode
  let c: TestNode
  let keyDir: string
  before(async () => {
    keyDir = await mkdtemp(join(tmpdir(), 'shoal-keys-'))
    // The key as a user makes it.
    await writeFile(join(keyDir, 'fleet.key'), (await run(process.execPath, ['src/cli/main.ts', 'swarm-key'], { cwd: REPO_ROOT })).stdout)
    await writeFile(join(keyDir, 'other.key'), newSwarmKey())
    const swarmKeyFile = join(keyDir, 'fleet.key')
    a = await startTestNode({ config: { mesh: true, swarmKeyFile, name: 'a', labels: { zone: 'eu' } } })
    const peers = [a.node.fleet?.mesh.addresses[0] ?? '']
    b = await startTestNode({ config: { peers, swarmKeyFile, name: 'b' } })
    c = await startTestNode({ config: { peers, swarmKeyFile, name: 'c' } })
  })
  after(async () => {
    await Promise.all([a, b, c].map(async node => await node?.stop()))
    await rm(keyDir, { recursive: true, force: true })
  })

  it('members connect and list each other with latency', async () => {
    const ids = [b, c].map(node => node.node.fleet?.mesh.peerId)
    type Answer = { self: { id: string }, peers: Array<{ id: string, latencyMs?: number, addresses: string[] }> }
    const answer = await eventually(async () => {
      const current = await (await fetch(`${a.url}/api/v1/peers`)).json() as Answer
      return current.peers.length === 2 && current.peers.every(p => typeof p.latencyMs === 'number') ? current : undefined
    }, 10_000, 'A to see B and C, with latency')
    assert.deepEqual(answer.peers.map(p => p.id).sort(), ids.sort())
    assert.equal(answer.self.id, a.node.fleet?.mesh.peerId)
    assert.ok(answer.peers.every(p => p.addresses.length > 0))
  })

  it('shoal peers prints the peers with their latency', async () => {
    const { stdout } = await run(process.execPath, ['src/cli/main.ts', 'peers', '--node', a.url], { cwd: REPO_ROOT })
    assert.match(stdout, new RegExp(`^self: ${a.node.fleet?.mesh.peerId ?? ''}$`, 'm'))
    for (const node of [b, c]) assert.match(stdout, new RegExp(`^${node.node.fleet?.mesh.peerId ?? ''}  (\\d+ ms|-)  /ip4/127\\.0\\.0\\.1/tcp/\\d+`, 'm'))
  })

  it('a tag pushed on one node is listed on every node, and a delete on another removes it everywhere', async () => {
    // C's event stream tells of the tag once C answers it, and of the delete made on C.
    const events = await openTagEvents(c.url)
    const registry = new RegistryClient(a.url)
    const pushed = await registry.pushImage('fleet/app', '1.0', 'fleet layer')
    try {
      await events.next(change => change.repository === 'fleet/app' && change.tag === '1.0' && !change.deleted, 10_000)
      assert.deepEqual(await tagsOf(c, 'fleet/app'), ['1.0'])
    } finally {
      events.close()
    }
    for (const node of [b, c]) {
      const tags = await eventually(async () => (await tagsOf(node, 'fleet/app'))?.includes('1.0') === true ? await tagsOf(node, 'fleet/app') : undefined, 10_000, 'the tag to replicate')
      assert.deepEqual(tags, ['1.0'])
    }
    const catalog = await (await fetch(`${c.url}/v2/_catalog`)).json() as { repositories: string[] }
    assert.ok(catalog.repositories.includes('fleet/app'))
    const record = await c.node.fleet?.catalogue.getTag('fleet/app', '1.0')
    assert.equal(record?.digest, pushed.digest)
    assert.equal(record?.node, a.node.fleet?.mesh.peerId)

    assert.equal((await fetch(`${c.url}/v2/fleet/app/manifests/1.0`, { method: 'DELETE' })).status, 202)
    await eventually(async () => (await a.node.fleet?.catalogue.getTag('fleet/app', '1.0')) === undefined ? true : undefined, 10_000, 'the delete to reach A')
    assert.deepEqual(await tagsOf(a, 'fleet/app'), [])
    assert.equal((await fetch(`${a.url}/v2/fleet/app/manifests/1.0`)).status, 404)
  })

  it('the inventory lists every node with its URL and labels', async () => {
    const nodes = await eventually(async () => {
      const answer = await (await fetch(`${b.url}/api/v1/nodes`)).json() as { nodes: Array<{ name: string, url: string, labels: object, silent: boolean }> }
      return answer.nodes.length === 3 ? answer.nodes : undefined
    }, 10_000, 'three inventory records')
    assert.deepEqual(nodes.map(n => n.name), ['a', 'b', 'c'])
    assert.equal(nodes[0]?.url, a.url)
    assert.deepEqual(nodes[0]?.labels, { zone: 'eu' })
    assert.ok(nodes.every(n => !n.silent))
  })

  it('a node with another swarm key stays outside and says so in one line', async () => {
    const outsider = await startTestNode({ config: { peers: [a.node.fleet?.mesh.addresses[0] ?? ''], swarmKeyFile: join(keyDir, 'other.key') } })
    try {
      const warning = await eventually(async () => outsider.logs.find(line => String(line.msg).startsWith('cannot connect to peer')), 15_000, 'the warning')
      assert.match(String(warning.msg), /swarm key differs/)
      assert.equal(outsider.logs.filter(line => String(line.msg).startsWith('cannot connect to peer')).length, 1)
      assert.deepEqual(await peersOf(outsider), [])
      assert.ok(!(await peersOf(a)).includes(outsider.node.fleet?.mesh.peerId ?? ''))
    } finally {
      await outsider.stop()
    }
  })

  it('a node that joins later receives the catalogue', async () => {
    await new RegistryClient(a.url).pushImage('fleet/early', 'v1', 'early layer')
    const late = await startTestNode({ config: { peers: [a.node.fleet?.mesh.addresses[0] ?? ''], swarmKeyFile: join(keyDir, 'fleet.key') } })
    try {
      const tags = await eventually(async () => await tagsOf(late, 'fleet/early'), 10_000, 'the late joiner to see the tag')
      assert.deepEqual(tags, ['v1'])
      // Stopping before the others have the late node's OrbitDB identity would leave their
      // catalogue waiting out OrbitDB's block timeout (30 s) for a block nobody else holds.
      const lateId = late.node.fleet?.mesh.peerId
      await eventually(async () => (await a.node.fleet?.nodes())?.find(node => node.id === lateId), 10_000, 'A to list the late node')
    } finally {
      await late.stop()
    }
  })

  it('a restarted node keeps its identity and the catalogue', async () => {
    const registry = new RegistryClient(b.url)
    await registry.pushImage('fleet/kept', 'v1', 'kept layer')
    const id = b.node.fleet?.mesh.peerId
    const dataDir = b.dataDir
    await b.node.stop()
    b = await startTestNode({ dataDir, config: { peers: [a.node.fleet?.mesh.addresses[0] ?? ''], swarmKeyFile: join(keyDir, 'fleet.key'), name: 'b' } })
    assert.equal(b.node.fleet?.mesh.peerId, id)
    assert.deepEqual(await tagsOf(b, 'fleet/kept'), ['v1'])
    assert.equal((await fetch(`${b.url}/v2/fleet/kept/manifests/v1`)).status, 200)
  })
})
