// The strategy service over in-memory stand-ins for the catalogue and the inventory: what it
// stores, refuses, and reports from the nodes' records.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { TagRecord } from '../../src/catalogue/catalogue.ts'
import type { PlacementState } from '../../src/mesh/presence.ts'
import { fleetImageResolver, listFleetImages, listLocalImages, parseImageReference } from '../../src/replication/images.ts'
import { place } from '../../src/replication/placement.ts'
import { NodeNotFoundError, StrategyNotFoundError, StrategyService, type ListedNode, type StrategyStore } from '../../src/replication/strategy-service.ts'
import { InvalidStrategyError, type Strategy } from '../../src/replication/strategy.ts'

const DIGEST = `sha256:${'ab'.repeat(32)}`
const LOCAL_DIGEST = `sha256:${'cd'.repeat(32)}`
const IMAGE_CID = 'bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi'
const OTHER_CID = 'bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy'

const TAG: TagRecord = {
  repository: 'lib/busybox', tag: '1.36', digest: DIGEST, mediaType: 'application/vnd.oci.image.manifest.v1+json',
  imageCid: IMAGE_CID, node: 'n1', pushedAt: '2025-01-01T00:00:00.000Z'
}

function node (id: string, fields: Partial<ListedNode> = {}): ListedNode {
  return {
    id, name: `name-${id}`, url: `http://${id}`, addresses: [], labels: {}, disk: { usedBytes: 0, freeBytes: 0 },
    images: [], heartbeatAt: '2025-01-01T00:00:00.000Z', standing: 'live', silent: false, gone: false, self: false, ...fields
  }
}

class MemoryStore implements StrategyStore {
  readonly strategies = new Map<string, Strategy>()
  async putStrategy (strategy: Strategy): Promise<void> { this.strategies.set(strategy.id, strategy) }
  async deleteStrategy (id: string): Promise<void> { this.strategies.delete(id) }
  async getStrategy (id: string): Promise<Strategy | undefined> { return this.strategies.get(id) }
  async allStrategies (): Promise<Strategy[]> { return [...this.strategies.values()] }
}

function setup (nodes: ListedNode[], tags: TagRecord[] = [TAG]) {
  const store = new MemoryStore()
  let ids = 0
  const service = new StrategyService({
    store,
    nodes: { nodes: async () => nodes },
    tags: { allTags: async () => tags },
    images: fleetImageResolver({ allTags: async () => tags }, {
      getManifest: async digest => digest === LOCAL_DIGEST ? { imageCid: OTHER_CID } : undefined,
      manifestForImage: async cid => cid === OTHER_CID ? LOCAL_DIGEST : undefined
    }),
    now: () => new Date('2025-02-03T04:05:06.000Z'),
    newId: () => `s${++ids}`
  })
  return { store, service }
}

async function refuses (work: Promise<unknown>, type: new (...args: never[]) => Error, message: RegExp): Promise<void> {
  await assert.rejects(work, (err: unknown) => {
    assert.ok(err instanceof type, `a ${type.name}, not ${String(err)}`)
    assert.match(err.message, message)
    return true
  })
}

describe('image references', () => {
  it('tells the three forms apart', () => {
    assert.deepEqual(parseImageReference('lib/busybox:1.36'), { form: 'tag', repository: 'lib/busybox', tag: '1.36' })
    assert.deepEqual(parseImageReference('localhost:5000/app:1'), { form: 'tag', repository: 'localhost:5000/app', tag: '1' })
    assert.deepEqual(parseImageReference(`lib/busybox@${DIGEST}`), { form: 'digest', repository: 'lib/busybox', digest: DIGEST })
    assert.deepEqual(parseImageReference(IMAGE_CID), { form: 'cid', imageCid: IMAGE_CID })
  })

  it('finds an image by tag, by a tagged or local digest, by a tagged or local image CID', async () => {
    const resolver = fleetImageResolver({ allTags: async () => [TAG] }, {
      getManifest: async digest => digest === LOCAL_DIGEST ? { imageCid: OTHER_CID } : undefined,
      manifestForImage: async cid => cid === OTHER_CID ? LOCAL_DIGEST : undefined
    })
    assert.equal(await resolver.exists('lib/busybox:1.36'), true)
    assert.equal(await resolver.exists('lib/busybox:1.37'), false)
    assert.equal(await resolver.exists('other/busybox:1.36'), false)
    assert.equal(await resolver.exists(`any/repo@${DIGEST}`), true)
    assert.equal(await resolver.exists(`any/repo@${LOCAL_DIGEST}`), true)
    assert.equal(await resolver.exists(`any/repo@sha256:${'ef'.repeat(32)}`), false)
    assert.equal(await resolver.exists(IMAGE_CID), true)
    assert.equal(await resolver.exists(OTHER_CID), true)
    assert.equal(await resolver.exists('bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'), false)
  })

  it('lists tagged images with the nodes holding them, and a lone node\'s own tags', async () => {
    const listed = listFleetImages([{ ...TAG, tag: '1.37' }, TAG], [node('b', { images: [IMAGE_CID] }), node('a', { images: [IMAGE_CID] }), node('c', { self: true })])
    assert.deepEqual(listed.map(image => [image.tag, image.heldBy, image.heldHere]), [['1.36', ['a', 'b'], false], ['1.37', ['a', 'b'], false]])
    assert.equal(listFleetImages([TAG], [node('a', { images: [IMAGE_CID], self: true })])[0]?.heldHere, true)
    assert.equal(listed[0]?.node, 'n1')
    const local = await listLocalImages({
      listRepositories: async last => last === undefined ? ['app', 'web'] : [],
      listTags: async (repository, last) => last !== undefined ? [] : repository === 'app' ? ['1', 'gone'] : ['2'],
      getTag: async (repository, tag) => tag === 'gone' ? undefined : `${repository}-${tag}`,
      getManifest: async digest => ({ imageCid: `cid-${digest}` }),
      listImages: async () => ['cid-app-1']
    })
    assert.deepEqual(local, [
      { repository: 'app', tag: '1', digest: 'app-1', imageCid: 'cid-app-1', heldBy: [], heldHere: true },
      { repository: 'web', tag: '2', digest: 'web-2', imageCid: 'cid-web-2', heldBy: [], heldHere: false }
    ])
  })
})

