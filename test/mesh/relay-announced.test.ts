// A relay for a blob its node has announced it will pull (the manifest was read, the blob's reads
// have not begun: a strategy's fetch reads three blobs at a time) finds the blob's holders through
// its image at once. It used to look the blob itself up, which no presence lists, and wait out the
// whole lookup (~7 s) first: every `all` convergence stalled that long (bench/convergence.ts).
// A relay that knows no image for the blob answers at once: retrying a lookup of the blob held
// the asking peer ~7 s as well (the config blob, which skopeo reads last: bench/fleet.ts --timeline).
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import * as dagPb from '@ipld/dag-pb'
import { CID } from 'multiformats/cid'
import { ranksAbove } from '../../src/mesh/relay-tree.ts'
import { newSwarmKey } from '../../src/mesh/swarm-key.ts'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient, sha256 } from '../support/registry-client.ts'

const MiB = 1024 * 1024
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
/** Well under the ~7 s the lookup took, well over a block's trip on a busy machine. */
const PROMPT_MS = 3_000

describe('a relay for a blob announced but not yet read', () => {
  let work: string
  let seeder: TestNode
  let relay: TestNode
  let blobRoot: CID

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-relay-announced-'))
    const swarmKeyFile = join(work, 'swarm.key')
    await writeFile(swarmKeyFile, newSwarmKey())
    ;[seeder, relay] = await startFleet(2, { swarmKeyFile }) as [TestNode, TestNode]
    const layer = randomBytes(3 * MiB)
    const digest = sha256(layer)
    await new RegistryClient(seeder.url).pushImage('relay/app', '1.0', layer)
    await eventually(async () => await relay.node.fleet?.catalogue.getTag('relay/app', '1.0'), 10_000, 'the tag on the relay')
    // The manifest GET adopts the image and announces the pull of its blobs; none is read.
    const adopted = await fetch(`${relay.url}/v2/relay/app/manifests/1.0`, { headers: { accept: OCI_MANIFEST } })
    assert.equal(adopted.status, 200, await adopted.text())
    const record = await relay.node.metadata.getBlob(digest)
    assert.equal(record?.remote, true)
    blobRoot = CID.parse(record?.cid ?? '')
  })
  after(async () => {
    await Promise.all([seeder?.stop(), relay?.stop()])
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  /** The relay asked for `root`'s first leaf by a puller it must serve: one that ranks above it in that block's tree. */
  async function askForFirstLeaf (root: CID): Promise<{ leaf: CID, response: Response, elapsed: number }> {
    const leaf = dagPb.decode(await seeder.node.blockstore.getBytes(root)).Links[0]?.Hash as CID
    const relayId = relay.node.fleet?.peerId ?? ''
    let asker = ''
    for (let i = 0; asker === ''; i++) if (ranksAbove(relayId, `12D3KooWasker${i}`, root.toString(), leaf.multihash.digest)) asker = `12D3KooWasker${i}`
    const started = performance.now()
    const response = await fetch(`${relay.url}/ipfs/${leaf.toString()}`, {
      headers: { accept: 'application/vnd.ipld.raw', 'shoal-peer': asker, 'shoal-root': root.toString() }
    })
    return { leaf, response, elapsed: performance.now() - started }
  }

  it('fetches a block for a peer ranked above it from the holders at once', async () => {
    const { leaf, response, elapsed } = await askForFirstLeaf(blobRoot)
    assert.equal(response.status, 200, await response.clone().text())
    const bytes = Buffer.from(await response.arrayBuffer())
    assert.deepEqual(createHash('sha256').update(bytes).digest(), Buffer.from(leaf.multihash.digest), 'the block asked for')
    assert.ok(elapsed < PROMPT_MS, `relayed in ${elapsed.toFixed(0)} ms`)
  })

  it('answers at once for a blob whose image it does not know (a pull announced long ago), so the peer asks elsewhere', async () => {
    // A second image the relay never read: it knows no image for the blob, as when its own
    // announcement expired while the asking peer still ranks it.
    const layer = randomBytes(2 * MiB)
    const digest = sha256(layer)
    await new RegistryClient(seeder.url).pushImage('relay/other', '1.0', layer)
    const root = CID.parse((await seeder.node.metadata.getBlob(digest))?.cid ?? '')
    const { response, elapsed } = await askForFirstLeaf(root)
    assert.equal(response.status, 404, await response.clone().text())
    assert.ok(elapsed < PROMPT_MS, `answered in ${elapsed.toFixed(0)} ms`)
  })
})
