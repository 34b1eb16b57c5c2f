// Strategies through the REST API of real nodes: created on one node, read from another once the
// catalogue replicated them; refusals with their messages; images and one node's holdings.
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { copyToRegistry } from '../support/skopeo.ts'

const IMAGE = 'strat/app:1.0'

interface Placed { node: string, name: string }
interface StoredStrategy { id: string, kind: string, image: string, createdAt: string, updatedAt: string, [field: string]: unknown }
interface Created { strategy: StoredStrategy, placement: Placed[] }
interface Status { strategy: StoredStrategy, desired: Array<Placed & { state: string }>, extra: unknown[] }
interface Refusal { statusCode: number, error: string, code: string, message: string }

const api = async (node: TestNode, path: string, init: { method?: string, body?: unknown } = {}): Promise<{ status: number, body: unknown }> => {
  const response = await fetch(`${node.url}/api/v1${path}`, {
    method: init.method ?? 'GET',
    ...(init.body === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: typeof init.body === 'string' ? init.body : JSON.stringify(init.body) })
  })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : JSON.parse(text) as unknown }
}

describe('strategies on a fleet of three nodes', () => {
  let a: TestNode
  let b: TestNode
  let c: TestNode
  let work: string
  let imageCid: string
  let manifestDigest: string
  const idOf = (node: TestNode): string => node.node.fleet?.mesh.peerId ?? ''

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'shoal-strategies-'))
    a = await startTestNode({ config: { mesh: true, name: 'a', labels: { zone: 'eu' } } })
    const peers = [a.node.fleet?.mesh.addresses[0] ?? '']
    b = await startTestNode({ config: { peers, name: 'b', labels: { zone: 'eu' } } })
    c = await startTestNode({ config: { peers, name: 'c', labels: { zone: 'us' } } })
    await Promise.all([a, b, c].map(async node => await eventually(
      async () => ((await node.node.fleet?.nodes())?.length ?? 0) >= 3 ? true : undefined, 15_000, 'the fleet to form')))
    const image = await createImageLayout(join(work, 'app'), { layers: [200_000], seed: 'strategies' })
    manifestDigest = image.manifestDigest
    await copyToRegistry(join(work, 'app'), `${a.host}/${IMAGE}`)
    for (const node of [b, c]) {
      await eventually(async () => await node.node.fleet?.catalogue.getTag('strat/app', '1.0'), 10_000, 'the tag to replicate')
    }
    imageCid = (await a.node.fleet?.catalogue.getTag('strat/app', '1.0'))?.imageCid ?? ''
  })
  after(async () => {
    await Promise.all([a, b, c].map(async node => await node?.stop()))
    await rm(work, { recursive: true, force: true })
  })

  /** Creates on A; returns the answer once B serves the same strategy. */
  const createOnA = async (body: unknown): Promise<Created> => {
    const { status, body: created } = await api(a, '/strategies', { method: 'POST', body })
    assert.equal(status, 201, JSON.stringify(created))
    const answer = created as Created
    const onB = await eventually(async () => {
      const read = await api(b, `/strategies/${answer.strategy.id}`)
      return read.status === 200 ? read.body : undefined
    }, 10_000, 'the strategy on B')
    assert.deepEqual(onB, answer.strategy)
    return answer
  }

  it('creates a strategy of each kind on one node; another node reads it and places it alike; the nodes come to hold it', async () => {
    const ids = { a: idOf(a), b: idOf(b), c: idOf(c) }
    const cases: Array<[unknown, (placement: string[]) => void]> = [
      [{ image: IMAGE, kind: 'percentage', percentage: 40 }, placement => assert.equal(placement.length, 2)],
      [{ image: IMAGE, kind: 'target', target: 'c' }, placement => assert.deepEqual(placement, [ids.c])],
      [{ image: IMAGE, kind: 'replicas', replicas: 2 }, placement => assert.equal(placement.length, 2)],
      [{ image: `strat/app@${manifestDigest}`, kind: 'all' }, placement => assert.deepEqual([...placement].sort(), Object.values(ids).sort())],
      [{ image: imageCid, kind: 'labels', selector: { zone: 'eu' } }, placement => assert.deepEqual([...placement].sort(), [ids.a, ids.b].sort())],
      [{ image: IMAGE, kind: 'labels', selector: 'zone=eu', count: 1 }, placement => assert.equal(placement.length, 1)]
    ]
    for (const [body, check] of cases) {
      const created = await createOnA(body)
      assert.match(created.strategy.id, /^[0-9a-f-]{36}$/)
      assert.ok(!Number.isNaN(Date.parse(created.strategy.createdAt)))
      check(created.placement.map(placed => placed.node))
      const status = await api(b, `/strategies/${created.strategy.id}/status`)
      assert.equal(status.status, 200)
      const { desired, extra, strategy } = status.body as Status
      assert.deepEqual(strategy, created.strategy)
      assert.deepEqual(desired.map(({ node, name }) => ({ node, name })), created.placement, 'B places it as A did')
      assert.ok(desired.every(node => ['pending', 'fetching', 'held'].includes(node.state)), JSON.stringify(desired))
      assert.deepEqual(extra, [])
    }
    // Every node's reconciler fetches its share: each strategy ends with all its nodes holding it.
    const all = await eventually(async () => {
      const current = (await api(c, '/strategies')).body as { strategies: Array<StoredStrategy & { summary: Record<string, number> }> }
      return current.strategies.length >= cases.length && current.strategies.every(strategy => strategy.summary.held === strategy.summary.desired)
        ? current.strategies
        : undefined
    }, 20_000, 'every strategy on C, held on all its nodes')
    for (const strategy of all) assert.ok((strategy.summary.desired ?? 0) > 0)
  })

  it('accepts DistroMash\'s two payloads verbatim', async () => {
    const percentage = await createOnA(JSON.parse(`{"execute": true, "nametag": "${IMAGE}", "percentage": 50, "target": "", "type": "percentage"}`))
    assert.deepEqual({ kind: percentage.strategy.kind, image: percentage.strategy.image, percentage: percentage.strategy.percentage }, { kind: 'percentage', image: IMAGE, percentage: 50 })
    assert.equal(percentage.placement.length, 2)
    const target = await createOnA(JSON.parse(`{"execute": true, "nametag": "${IMAGE}", "percentage": 0, "target": "${idOf(b)}", "type": "target"}`))
    assert.equal(target.strategy.target, idOf(b))
    assert.deepEqual(target.placement, [{ node: idOf(b), name: 'b' }])
  })

  it('refuses each bad strategy with a 400 that says why', async () => {
    const cases: Array<[unknown, RegExp]> = [
      [{ image: IMAGE, kind: 'percentage', percentage: 0 }, /^percentage must be a number from 1 to 100, not 0$/],
      [{ image: IMAGE, kind: 'percentage', percentage: 101 }, /^percentage must be a number from 1 to 100, not 101$/],
      [{ image: 'strat/app:9.9', kind: 'all' }, /^unknown image "strat\/app:9\.9"/],
      [{ image: `strat/app@sha256:${'0'.repeat(64)}`, kind: 'all' }, /^unknown image/],
      [{ image: IMAGE, kind: 'target', target: 'nowhere' }, /^target "nowhere" is not a member/],
      [{ image: IMAGE, kind: 'replicas', replicas: 4 }, /^replicas 4 is more than the 3 member node\(s\)$/],
      [{ image: IMAGE, kind: 'labels', selector: { zone: 'eu' }, count: 3 }, /^count 3 is more than the 2 node\(s\) matching zone=eu$/],
      [{ image: IMAGE }, /^missing kind/],
      [{ image: 'busybox', kind: 'all' }, /^invalid image "busybox"/],
      [{ image: IMAGE, kind: 'replicas', replicas: 'two' }, /^replicas must be a whole number, not "two"$/],
      // Strict: no coercion, no unknown field dropped in silence, null is not 0.
      [{ image: IMAGE, kind: 'replicas', replicas: '2' }, /^replicas must be a whole number, not "2"$/],
      [{ image: IMAGE, kind: 'all', colour: 'blue' }, /^unknown field "colour" \(known: kind, image, percentage, /],
      [{ image: IMAGE, kind: 'percentage', percentage: null }, /^percentage must be a number, not null$/],
      [{ image: IMAGE, kind: 'labels', selector: 5 }, /^selector must be an object or a string, not 5$/],
      [{ image: IMAGE, kind: 'copy' }, /^kind must be one of percentage, target, replicas, all, labels, not "copy"$/],
      [[IMAGE], /^the body must be an object, not \["strat\/app:1\.0"\]$/]
    ]
    const before = ((await api(a, '/strategies')).body as { strategies: unknown[] }).strategies.length
    for (const [body, message] of cases) {
      const { status, body: refusal } = await api(a, '/strategies', { method: 'POST', body })
      assert.equal(status, 400, JSON.stringify(body))
      assert.equal((refusal as Refusal).error, 'Bad Request')
      assert.match((refusal as Refusal).code, /^(STRATEGY_INVALID|INVALID_REQUEST)$/)
      assert.match((refusal as Refusal).message, message)
    }
    const malformed = await api(a, '/strategies', { method: 'POST', body: '{"kind": ' })
    assert.equal(malformed.status, 400)
    // JSON is UTF-8: a body declared in another charset is refused, not misread.
    const utf16 = await fetch(`${a.url}/api/v1/strategies`, {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-16' },
      body: Buffer.from(JSON.stringify({ image: IMAGE, kind: 'all' }), 'utf16le')
    })
    assert.equal(utf16.status, 415)
    assert.match((await utf16.json() as Refusal).message, /^the body must be JSON in UTF-8, not charset=utf-16$/)
    assert.equal(((await api(a, '/strategies')).body as { strategies: unknown[] }).strategies.length, before, 'nothing stored')
  })

  it('a dry run shows the placement and stores nothing', async () => {
    const before = ((await api(a, '/strategies')).body as { strategies: unknown[] }).strategies.length
    const { status, body } = await api(a, '/strategies', { method: 'POST', body: { image: IMAGE, kind: 'replicas', replicas: 3, execute: false } })
    assert.equal(status, 200)
    const dry = body as { strategy: { id: null, kind: string }, placement: Placed[] }
    assert.equal(dry.strategy.id, null)
    assert.equal(dry.strategy.kind, 'replicas')
    assert.deepEqual(dry.placement.map(placed => placed.node).sort(), [idOf(a), idOf(b), idOf(c)].sort())
    assert.equal(((await api(a, '/strategies')).body as { strategies: unknown[] }).strategies.length, before)
  })

  it('a strategy removed on one node is gone on another', async () => {
    const created = await createOnA({ image: IMAGE, kind: 'all' })
    const removed = await api(a, `/strategies/${created.strategy.id}`, { method: 'DELETE' })
    assert.equal(removed.status, 204)
    assert.equal(removed.body, undefined)
    await eventually(async () => (await api(b, `/strategies/${created.strategy.id}`)).status === 404 ? true : undefined, 10_000, 'the delete to reach B')
    const listed = ((await api(b, '/strategies')).body as { strategies: StoredStrategy[] }).strategies
    assert.ok(!listed.some(strategy => strategy.id === created.strategy.id))
    const again = await api(b, `/strategies/${created.strategy.id}`, { method: 'DELETE' })
    assert.equal(again.status, 404)
    assert.equal((again.body as Refusal).message, `no strategy "${created.strategy.id}"`)
    assert.equal((await api(b, `/strategies/${created.strategy.id}/status`)).status, 404)
  })

  it('lists the fleet\'s images with who pushed them and who holds them', async () => {
    type Listing = { repository: string, tag: string, digest: string, imageCid: string, node: string, pushedAt: string, heldBy: string[] }
    const image = await eventually(async () => {
      const { images } = (await api(c, '/images')).body as { images: Listing[] }
      const found = images.find(listing => listing.repository === 'strat/app' && listing.tag === '1.0')
      return found?.heldBy.includes(idOf(a)) === true ? found : undefined
    }, 15_000, 'the image held by A in C\'s list')
    assert.equal(image.digest, manifestDigest)
    assert.equal(image.imageCid, imageCid)
    assert.equal(image.node, idOf(a))
    assert.ok(!Number.isNaN(Date.parse(image.pushedAt)))
  })

  it('shows one node\'s record and what it holds, and 404 for a node it does not know', async () => {
    type Holdings = { node: { id: string, name: string, images: string[], silent: boolean }, strategies: unknown[], images: Array<{ imageCid: string, tags: string[], strategies: string[] }> }
    const holdings = await eventually(async () => {
      const { status, body } = await api(b, `/nodes/${idOf(a)}`)
      return status === 200 && (body as Holdings).node.images.includes(imageCid) ? body as Holdings : undefined
    }, 15_000, 'A\'s record with the image')
    assert.equal(holdings.node.name, 'a')
    assert.equal(holdings.node.silent, false)
    // A was pushed the image and is placed by strategies of the other tests: it holds the image
    // for those, as its reconciler reported in its record.
    const forStrategies = holdings.strategies as Array<{ strategy: string, imageCid?: string }>
    assert.ok(forStrategies.every(held => held.imageCid === imageCid))
    assert.deepEqual(holdings.images.find(held => held.imageCid === imageCid),
      { imageCid, tags: [IMAGE], strategies: forStrategies.map(held => held.strategy).sort() })
    const unknown = await api(b, '/nodes/nobody')
    assert.equal(unknown.status, 404)
    assert.equal((unknown.body as Refusal).message, 'no node "nobody" in the fleet')
  })

  it('describes the new routes in /openapi.json', async () => {
    const document = await (await fetch(`${a.url}/openapi.json`)).json() as { paths: Record<string, Record<string, { tags?: string[], summary?: string }>>, tags: Array<{ name: string }> }
    const routes: Array<[string, string]> = [
      ['/api/v1/strategies', 'get'], ['/api/v1/strategies', 'post'], ['/api/v1/strategies/{id}', 'get'],
      ['/api/v1/strategies/{id}', 'delete'], ['/api/v1/strategies/{id}/status', 'get'], ['/api/v1/images', 'get'],
      ['/api/v1/nodes/{id}', 'get']
    ]
    for (const [path, method] of routes) {
      const operation = document.paths[path]?.[method]
      assert.ok(operation, `${method} ${path} is described`)
      assert.ok((operation.tags?.length ?? 0) > 0 && (operation.summary ?? '') !== '', `${method} ${path} has tags and a summary`)
    }
    for (const tag of ['strategies', 'images']) assert.ok(document.tags.some(described => described.name === tag), `tag ${tag} is described`)
  })
})

