// How long an IPNS name published on one node takes to resolve to its new value on another
// (issue 14: p50 ≤ 1 s).
//
//   node bench/ipns-resolve.ts [--nodes 3] [--rounds 10]
//
// Real nodes in one process on loopback, a real mesh. Two images are pushed to the publisher;
// each round points its name at the other one (POST /api/v1/names/publish; the clock starts when
// the request is sent) and polls GET /ipns/<name> on a second node every 5 ms until it redirects
// to the new image. Also timed: the publish request itself (signing, writing it down, the
// broadcast and the DHT put), and the delegated routing API answering the new record.
import { parseArgs } from 'node:util'
import { unmarshalIPNSRecord } from 'ipns'
import { startFleet } from '../test/support/in-process-node.ts'
import { RegistryClient } from '../test/support/registry-client.ts'

const { values } = parseArgs({ options: { nodes: { type: 'string', default: '3' }, rounds: { type: 'string', default: '10' } } })
const nodeCount = Number(values.nodes)
const rounds = Number(values.rounds)
const POLL_MS = 5

const fleet = await startFleet(nodeCount)
const publisher = fleet[1] ?? fleet[0]
const resolver = fleet[nodeCount - 1]
if (publisher === undefined || resolver === undefined || publisher === resolver) throw new Error('at least two nodes')

const registry = new RegistryClient(publisher.url)
const imageCids: string[] = []
for (const tag of ['a', 'b']) {
  const { response } = await registry.pushImage('bench/names', tag, `layer ${tag}`)
  imageCids.push(response.headers.get('shoal-image-cid') ?? '')
}

// The publisher's own name (its peer id), known before the first publish.
const keys = await (await fetch(`${publisher.url}/api/v1/names/keys`)).json() as { keys: Array<{ key: string, name: string }> }
const name = keys.keys.find(key => key.key === 'self')?.name ?? ''

const publishMs: number[] = []
const redirectMs: number[] = []
const recordMs: number[] = []
for (let round = 0; round < rounds; round++) {
  const tag = round % 2 === 0 ? 'a' : 'b'
  const expected = `/ipfs/${imageCids[round % 2] ?? ''}`
  const started = performance.now()
  const publishing = fetch(`${publisher.url}/api/v1/names/publish`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ image: `bench/names:${tag}` }) })
    .then(async response => {
      if (!response.ok) throw new Error(`publish: ${response.status} ${await response.text()}`)
      publishMs.push(performance.now() - started)
    })
  await Promise.all([
    publishing,
    poll(async () => {
      const response = await fetch(`${resolver.url}/ipns/${name}`, { redirect: 'manual' })
      await response.arrayBuffer()
      return response.headers.get('location') === expected
    }).then(() => { redirectMs.push(performance.now() - started) }),
    poll(async () => {
      const response = await fetch(`${resolver.url}/routing/v1/ipns/${name}`)
      return response.ok && unmarshalIPNSRecord(new Uint8Array(await response.arrayBuffer())).value === expected
    }).then(() => { recordMs.push(performance.now() - started) })
  ])
  await new Promise(resolve => setTimeout(resolve, 200))
}

async function poll (check: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + 30_000
  while (performance.now() < deadline) {
    if (await check().catch(() => false)) return
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
  throw new Error('the name did not resolve to its new value within 30 s')
}

const quantile = (samples: number[], q: number): number => {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN
}
const row = (label: string, samples: number[]): string =>
  `| ${label} | ${samples.length} | ${quantile(samples, 0.5).toFixed(0)} | ${quantile(samples, 0.9).toFixed(0)} | ${Math.max(...samples).toFixed(0)} |`
console.log(`IPNS publish to resolve, ${nodeCount} nodes on loopback, ${rounds} publishes of one name on one node, resolved on another.\n`)
console.log('| measured from the publish request until | samples | p50 ms | p90 ms | max ms |')
console.log('|---|---:|---:|---:|---:|')
console.log(row('GET /ipns/<name> on another node redirects to the new image', redirectMs))
console.log(row('GET /routing/v1/ipns/<name> on another node answers the new record', recordMs))
console.log(row('the publish request is answered (broadcast and DHT put done)', publishMs))
await Promise.all(fleet.map(async node => await node.stop()))
