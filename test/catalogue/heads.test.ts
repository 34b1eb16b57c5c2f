// The nodes database keeps few heads: every newcomer writes its identity at once, before it has
// the others' in view, and each unmerged head is one more message in every announcement of all
// heads. Past four, the lowest-id member merges them by writing its own identity again.
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'

async function nodeHeads (node: TestNode): Promise<number> {
  const generations = await node.node.fleet?.catalogue.generations()
  const nodes = generations?.find(generation => generation.name === 'shoal.nodes')
  assert.ok(nodes !== undefined)
  return nodes.heads
}

describe('the nodes database\'s heads', () => {
  const nodes: TestNode[] = []
  after(async () => { await Promise.all(nodes.map(async node => { await node.stop() })) })

  it('six identities written at once end as at most four heads on every node, all six kept', async () => {
    const first = await startTestNode({ config: { mesh: true } })
    nodes.push(first)
    const peers = first.node.fleet?.addresses ?? []
    // Five newcomers at once: each writes its identity without the others'.
    nodes.push(...await Promise.all(Array.from({ length: 5 }, async () => await startTestNode({ config: { peers } }))))
    for (const node of nodes) {
      await eventually(async () => (await node.node.fleet?.catalogue.allNodes())?.length === 6 ? true : undefined, 20_000, 'six identities')
    }
    const merged = await eventually(async () => {
      const heads = await Promise.all(nodes.map(nodeHeads))
      return heads.every(count => count <= 4) ? heads : undefined
    }, 30_000, 'at most four heads on every node')
    assert.ok(merged.every(count => count >= 1))
    for (const node of nodes) assert.equal((await node.node.fleet?.catalogue.allNodes())?.length, 6)
  })
})