describe('strategies on a node outside a mesh', () => {
  let node: TestNode
  before(async () => { node = await startTestNode() })
  after(async () => { await node.stop() })

  it('answers 409 for strategies and lists the node\'s own images', async () => {
    for (const [method, path] of [['GET', '/strategies'], ['POST', '/strategies'], ['GET', '/strategies/x'], ['GET', '/strategies/x/status'], ['DELETE', '/strategies/x'], ['GET', '/nodes/x']]) {
      const { status, body } = await api(node, path ?? '', { method, body: method === 'POST' ? { image: IMAGE, kind: 'all' } : undefined })
      assert.equal(status, 409, `${method} ${path}`)
      assert.deepEqual(body, { statusCode: 409, error: 'Conflict', code: 'NOT_IN_MESH', message: 'this node is not in a mesh' })
    }
    assert.deepEqual((await api(node, '/images')).body, { images: [] })
    const pushed = await new RegistryClient(node.url).pushImage('solo/app', '2.0', 'solo layer')
    const { images } = (await api(node, '/images')).body as { images: Array<Record<string, unknown>> }
    assert.equal(images.length, 1)
    assert.deepEqual({ ...images[0], imageCid: undefined }, { repository: 'solo/app', tag: '2.0', digest: pushed.digest, imageCid: undefined, heldBy: [], heldHere: true })
    assert.equal(images[0]?.imageCid, pushed.response.headers.get('shoal-image-cid'))
  })
})