describe('the strategy service', () => {
  const members = ['a', 'b', 'c', 'd', 'e'].map(id => node(id, { labels: id < 'c' ? { zone: 'eu' } : { zone: 'us' } }))

  it('stores a strategy with an id and timestamps, and returns its placement', async () => {
    const { store, service } = setup(members)
    const created = await service.create({ image: 'lib/busybox:1.36', kind: 'percentage', percentage: 40 })
    const expected = place({ kind: 'percentage', image: 'lib/busybox:1.36', percentage: 40 }, members)
    assert.deepEqual(created, {
      strategy: { kind: 'percentage', image: 'lib/busybox:1.36', percentage: 40, id: 's1', createdAt: '2025-02-03T04:05:06.000Z', updatedAt: '2025-02-03T04:05:06.000Z' },
      placement: expected.map(id => ({ node: id, name: `name-${id}` }))
    })
    assert.equal(expected.length, 2)
    assert.deepEqual(store.strategies.get('s1'), created.strategy)
    assert.deepEqual(await service.get('s1'), created.strategy)
  })

  it('accepts DistroMash\'s payloads as they are', async () => {
    const { service } = setup(members)
    const percentage = await service.create(JSON.parse('{"execute": true, "nametag": "lib/busybox:1.36", "percentage": 50, "target": "", "type": "percentage"}'))
    assert.equal(percentage.placement.length, 3)
    const target = await service.create(JSON.parse('{"execute": true, "nametag": "lib/busybox:1.36", "percentage": 0, "target": "c", "type": "target"}'))
    assert.deepEqual(target.placement, [{ node: 'c', name: 'name-c' }])
  })

  it('shows a dry run without storing it', async () => {
    const { store, service } = setup(members)
    const dry = await service.create({ image: 'lib/busybox:1.36', kind: 'labels', selector: { zone: 'eu' }, execute: false })
    assert.deepEqual(dry.strategy, { kind: 'labels', image: 'lib/busybox:1.36', selector: { zone: 'eu' }, id: null })
    assert.deepEqual(dry.placement.map(placed => placed.node).sort(), ['a', 'b'])
    assert.equal(store.strategies.size, 0)
  })

  it('refuses what cannot be placed, counting live members only', async () => {
    const { store, service } = setup([...members.slice(0, 4), node('e', { standing: 'gone', silent: true, gone: true })])
    await refuses(service.create({ image: 'lib/busybox:9', kind: 'all' }), InvalidStrategyError, /^unknown image "lib\/busybox:9"/)
    await refuses(service.create({ image: 'lib/busybox:1.36', kind: 'percentage', percentage: 0 }), InvalidStrategyError, /percentage must be a number from 1 to 100/)
    await refuses(service.create({ image: 'lib/busybox:1.36', kind: 'target', target: 'nobody' }), InvalidStrategyError, /target "nobody" is not a member/)
    await refuses(service.create({ image: 'lib/busybox:1.36', kind: 'target', target: 'e' }), InvalidStrategyError, /target "e" is not a member/)
    await refuses(service.create({ image: 'lib/busybox:1.36', kind: 'replicas', replicas: 5 }), InvalidStrategyError, /replicas 5 is more than the 4 member node\(s\)/)
    assert.equal(store.strategies.size, 0)
    // By digest and by image CID, tagged or only held here.
    for (const image of [`lib/busybox@${DIGEST}`, `x/y@${LOCAL_DIGEST}`, IMAGE_CID, OTHER_CID]) {
      assert.equal((await service.create({ image, kind: 'replicas', replicas: 4 })).placement.length, 4)
    }
  })

  it('lists, removes, and names an unknown id', async () => {
    const { service } = setup(members)
    const first = await service.create({ image: 'lib/busybox:1.36', kind: 'all' })
    await service.create({ image: 'lib/busybox:1.36', kind: 'replicas', replicas: 2 })
    const listed = await service.list()
    assert.deepEqual(listed.map(strategy => strategy.id), ['s1', 's2'])
    assert.deepEqual(listed[0]?.summary, { desired: 5, pending: 5, fetching: 0, held: 0, failed: 0, dropping: 0 })
    await service.delete(first.strategy.id ?? '')
    assert.deepEqual((await service.list()).map(strategy => strategy.id), ['s2'])
    await refuses(service.get('s1'), StrategyNotFoundError, /no strategy "s1"/)
    await refuses(service.delete('s1'), StrategyNotFoundError, /no strategy "s1"/)
    await refuses(service.status('s1'), StrategyNotFoundError, /no strategy "s1"/)
  })

  it('reports each desired node\'s state from its record, and the nodes still to drop the image', async () => {
    const nodes = members.map(member => ({ ...member }))
    const { service } = setup(nodes)
    const { strategy } = await service.create({ image: 'lib/busybox:1.36', kind: 'replicas', replicas: 3 })
    const id = strategy.id ?? ''
    const desired = place({ kind: 'replicas', image: 'lib/busybox:1.36', replicas: 3 }, nodes)
    const others = nodes.map(n => n.id).filter(n => !desired.includes(n))
    const report = (state: PlacementState['state'], extra: Partial<PlacementState> = {}): Record<string, PlacementState> =>
      ({ [id]: { image: 'lib/busybox:1.36', imageCid: IMAGE_CID, state, updatedAt: '2025-02-03T05:00:00.000Z', ...extra } })
    const byId = (nodeId: string | undefined): ListedNode => nodes.find(n => n.id === nodeId) as ListedNode
    byId(desired[0]).replication = report('held')
    byId(desired[1]).replication = report('fetching', { bytesDone: 10, bytesTotal: 40 })
    byId(others[0]).replication = report('held')
    Object.assign(byId(others[1]), { standing: 'gone', silent: true, gone: true })
    byId(others[1]).replication = report('held')

    const status = await service.status(id)
    assert.deepEqual(status.desired, [
      { node: desired[0], name: `name-${desired[0]}`, state: 'held', imageCid: IMAGE_CID, updatedAt: '2025-02-03T05:00:00.000Z' },
      { node: desired[1], name: `name-${desired[1]}`, state: 'fetching', imageCid: IMAGE_CID, bytesDone: 10, bytesTotal: 40, updatedAt: '2025-02-03T05:00:00.000Z' },
      { node: desired[2], name: `name-${desired[2]}`, state: 'pending' }
    ])
    assert.deepEqual(status.extra, [
      { node: others[0], name: `name-${others[0]}`, state: 'dropping', reported: 'held', silent: false },
      { node: others[1], name: `name-${others[1]}`, state: 'dropping', reported: 'held', silent: true }
    ])
    // A gone node is no member, but removing one that was not chosen changes no choice.
    const [summary] = (await service.list()).map(listed => listed.summary)
    assert.equal(summary?.desired, 3)
    assert.equal(summary?.dropping, status.extra.length)
  })

  it('tells what a node holds and why', async () => {
    const nodes = members.map(member => ({ ...member }))
    const { service } = setup(nodes, [TAG, { ...TAG, tag: 'latest' }])
    const { strategy } = await service.create({ image: 'lib/busybox:1.36', kind: 'all' })
    const holder = nodes[0] as ListedNode
    holder.images = [OTHER_CID, IMAGE_CID]
    holder.replication = {
      [strategy.id ?? '']: { image: 'lib/busybox:1.36', imageCid: IMAGE_CID, state: 'held', updatedAt: '2025-02-03T05:00:00.000Z' },
      removed: { image: 'old/app:1', state: 'failed', reason: 'no provider', updatedAt: '2025-02-03T05:00:00.000Z' }
    }
    const holdings = await service.holdings(holder.id)
    assert.equal(holdings.node, holder)
    assert.deepEqual(holdings.strategies, [
      { strategy: 'removed', image: 'old/app:1', state: 'failed', reason: 'no provider', updatedAt: '2025-02-03T05:00:00.000Z', known: false, desired: false },
      { strategy: 's1', image: 'lib/busybox:1.36', imageCid: IMAGE_CID, state: 'held', updatedAt: '2025-02-03T05:00:00.000Z', known: true, desired: true }
    ])
    assert.deepEqual(holdings.images, [
      { imageCid: OTHER_CID, tags: [], strategies: [] },
      { imageCid: IMAGE_CID, tags: ['lib/busybox:1.36', 'lib/busybox:latest'], strategies: ['s1'] }
    ])
    await refuses(service.holdings('nobody'), NodeNotFoundError, /no node "nobody" in the fleet/)
  })
})
