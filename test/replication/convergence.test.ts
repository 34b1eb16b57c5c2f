// Strategies on a fleet of five real nodes: each node works out its own share, fetches what it
// must hold, drops (and collects) what it no longer needs, and takes over for a node that left.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { blockBytes } from '../support/disk.ts'

const MiB = 1024 * 1024

interface DesiredNode { node: string, name: string, state: string, bytesDone?: number, bytesTotal?: number, reason?: string }
interface Status { desired: DesiredNode[], extra: Array<{ node: string }> }

/** Bytes of every block file under a node's data directory. */
async function nodeBlockBytes (node: TestNode): Promise<number> {
  return await blockBytes(join(node.dataDir, 'blocks'))
}

describe('replication strategies on five nodes', () => {
  let nodes: TestNode[]
  const idOf = (node: TestNode): string => node.node.fleet?.mesh.peerId ?? ''
  const byId = (id: string): TestNode => nodes.find(node => idOf(node) === id) ?? assert.fail(`no node ${id}`)

  before(async () => {
    nodes = await startFleet(5, index => ({
      name: `n${index}`,
      labels: { zone: index % 2 === 1 ? 'eu' : 'us' },
      heartbeatSeconds: 2,
      // Short for the test of a node leaving; busy nodes must still never be taken for gone.
      goneAfterSeconds: 20,
      gcGraceSeconds: 0
    }))
  })
  after(async () => {
    await Promise.all(nodes.map(async node => { await node.stop() }))
  })

  /** Pushes an image of random bytes to node 0 and waits until every node sees its tag. */
  async function pushImage (repository: string, bytes: number): Promise<{ imageCid: string, size: number }> {
    const layer = randomBytes(Math.ceil(bytes * 3 / 4)).toString('base64').slice(0, bytes)
    const { digest } = await new RegistryClient(nodes[0]!.url).pushImage(repository, '1', layer)
    let imageCid = ''
    for (const node of nodes) {
      const tag = await eventually(async () => {
        const current = await node.node.fleet?.catalogue.getTag(repository, '1')
        return current?.digest === digest ? current : undefined
      }, 10_000, `the tag on ${node.url}`)
      imageCid = tag.imageCid
    }
    return { imageCid, size: bytes }
  }

  async function api (node: TestNode, method: string, path: string, body?: unknown): Promise<Response> {
    return await fetch(`${node.url}/api/v1${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
  }

  async function createStrategy (body: object): Promise<string> {
    const response = await api(nodes[0]!, 'POST', '/strategies', body)
    assert.equal(response.status, 201, await response.clone().text())
    return ((await response.json()) as { strategy: { id: string } }).strategy.id
  }

  async function statusOf (node: TestNode, id: string): Promise<Status> {
    const response = await api(node, 'GET', `/strategies/${id}/status`)
    assert.equal(response.status, 200)
    return await response.json() as Status
  }

  /** Waits until the strategy's nodes (as `node` sees them) all report the image held. */
  async function heldEverywhere (id: string, count: number, node = nodes[0]!, timeoutMs = 20_000): Promise<string[]> {
    const status = await eventually(async () => {
      const current = await statusOf(node, id)
      return current.desired.length === count && current.desired.every(d => d.state === 'held') ? current : undefined
    }, timeoutMs, `strategy ${id} held on ${count} nodes`)
    return status.desired.map(d => d.node).sort()
  }

  /**
   * Waits until exactly `expected` hold the image (a node that missed heartbeats under load is
   * briefly taken as gone, and its share placed elsewhere until it is back).
   */
  async function heldBy (imageCid: string, expected: string[]): Promise<void> {
    const want = [...new Set(expected)].sort()
    let last: string[] = []
    await eventually(async () => {
      last = await holders(imageCid)
      return last.join() === want.join() ? true : undefined
    }, 20_000, `exactly ${want.length} holders`).catch(() => assert.deepEqual(last, want))
  }

  /** The nodes whose own records say they hold the image whole. */
  async function holders (imageCid: string, among = nodes): Promise<string[]> {
    const held: string[] = []
    for (const node of among) if ((await node.node.metadata.listImages()).includes(imageCid)) held.push(idOf(node))
    return held.sort()
  }

  it('40 % puts the image on exactly two nodes, the same two whichever node is asked', async () => {
    const { imageCid } = await pushImage('conv/p40', 2 * MiB)
    const id = await createStrategy({ image: 'conv/p40:1', kind: 'percentage', percentage: 40 })
    const placed = await heldEverywhere(id, 2)
    for (const node of nodes) assert.deepEqual((await statusOf(node, id)).desired.map(d => d.node).sort(), placed)
    // Node 0 holds it because it was pushed there; no one else but the two placed.
    await heldBy(imageCid, [...placed, idOf(nodes[0]!)])
  })

  it('a target strategy puts it on the node named', async () => {
    const { imageCid } = await pushImage('conv/target', MiB)
    const id = await createStrategy({ image: 'conv/target:1', kind: 'target', target: 'n3' })
    assert.deepEqual(await heldEverywhere(id, 1), [idOf(nodes[3]!)])
    assert.ok((await holders(imageCid)).includes(idOf(nodes[3]!)))
  })

  it('replicas: 3, all, and a label selector', async () => {
    const three = await pushImage('conv/three', MiB)
    const everywhere = await pushImage('conv/all', MiB)
    const eu = await pushImage('conv/eu', MiB)
    const threeId = await createStrategy({ image: 'conv/three:1', kind: 'replicas', replicas: 3 })
    const allId = await createStrategy({ image: 'conv/all:1', kind: 'all' })
    const euId = await createStrategy({ image: 'conv/eu:1', kind: 'labels', selector: { zone: 'eu' } })
    const placedThree = await heldEverywhere(threeId, 3)
    assert.deepEqual(await heldEverywhere(allId, 5), nodes.map(idOf).sort())
    assert.deepEqual(await heldEverywhere(euId, 2), [idOf(nodes[1]!), idOf(nodes[3]!)].sort())
    await heldBy(three.imageCid, [...placedThree, idOf(nodes[0]!)])
    await heldBy(everywhere.imageCid, nodes.map(idOf))
    await heldBy(eu.imageCid, [idOf(nodes[0]!), idOf(nodes[1]!), idOf(nodes[3]!)])
  })

  it('removing a strategy drops the image and its disk space comes back', async () => {
    const image = await pushImage('conv/drop', 8 * MiB)
    const id = await createStrategy({ image: 'conv/drop:1', kind: 'all' })
    await heldEverywhere(id, 5)
    const others = nodes.slice(1)
    const before = await Promise.all(others.map(nodeBlockBytes))
    assert.equal((await api(nodes[2]!, 'DELETE', `/strategies/${id}`)).status, 204)
    await eventually(async () => ((await holders(image.imageCid, others)).length === 0 ? true : undefined), 20_000, 'the image gone from nodes 1-4')
    const freed = await eventually(async () => {
      const now = await Promise.all(others.map(nodeBlockBytes))
      const freedBytes = now.map((bytes, index) => before[index]! - bytes)
      return freedBytes.every(bytes => bytes >= 0.9 * image.size) ? freedBytes : undefined
    }, 20_000, 'every node that dropped the image to free at least 90 % of its bytes')
    assert.equal(freed.length, 4)
    // The node it was pushed to keeps it.
    assert.deepEqual(await holders(image.imageCid, [nodes[0]!]), [idOf(nodes[0]!)])
  })

  it('a strategy on a tag follows the tag to its new image', async () => {
    const first = await pushImage('conv/follow', MiB)
    const id = await createStrategy({ image: 'conv/follow:1', kind: 'replicas', replicas: 2 })
    const placed = await heldEverywhere(id, 2)
    const second = await pushImage('conv/follow', MiB)
    assert.notEqual(second.imageCid, first.imageCid)
    await eventually(async () => {
      const status = await statusOf(nodes[0]!, id)
      return status.desired.every(d => d.state === 'held' && (d as { imageCid?: string }).imageCid === second.imageCid) ? true : undefined
    }, 20_000, 'the strategy held at the new image')
    // The old image stays only where it was pushed.
    await heldBy(first.imageCid, [idOf(nodes[0]!)])
    await heldBy(second.imageCid, [...placed, idOf(nodes[0]!)])
  })

  it('when a node holding a replica leaves, another takes its place', async () => {
    const image = await pushImage('conv/failover', 2 * MiB)
    const id = await createStrategy({ image: 'conv/failover:1', kind: 'replicas', replicas: 2 })
    const placed = await heldEverywhere(id, 2)
    // Stop a holder other than node 0, through which the others joined the mesh.
    const leaving = byId(placed.find(node => node !== idOf(nodes[0]!)) ?? assert.fail('no holder to stop'))
    const survivors = nodes.filter(node => node !== leaving)
    const leavingId = idOf(leaving)
    // Until now nobody was taken for gone, however busy the machine.
    assert.deepEqual(nodesSaidGone(), [])
    await leaving.stop()
    nodes = survivors
    // Gone after 20 s without a sign of life, then one fetch of 2 MiB.
    const status = await eventually(async () => {
      const current = await statusOf(survivors[0]!, id)
      const replaced = current.desired.length === 2 && !current.desired.some(d => d.node === leavingId)
      if (replaced && current.desired.every(d => d.state === 'held')) return current
      // Said when this times out: how far it got, and who was taken for gone.
      throw new Error(`status ${JSON.stringify(current.desired)}; said gone: ${nodesSaidGone().join(', ') || 'nobody'}`)
    }, 50_000, 'a survivor to hold the replica of the node that left')
    const now = status.desired.map(d => d.node)
    assert.equal((await holders(image.imageCid, survivors)).filter(node => now.includes(node)).length, 2)
    assert.deepEqual(nodesSaidGone(), [leavingId])
  })

  /** Every node any node logged as gone. */
  function nodesSaidGone (): string[] {
    return [...new Set(nodes.flatMap(node => node.logs.filter(line => String(line.msg).startsWith('node gone')).map(line => String(line.peer))))]
  }
})
