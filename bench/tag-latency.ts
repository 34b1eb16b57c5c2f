// How long a tag pushed on one node takes to be visible on the others (issue 4: p50 ≤ 1 s).
//
//   node bench/tag-latency.ts [--nodes 3] [--tags 30]
//
// Real nodes in one process on loopback, a real mesh and catalogue. For each tag: a manifest PUT
// on the first node (the clock starts when the PUT is answered), then the time until every other
// node's catalogue reports the tag (its change event), and until its /v2 tags/list shows it.
import { parseArgs } from 'node:util'
import { eventually, startTestNode, type TestNode } from '../test/support/in-process-node.ts'
import { RegistryClient } from '../test/support/registry-client.ts'

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '3' }, tags: { type: 'string', default: '30' } } })
const nodeCount = Number(values.nodes)
const tagCount = Number(values.tags)

const first = await startTestNode({ config: { mesh: true } })
const peers = [first.node.fleet?.mesh.addresses[0] ?? '']
const others: TestNode[] = []
for (let i = 1; i < nodeCount; i++) others.push(await startTestNode({ config: { peers } }))
await eventually(async () => {
  const counts = await Promise.all(others.map(async node => (await node.node.fleet?.nodes())?.length ?? 0))
  return counts.every(count => count === nodeCount) ? true : undefined
}, 30_000, 'the fleet to form')

const registry = new RegistryClient(first.url)
const eventDelays: number[] = []
const listDelays: number[] = []
for (let i = 0; i < tagCount; i++) {
  const tag = `t${i}`
  const seen = others.map(node => new Promise<number>(resolve => {
    const stop = node.node.fleet?.catalogue.onChange(change => {
      if (change.kind === 'tag' && change.key === `bench/app:${tag}`) {
        stop?.()
        resolve(performance.now())
      }
    })
  }))
  await registry.pushImage('bench/app', tag, `layer ${i}`)
  const pushed = performance.now()
  for (const at of await Promise.all(seen)) eventDelays.push(at - pushed)
  await Promise.all(others.map(async node => {
    await eventually(async () => {
      const response = await fetch(`${node.url}/v2/bench/app/tags/list`)
      return response.ok && (await response.json() as { tags: string[] }).tags.includes(tag) ? true : undefined
    }, 10_000, 'the tag in tags/list')
    listDelays.push(performance.now() - pushed)
  }))
  await new Promise(resolve => setTimeout(resolve, 100))
}

const quantile = (values: number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}
const row = (label: string, delays: number[]): string =>
  `| ${label} | ${delays.length} | ${quantile(delays, 0.5).toFixed(0)} | ${quantile(delays, 0.95).toFixed(0)} | ${Math.max(...delays).toFixed(0)} |`
console.log(`Tag visibility, ${nodeCount} nodes on loopback, ${tagCount} tags pushed one after another on one node.\n`)
console.log('| measured until | samples | p50 ms | p95 ms | max ms |')
console.log('|---|---:|---:|---:|---:|')
console.log(row('catalogue change event on each other node', eventDelays))
console.log(row('tags/list on each other node lists it', listDelays))
await Promise.all([first, ...others].map(async node => await node.stop()))
