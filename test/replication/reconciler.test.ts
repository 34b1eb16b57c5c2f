// The reconciler's decisions with the registry and the fleet replaced by small fakes (its logic
// only; test/replication/convergence.test.ts proves it on real nodes).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { pino } from 'pino'
import { Reconciler, type FleetMember, type ImageHolder, type Placement, type PlacementLog, type ResolvedImage } from '../../src/replication/reconciler.ts'
import type { Strategy } from '../../src/replication/strategy.ts'

const SELF = 'node-self'

class FakeHolder implements ImageHolder {
  readonly held = new Set<string>()
  readonly fetched: string[] = []
  readonly dropped: string[] = []
  failWith: Error | undefined
  async holds (image: ResolvedImage): Promise<boolean> { return this.held.has(image.imageCid) }
  async size (image: ResolvedImage): Promise<{ total: number, held: number }> {
    return { total: 100, held: this.held.has(image.imageCid) ? 100 : 0 }
  }

  async fetch (image: ResolvedImage, onProgress: (done: number, total: number) => void): Promise<void> {
    this.fetched.push(image.imageCid)
    if (this.failWith !== undefined) throw this.failWith
    onProgress(50, 100)
    onProgress(100, 100)
    this.held.add(image.imageCid)
  }

  async drop (image: ResolvedImage): Promise<void> {
    this.dropped.push(image.imageCid)
    this.held.delete(image.imageCid)
  }
}

class FakePlacements implements PlacementLog {
  readonly entries = new Map<string, Placement>()
  async all (): Promise<Placement[]> { return [...this.entries.values()] }
  async put (placement: Placement): Promise<void> { this.entries.set(placement.imageCid, placement) }
  async delete (imageCid: string): Promise<void> { this.entries.delete(imageCid) }
}

function strategy (id: string, spec: Partial<Strategy> & Pick<Strategy, 'kind'>): Strategy {
  return { id, image: 'app:1', createdAt: '', updatedAt: '', ...spec } as Strategy
}

function setUp (options: { members?: FleetMember[], tags?: Record<string, string> } = {}) {
  const holder = new FakeHolder()
  const placements = new FakePlacements()
  const world = {
    strategies: [] as Strategy[],
    members: options.members ?? [{ id: SELF, gone: false }, { id: 'node-other', gone: false }],
    tags: new Map(Object.entries(options.tags ?? { 'app:1': 'cid-app-1' })),
    collections: 0,
    reports: 0
  }
  const reconciler = new Reconciler({
    selfId: () => SELF,
    strategies: async () => world.strategies,
    members: async () => world.members,
    resolve: async image => {
      const cid = world.tags.get(image)
      return cid === undefined ? undefined : { repository: image.split(':')[0]!, digest: `sha256:${cid}`, imageCid: cid }
    },
    holder,
    placements,
    onStatesChanged: () => { world.reports++ },
    collectGarbage: async () => { world.collections++ },
    logger: pino({ level: 'silent' }),
    retryMs: 50
  })
  /** A pass, then the fetches it started, then the pass they trigger. */
  const settle = async (): Promise<void> => {
    await reconciler.reconcile()
    await new Promise(resolve => setTimeout(resolve, 20))
    await reconciler.reconcile()
  }
  return { holder, placements, world, reconciler, settle }
}

