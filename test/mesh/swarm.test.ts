// Several nodes pulling one image at once share the work: the seeder sends each block about once.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { metricValue } from '../support/metrics.ts'
import { createImageLayout, readLayoutIndex } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const MiB = 1024 * 1024

describe('pulling at once from several nodes', () => {
  let seeder: TestNode
  const pullers: TestNode[] = []
  let work: string
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-swarm-'))
    const fleet = await startFleet(5)
    seeder = fleet[0] as TestNode
    pullers.push(...fleet.slice(1))
  })
  after(async () => {
    await Promise.all([seeder, ...pullers].map(async node => await node?.stop()))
    await rm(work, { recursive: true, force: true })
  })

  it('each node gets the image; the seeder sends under twice its size', async () => {
    const image = await createImageLayout(join(work, 'image'), { layers: [12 * MiB, 12 * MiB], seed: 'swarm' })
    await copyToRegistry(join(work, 'image'), `${seeder.host}/swarm/app:1.0`)
    for (const node of pullers) {
      await eventually(async () => await node.node.fleet?.catalogue.getTag('swarm/app', '1.0'), 10_000, 'the tag everywhere')
    }
    const before = await metricValue(seeder.url, 'shoal_blob_bytes_sent_total')
    await Promise.all(pullers.map(async (node, i) => {
      await copyFromRegistry(`${node.host}/swarm/app:1.0`, join(work, `out-${i}`))
      assert.deepEqual((await readLayoutIndex(join(work, `out-${i}`))).manifests.map(m => m.digest), [image.manifestDigest])
    }))
    const sent = await metricValue(seeder.url, 'shoal_blob_bytes_sent_total') - before
    assert.ok(sent < 2 * image.totalSize, `the seeder sent ${(sent / MiB).toFixed(1)} MiB for a ${(image.totalSize / MiB).toFixed(1)} MiB image pulled by ${pullers.length} nodes`)
  })
})