describe('the reconciler', () => {
  it('fetches an image a strategy places here, pins it, and reports it held', async () => {
    const { holder, placements, world, reconciler, settle } = setUp()
    world.strategies = [strategy('s-all', { kind: 'all' })]
    await settle()
    assert.deepEqual(holder.fetched, ['cid-app-1'])
    assert.equal(reconciler.states()['s-all']?.state, 'held')
    assert.equal(reconciler.states()['s-all']?.bytesTotal, 100)
    assert.deepEqual(placements.entries.get('cid-app-1')?.strategies, ['s-all'])
    assert.equal(placements.entries.get('cid-app-1')?.kept, false)
    assert.ok(world.reports > 0)
  })

  it('does nothing for a strategy placed on other nodes', async () => {
    const { holder, world, reconciler, settle } = setUp()
    world.strategies = [strategy('s-target', { kind: 'target', target: 'node-other' })]
    await settle()
    assert.deepEqual(holder.fetched, [])
    assert.deepEqual(reconciler.states(), {})
  })

  it('drops the image when its strategy goes, then collects garbage', async () => {
    const { holder, placements, world, reconciler, settle } = setUp()
    world.strategies = [strategy('s-all', { kind: 'all' })]
    await settle()
    world.strategies = []
    await settle()
    assert.deepEqual(holder.dropped, ['cid-app-1'])
    assert.equal(world.collections, 1)
    assert.equal(placements.entries.size, 0)
    assert.deepEqual(reconciler.states(), {})
  })

  it('keeps an image the node held before a strategy placed it', async () => {
    const { holder, placements, world, settle } = setUp()
    holder.held.add('cid-app-1')
    world.strategies = [strategy('s-all', { kind: 'all' })]
    await settle()
    assert.equal(placements.entries.get('cid-app-1')?.kept, true)
    world.strategies = []
    await settle()
    assert.deepEqual(holder.dropped, [])
    assert.ok(holder.held.has('cid-app-1'))
    assert.equal(world.collections, 0)
  })

  it('keeps an image two strategies place here until both are gone', async () => {
    const { holder, world, settle } = setUp()
    world.strategies = [strategy('s-all', { kind: 'all' }), strategy('s-two', { kind: 'replicas', replicas: 2 })]
    await settle()
    assert.deepEqual(holder.fetched, ['cid-app-1'])
    world.strategies = [strategy('s-two', { kind: 'replicas', replicas: 2 })]
    await settle()
    assert.deepEqual(holder.dropped, [])
    world.strategies = []
    await settle()
    assert.deepEqual(holder.dropped, ['cid-app-1'])
  })

  it('follows a tag: the new image is fetched and the old one dropped', async () => {
    const { holder, world, reconciler, settle } = setUp()
    world.strategies = [strategy('s-all', { kind: 'all' })]
    await settle()
    world.tags.set('app:1', 'cid-app-1b')
    await settle()
    assert.deepEqual(holder.fetched, ['cid-app-1', 'cid-app-1b'])
    assert.deepEqual(holder.dropped, ['cid-app-1'])
    assert.equal(reconciler.states()['s-all']?.imageCid, 'cid-app-1b')
  })

  it('reports an unknown image and a failed fetch, and tries the fetch again later', async () => {
    const { holder, world, reconciler, settle } = setUp()
    world.strategies = [strategy('s-gone', { kind: 'all', image: 'gone:1' })]
    await settle()
    assert.equal(reconciler.states()['s-gone']?.state, 'failed')
    assert.match(reconciler.states()['s-gone']?.reason ?? '', /gone:1 is not in the catalogue/)

    world.strategies = [strategy('s-all', { kind: 'all' })]
    holder.failWith = new Error('no node holds it')
    await settle()
    assert.equal(reconciler.states()['s-all']?.state, 'failed')
    assert.equal(reconciler.states()['s-all']?.reason, 'no node holds it')
    holder.failWith = undefined
    await new Promise(resolve => setTimeout(resolve, 60))
    await settle()
    assert.equal(reconciler.states()['s-all']?.state, 'held')
    assert.equal(holder.fetched.length, 2)
  })

  it('does nothing while it does not see itself among the live members', async () => {
    const { holder, placements, world, settle } = setUp()
    world.strategies = [strategy('s-all', { kind: 'all' })]
    await settle()
    world.members = [{ id: SELF, gone: true }, { id: 'node-other', gone: false }]
    world.strategies = []
    await settle()
    assert.deepEqual(holder.dropped, [])
    assert.equal(placements.entries.size, 1)
  })

  it('re-places when a member is gone: a replica moves to a survivor', async () => {
    const members: FleetMember[] = [{ id: SELF, gone: false }, { id: 'node-a', gone: false }, { id: 'node-b', gone: false }, { id: 'node-c', gone: false }]
    const { holder, world, settle } = setUp({ members })
    // Find a single-replica image that lands on another node while that node lives, and here once it is gone.
    for (let i = 0; i < 200; i++) world.tags.set(`app:${i}`, `cid-${i}`)
    const { place } = await import('../../src/replication/placement.ts')
    const image = [...world.tags.keys()].find(ref => {
      const spec = { kind: 'replicas' as const, replicas: 1, image: ref }
      const owner = place(spec, members)[0]
      return owner !== SELF && place(spec, members.filter(m => m.id !== owner))[0] === SELF
    })
    assert.ok(image !== undefined)
    world.strategies = [strategy('s-one', { kind: 'replicas', replicas: 1, image })]
    await settle()
    assert.deepEqual(holder.fetched, [])
    const owner = place({ kind: 'replicas', replicas: 1, image }, members)[0]
    world.members = members.map(m => (m.id === owner ? { ...m, gone: true } : m))
    await settle()
    assert.deepEqual(holder.fetched, [world.tags.get(image)])
  })
})
