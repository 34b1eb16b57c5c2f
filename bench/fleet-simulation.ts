// A fleet of N nodes pulling one image at once, simulated (issue 11): no processes, no sockets,
// a simulated network, and Shoal's own code where it decides who sends what: the placement
// (src/replication/placement.ts picks the seeders and the pullers), the relay ranking
// (src/mesh/relay-tree.ts), the provider pool (src/mesh/provider-pool.ts) and the retry policy,
// with the fetcher's limits (read-ahead, requests in flight per provider, timeouts, relay wait)
// imported from the modules that set them.
//
//   node bench/fleet-simulation.ts [--nodes 1,10,100,1000,10000] [--mib 256] [--layers 4]
//     [--seeders 1] [--gbit 1] [--down-gbit <same>] [--seeder-gbit <same>] [--latency-ms 0.5] [--spread-ms 0]
//     [--hop-ms 2] [--lookup-ms 100] [--block-mib 1] [--seed 1] [--json <file>]
//
// What is modelled, per node: an upload and a download link (FIFO at block granularity: a block
// is sent whole at the upload rate, queued behind the sender's earlier blocks; it reaches the
// receiver when its upload ends, or later if the receiver's download link is still busy with
// earlier blocks), a one-way latency on every request and answer, and the fetcher's behaviour:
// every layer read as BlockFetcher.fetchFileChunks reads a file (root, inner nodes when reached,
// then leaves with DEFAULT_READ_AHEAD in flight, yielded in order), PARALLEL_BLOBS layers at once,
// each block asked of the providers the ranking gives (lowest tier first, least busy first through
// the real ProviderPool with its per-provider limit, each provider failing at most
// TRIES_PER_PROVIDER times, a pause of DEFAULT_RETRY_DELAY_MS between rounds, a request timeout of
// DEFAULT_REQUEST_TIMEOUT_MS), and the relay as RemoteContent.relay does it: a node asked for a
// block it lacks hands it on once it arrives if it is fetching it, else fetches it for a peer
// ranked above it, within RELAY_WAIT_MS, else answers 404.
//
// Pull notices: a node's notice leaves 50 ms after its pull starts (the notices' coalescing) and
// reaches each other node after a number of gossip hops (1 to ceil(log3 N) + 1, as a mesh of
// degree 4 spreads it) of --hop-ms each. Receivers are split into VIEW_GROUPS groups that each hear
// a notice at their own time, so nodes disagree on who is pulling while notices spread; a group's
// view is rebuilt at most every VIEW_REFRESH_MS. A finished node's notice says "done" the same way,
// and is forgotten FINISHED_FORGOTTEN_MS after it finished (the notices' expiry and repeat).
//
// Left out: CPU (hashing, disk writes, garbage collection: the real fleet bench shows a 2-core
// machine is CPU-bound before its links are), TCP dynamics (slow start, fair sharing between
// flows: a link here sends whole blocks one after another), disk, the image's small blocks
// (manifest, config) and the holder lookup's variance (a fixed --lookup-ms), and failures.
import { createHash } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { place, type Member } from '../src/replication/placement.ts'
import { ProviderPool, type Provider } from '../src/mesh/provider-pool.ts'
import { rankProviders, ranksAbove, relayTrees, type PullerHeard, type RelayTrees } from '../src/mesh/relay-tree.ts'
import { mayRetry, retryDelay, type RetryPolicy } from '../src/retry-policy.ts'
import {
  DEFAULT_MAX_IN_FLIGHT_PER_PROVIDER, DEFAULT_READ_AHEAD, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_RETRY_DELAY_MS, TRIES_PER_PROVIDER
} from '../src/mesh/block-fetcher.ts'
import { RELAY_WAIT_MS } from '../src/mesh/remote-content.ts'
import { PARALLEL_BLOBS } from '../src/registry/image-holdings.ts'
import { MAX_LINKS_PER_NODE } from '../src/content/unixfs-dag.ts'
import { gitCommit, machineDescription } from './environment.ts'
import { seededRandom } from '../test/support/random.ts'

const MiB = 1024 * 1024
const VIEW_GROUPS = 8
const VIEW_REFRESH_MS = 20
const NOTICE_COALESCE_MS = 50
/** A finished pull stays in others' views about this long: 15 s of repeats, then their expiry sweep. */
const FINISHED_FORGOTTEN_MS = 25_000
/** The reconciler tries a failed image fetch again after this long. */
const REFETCH_MS = 5_000
/** Bytes per link of a dag-pb node, roughly (CID, name, size). */
const LINK_BYTES = 44

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1,10,100,1000,10000' },
    mib: { type: 'string', default: '256' },
    layers: { type: 'string', default: '4' },
    seeders: { type: 'string', default: '1' },
    gbit: { type: 'string', default: '1' },
    'down-gbit': { type: 'string' },
    'seeder-gbit': { type: 'string' },
    'latency-ms': { type: 'string', default: '0.5' },
    'spread-ms': { type: 'string', default: '0' },
    'hop-ms': { type: 'string', default: '2' },
    'lookup-ms': { type: 'string', default: '100' },
    'block-mib': { type: 'string', default: '1' },
    seed: { type: 'string', default: '1' },
    json: { type: 'string' }
  }
})

interface Settings {
  pullers: number
  imageBytes: number
  layers: number
  seeders: number
  /** Bytes per millisecond. */
  up: number
  down: number
  seederUp: number
  latencyMs: number
  spreadMs: number
  hopMs: number
  lookupMs: number
  blockBytes: number
  seed: number
}

const gbitToBytesPerMs = (gbit: number): number => gbit * 1e9 / 8 / 1000

// Deterministic randomness: the pool breaks ties with Math.random, so it is replaced by a seeded
// generator (test/support/random.ts), and runs repeat exactly.

// ---------------------------------------------------------------------------------------------
// Events

interface SimEvent { t: number, seq: number, run: () => void, index: number }

/**
 * A binary heap of events by time (then by order of scheduling). Timers that are no longer needed
 * (a request answered before its timeout) are cancelled, i.e. taken out of the heap at once:
 * left in, millions of them would hold their requests in memory until they came due.
 */
class EventQueue {
  now = 0
  events = 0
  private readonly heap: SimEvent[] = []
  private seq = 0

  at (t: number, run: () => void): SimEvent {
    const event = { t: Math.max(t, this.now), seq: this.seq++, run, index: this.heap.length }
    this.heap.push(event)
    this.up(event.index)
    return event
  }

  after (ms: number, run: () => void): SimEvent {
    return this.at(this.now + ms, run)
  }

  cancel (event: SimEvent | undefined): void {
    if (event === undefined || event.index < 0) return
    const heap = this.heap
    const i = event.index
    const last = heap.pop() as SimEvent
    event.index = -1
    if (last === event) return
    heap[i] = last
    last.index = i
    this.up(i)
    this.down(last.index)
  }

  run (): void {
    const heap = this.heap
    while (heap.length > 0) {
      const top = heap[0] as SimEvent
      const last = heap.pop() as SimEvent
      top.index = -1
      if (last !== top) {
        heap[0] = last
        last.index = 0
        this.down(0)
      }
      this.now = top.t
      this.events++
      top.run()
    }
  }

  private up (i: number): void {
    const heap = this.heap
    const event = heap[i] as SimEvent
    while (i > 0) {
      const parent = (i - 1) >> 1
      const above = heap[parent] as SimEvent
      if (!before(event, above)) break
      heap[i] = above
      above.index = i
      i = parent
    }
    heap[i] = event
    event.index = i
  }

  private down (i: number): void {
    const heap = this.heap
    const event = heap[i] as SimEvent
    for (;;) {
      const left = 2 * i + 1
      if (left >= heap.length) break
      const right = left + 1
      const child = right < heap.length && before(heap[right] as SimEvent, heap[left] as SimEvent) ? right : left
      const below = heap[child] as SimEvent
      if (!before(below, event)) break
      heap[i] = below
      below.index = i
      i = child
    }
    heap[i] = event
    event.index = i
  }
}

function before (a: SimEvent, b: SimEvent): boolean {
  return a.t < b.t || (a.t === b.t && a.seq < b.seq)
}

// ---------------------------------------------------------------------------------------------
// The image: layers, each a UnixFS file of leaves under a root (and inner nodes past 1024 leaves).

interface Layer {
  index: number
  root: number
  /** For each leaf in file order: its block, and the inner node above it (the root when none). */
  leaves: number[]
  parents: number[]
}

interface Image {
  layers: Layer[]
  size: number[]
  layerOf: number[]
  /** Each block's multihash digest (sha-256 of a name: any relay code keyed on it sees real digests). */
  digest: Uint8Array[]
  totalBytes: number
}

function buildImage (settings: Settings): Image {
  const size: number[] = []
  const layerOf: number[] = []
  const digest: Uint8Array[] = []
  const layers: Layer[] = []
  const add = (bytes: number, layer: number): number => {
    size.push(bytes)
    layerOf.push(layer)
    digest.push(createHash('sha256').update(`${settings.seed}/${size.length}`).digest())
    return size.length - 1
  }
  const layerBytes = Math.ceil(settings.imageBytes / settings.layers)
  for (let l = 0; l < settings.layers; l++) {
    const leafCount = Math.ceil(layerBytes / settings.blockBytes)
    const innerCount = leafCount <= MAX_LINKS_PER_NODE ? 0 : Math.ceil(leafCount / MAX_LINKS_PER_NODE)
    const root = add(LINK_BYTES * (innerCount > 0 ? innerCount : leafCount), l)
    const inner: number[] = []
    for (let i = 0; i < innerCount; i++) inner.push(add(LINK_BYTES * Math.min(MAX_LINKS_PER_NODE, leafCount - i * MAX_LINKS_PER_NODE), l))
    const leaves: number[] = []
    const parents: number[] = []
    for (let i = 0; i < leafCount; i++) {
      leaves.push(add(Math.min(settings.blockBytes, layerBytes - i * settings.blockBytes), l))
      parents.push(innerCount > 0 ? inner[Math.floor(i / MAX_LINKS_PER_NODE)] as number : root)
    }
    layers.push({ index: l, root, leaves, parents })
  }
  return { layers, size, layerOf, digest, totalBytes: settings.layers * layerBytes }
}

// ---------------------------------------------------------------------------------------------
// Nodes, requests, fetches

interface SimNode {
  index: number
  id: string
  url: string
  seeder: boolean
  group: number
  has: Uint8Array
  /** Blocks this node is fetching now, with who waits for them (BlockFetcher.whenArrived). */
  arriving: Map<number, Array<() => void>>
  pool: ProviderPool
  slotWaiters: FetchOp[]
  upQueue: BlockRequest[]
  upHead: number
  upBusy: boolean
  downFree: number
  sentBytes: number
  start: number
  end: number
  /** When this node's holder lookup for each layer answers. */
  seedersKnownAt: number[]
}

interface FetchOp {
  node: SimNode
  block: number
  deadline: number
  failures: Map<string, number>
  retryRound: number
  settled: boolean
  waitingForSlot: boolean
  request: BlockRequest | undefined
  /** The abort at the deadline, for a fetch that has one. */
  timer: SimEvent | undefined
  /** Set when this fetch marked the block as arriving: who waits for it. */
  arrival: Array<() => void> | undefined
  onSettle: (ok: boolean) => void
}

interface BlockRequest {
  op: FetchOp
  from: SimNode
  to: SimNode
  provider: Provider
  block: number
  deadline: number
  settled: boolean
  timeout: SimEvent | undefined
}

interface View {
  pullers: Map<string, PullerHeard>
  trees: RelayTrees
  dirty: boolean
  builtAt: number
}

interface Outcome {
  pullers: number
  durations: number[]
  seederBytes: number
  relayed404: number
  fetchFailures: number
  events: number
  wallMs: number
  simulatedMs: number
}

function simulate (settings: Settings): Outcome {
  const wallStart = performance.now()
  const random = seededRandom(settings.seed)
  Math.random = random
  const queue = new EventQueue()
  const image = buildImage(settings)
  const blockCount = image.size.length
  const retry: RetryPolicy = { tries: TRIES_PER_PROVIDER, delayMs: DEFAULT_RETRY_DELAY_MS }

  // Members, and what placement makes of them: a `replicas` strategy's nodes hold the image (the
  // seeders); an `all` strategy then places it on every node, so all the others pull it at once.
  const total = settings.pullers + settings.seeders
  const members: Member[] = []
  for (let i = 0; i < total; i++) members.push({ id: peerId(random), name: `node-${i}` })
  const imageRef = 'fleet/app@sha256:simulated'
  const seederIds = new Set(place({ kind: 'replicas', image: imageRef, replicas: settings.seeders }, members))
  const pullerIds = place({ kind: 'all', image: imageRef }, members).filter(id => !seederIds.has(id))

  const byId = new Map<string, SimNode>()
  const nodes: SimNode[] = members.map((member, index) => {
    const node: SimNode = {
      index,
      id: member.id,
      url: `http://${member.name ?? index}`,
      seeder: seederIds.has(member.id),
      group: index % VIEW_GROUPS,
      has: new Uint8Array(blockCount),
      arriving: new Map(),
      pool: new ProviderPool(DEFAULT_MAX_IN_FLIGHT_PER_PROVIDER),
      slotWaiters: [],
      upQueue: [],
      upHead: 0,
      upBusy: false,
      downFree: 0,
      sentBytes: 0,
      start: Number.NaN,
      end: Number.NaN,
      seedersKnownAt: image.layers.map(() => Number.POSITIVE_INFINITY)
    }
    if (node.seeder) node.has.fill(1)
    byId.set(node.id, node)
    return node
  })
  const seederProviders: Provider[] = nodes.filter(n => n.seeder).map(n => ({ id: n.id, url: n.url }))
  const pullers = pullerIds.map(id => byId.get(id) as SimNode)

  // Views of the pull notices, per receiver group and layer (a notice names every blob root).
  const views: View[][] = []
  for (let g = 0; g < VIEW_GROUPS; g++) views.push(image.layers.map(layer => ({ pullers: new Map(), trees: relayTrees(rootOf(layer), []), dirty: false, builtAt: -Infinity })))
  const maxHops = Math.ceil(Math.log(Math.max(2, total)) / Math.log(3)) + 1
  const noticeDelay = (): number => NOTICE_COALESCE_MS + (1 + Math.floor(random() * maxHops)) * settings.hopMs
  const hear = (from: SimNode, layers: number[], done: boolean): void => {
    for (let g = 0; g < VIEW_GROUPS; g++) {
      queue.after(noticeDelay(), () => {
        for (const l of layers) {
          const view = views[g]?.[l] as View
          view.pullers.set(from.id, { id: from.id, url: from.url, done })
          view.dirty = true
        }
      })
    }
    if (done) {
      queue.after(FINISHED_FORGOTTEN_MS, () => {
        for (let g = 0; g < VIEW_GROUPS; g++) {
          for (const l of layers) {
            const view = views[g]?.[l] as View
            view.pullers.delete(from.id)
            view.dirty = true
          }
        }
      })
    }
  }
  const viewOf = (node: SimNode, layer: number): View => {
    const view = views[node.group]?.[layer] as View
    if (view.dirty && queue.now - view.builtAt >= VIEW_REFRESH_MS) {
      view.trees = relayTrees(rootOf(image.layers[layer] as Layer), [...view.pullers.values()])
      view.dirty = false
      view.builtAt = queue.now
    }
    return view
  }

  // The nodes' own ranking, on what this node heard (its group's view: the trees are built once
  // per change of it, as a node would cache them) and the holders once its lookup answered.
  const providersFor = (node: SimNode, block: number): Provider[] => {
    const layer = image.layerOf[block] as number
    const seeders = queue.now >= (node.seedersKnownAt[layer] as number) ? seederProviders : []
    return rankProviders(node.id, viewOf(node, layer).trees, seeders, image.digest[block] as Uint8Array)
  }

  let relayed404 = 0
  let fetchFailures = 0

  const wakeSlotWaiters = (node: SimNode): void => {
    const waiting = node.slotWaiters
    node.slotWaiters = []
    for (const op of waiting) {
      op.waitingForSlot = false
      step(op)
    }
  }

  const settle = (op: FetchOp, ok: boolean): void => {
    if (op.settled) return
    op.settled = true
    queue.cancel(op.timer)
    const node = op.node
    if (ok) node.has[op.block] = 1
    // The fetch that marked the block as arriving settles it (BlockFetcher.expect).
    const waiters = op.arrival
    if (waiters !== undefined) {
      node.arriving.delete(op.block)
      for (const wake of waiters) wake()
    }
    op.onSettle(ok)
  }

  const abort = (op: FetchOp): void => {
    if (op.settled) return
    const request = op.request
    if (request !== undefined && !request.settled) {
      request.settled = true
      queue.cancel(request.timeout)
      op.node.pool.release(request.provider.id)
      wakeSlotWaiters(op.node)
    }
    settle(op, false)
  }

  /** BlockFetcher.fetchRemote, one round. */
  const step = (op: FetchOp): void => {
    if (op.settled || op.waitingForSlot) return
    if (queue.now >= op.deadline) {
      abort(op)
      return
    }
    const candidates = providersFor(op.node, op.block)
    const usable = candidates.filter(p => mayRetry(retry, op.failures.get(p.id) ?? 0))
    if (usable.length === 0) {
      settle(op, false)
      return
    }
    let fewest = Number.POSITIVE_INFINITY
    for (const p of usable) fewest = Math.min(fewest, op.failures.get(p.id) ?? 0)
    if (fewest > op.retryRound) {
      op.retryRound = fewest
      queue.after(retryDelay(retry, fewest), () => step(op))
      return
    }
    const leastFailed = usable.filter(p => (op.failures.get(p.id) ?? 0) === fewest)
    let tier = Number.POSITIVE_INFINITY
    for (const p of leastFailed) tier = Math.min(tier, p.tier ?? 0)
    const provider = op.node.pool.tryAcquire(leastFailed.filter(p => (p.tier ?? 0) === tier))
    if (provider === undefined) {
      op.waitingForSlot = true
      op.node.slotWaiters.push(op)
      return
    }
    send(op, provider)
  }

  const send = (op: FetchOp, provider: Provider): void => {
    const to = byId.get(provider.id) as SimNode
    const request: BlockRequest = { op, from: op.node, to, provider, block: op.block, deadline: Math.min(op.deadline, queue.now + DEFAULT_REQUEST_TIMEOUT_MS), settled: false, timeout: undefined }
    op.request = request
    request.timeout = queue.at(request.deadline, () => answered(request, false))
    queue.after(settings.latencyMs, () => serve(request))
  }

  const answered = (request: BlockRequest, ok: boolean): void => {
    if (request.settled) return
    request.settled = true
    queue.cancel(request.timeout)
    const op = request.op
    op.node.pool.release(request.provider.id)
    if (ok) {
      settle(op, true)
    } else {
      op.failures.set(request.provider.id, (op.failures.get(request.provider.id) ?? 0) + 1)
      step(op)
    }
    wakeSlotWaiters(op.node)
  }

  const notFound = (request: BlockRequest): void => {
    relayed404++
    queue.after(settings.latencyMs, () => answered(request, false))
  }

  /** The gateway of `request.to`: the block if held, else the relay (RemoteContent.relay). */
  const serve = (request: BlockRequest): void => {
    if (request.settled) return
    const node = request.to
    if (node.has[request.block] === 1) {
      upload(request)
      return
    }
    const waitUntil = Math.min(request.deadline, queue.now + RELAY_WAIT_MS)
    const onBehalf = (): void => {
      if (!ranksAbove(node.id, request.from.id, rootOf(image.layers[image.layerOf[request.block] as number] as Layer), image.digest[request.block] as Uint8Array)) {
        notFound(request)
        return
      }
      const layer = image.layerOf[request.block] as number
      lookUpSeeders(node, layer)
      fetchRemote(node, request.block, waitUntil, ok => {
        if (ok && !request.settled) upload(request)
        else notFound(request)
      })
    }
    const waiters = node.arriving.get(request.block)
    if (waiters === undefined) {
      onBehalf()
      return
    }
    let over = false
    const timer = queue.at(waitUntil, () => {
      if (over) return
      over = true
      notFound(request)
    })
    waiters.push(() => {
      if (over) return
      over = true
      queue.cancel(timer)
      if (node.has[request.block] === 1) upload(request)
      else onBehalf()
    })
  }

  const upload = (request: BlockRequest): void => {
    const node = request.to
    node.upQueue.push(request)
    if (!node.upBusy) nextUpload(node)
  }

  const nextUpload = (node: SimNode): void => {
    while (node.upHead < node.upQueue.length) {
      const request = node.upQueue[node.upHead++] as BlockRequest
      // Its asker left (timeout, relay wait over): nothing is sent.
      if (request.settled) continue
      if (node.upHead >= 1024 && node.upHead * 2 >= node.upQueue.length) {
        // Sent requests are dropped from the queue now and then, not kept for the whole run.
        node.upQueue = node.upQueue.slice(node.upHead)
        node.upHead = 0
      }
      const bytes = image.size[request.block] as number
      const sent = queue.now + bytes / (node.seeder ? settings.seederUp : settings.up)
      const receiver = request.from
      const received = Math.max(sent, receiver.downFree + bytes / settings.down)
      receiver.downFree = received
      node.sentBytes += bytes
      node.upBusy = true
      queue.at(sent, () => {
        node.upBusy = false
        nextUpload(node)
      })
      queue.at(received + settings.latencyMs, () => answered(request, true))
      return
    }
    node.upQueue = []
    node.upHead = 0
  }

  const fetchRemote = (node: SimNode, block: number, deadline: number, onSettle: (ok: boolean) => void): void => {
    let arrival: Array<() => void> | undefined
    if (!node.arriving.has(block)) {
      arrival = []
      node.arriving.set(block, arrival)
    }
    const op: FetchOp = { node, block, deadline, failures: new Map(), retryRound: 0, settled: false, waitingForSlot: false, request: undefined, timer: undefined, arrival, onSettle }
    if (Number.isFinite(deadline)) op.timer = queue.at(deadline, () => abort(op))
    step(op)
  }

  const lookUpSeeders = (node: SimNode, layer: number): void => {
    if (!Number.isFinite(node.seedersKnownAt[layer] as number)) node.seedersKnownAt[layer] = queue.now + settings.lookupMs
  }

  /** A block this node's own read needs: held, or fetched (and fetched again after a pause if no one could serve it). */
  const fetchOwn = (node: SimNode, block: number, then: () => void): void => {
    if (node.has[block] === 1) {
      queue.after(0, then)
      return
    }
    // Another fetch of this node (a relay's, for a peer) is bringing it: wait for that one.
    const arriving = node.arriving.get(block)
    if (arriving !== undefined) {
      arriving.push(() => {
        if (node.has[block] === 1) then()
        else fetchOwn(node, block, then)
      })
      return
    }
    fetchRemote(node, block, Number.POSITIVE_INFINITY, ok => {
      if (ok) {
        then()
        return
      }
      fetchFailures++
      queue.after(REFETCH_MS, () => fetchOwn(node, block, then))
    })
  }

  /** One layer read whole, as BlockFetcher.fetchFileChunks reads it. */
  const pullLayer = (node: SimNode, layer: Layer, done: () => void): void => {
    lookUpSeeders(node, layer.index)
    queue.at(node.seedersKnownAt[layer.index] as number, () => fetchOwn(node, layer.root, () => {
      const ahead: Array<{ done: boolean }> = []
      let next = 0
      let filling = false
      const fill = (): void => {
        while (!filling && ahead.length < DEFAULT_READ_AHEAD && next < layer.leaves.length) {
          const parent = layer.parents[next] as number
          if (node.has[parent] !== 1) {
            filling = true
            fetchOwn(node, parent, () => {
              filling = false
              fill()
            })
            return
          }
          const slot = { done: false }
          ahead.push(slot)
          fetchOwn(node, layer.leaves[next++] as number, () => {
            slot.done = true
            drain()
          })
        }
        if (ahead.length === 0 && next >= layer.leaves.length && !filling) done()
      }
      const drain = (): void => {
        while (ahead.length > 0 && (ahead[0] as { done: boolean }).done) {
          ahead.shift()
          fill()
        }
      }
      fill()
    }))
  }

  let pullsLeft = pullers.length
  const startPull = (node: SimNode): void => {
    node.start = queue.now
    hear(node, image.layers.map(l => l.index), false)
    const waiting = [...image.layers]
    let running = 0
    let finished = 0
    const next = (): void => {
      while (running < PARALLEL_BLOBS && waiting.length > 0) {
        const layer = waiting.shift() as Layer
        running++
        pullLayer(node, layer, () => {
          running--
          finished++
          hear(node, [layer.index], true)
          if (finished === image.layers.length) {
            node.end = queue.now
            pullsLeft--
          } else {
            next()
          }
        })
      }
    }
    next()
  }

  for (const node of pullers) queue.at(random() * settings.spreadMs, () => startPull(node))
  queue.run()
  if (pullsLeft !== 0) throw new Error(`${pullsLeft} pulls never ended`)

  return {
    pullers: pullers.length,
    durations: pullers.map(n => n.end - n.start),
    seederBytes: nodes.filter(n => n.seeder).reduce((sum, n) => sum + n.sentBytes, 0),
    relayed404,
    fetchFailures,
    events: queue.events,
    wallMs: performance.now() - wallStart,
    simulatedMs: Math.max(...pullers.map(n => n.end))
  }
}

/** A layer's root CID, as the relay code sees it (only hashed, so any unique text will do). */
function rootOf (layer: Layer): string {
  return `bafy-simulated-layer-${layer.index}`
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz'
/** Something shaped like an Ed25519 peer id: a fixed prefix, then random base58. */
function peerId (random: () => number): string {
  let id = '12D3KooW'
  for (let i = 0; i < 44; i++) id += BASE58[Math.floor(random() * BASE58.length)] as string
  return id
}

function quantile (sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] ?? Number.NaN
}

// ---------------------------------------------------------------------------------------------

const settings = (pullers: number): Settings => ({
  pullers,
  imageBytes: Number(values.mib) * MiB,
  layers: Number(values.layers),
  seeders: Number(values.seeders),
  up: gbitToBytesPerMs(Number(values.gbit)),
  down: gbitToBytesPerMs(Number(values['down-gbit'] ?? values.gbit)),
  seederUp: gbitToBytesPerMs(Number(values['seeder-gbit'] ?? values.gbit)),
  latencyMs: Number(values['latency-ms']),
  spreadMs: Number(values['spread-ms']),
  hopMs: Number(values['hop-ms']),
  lookupMs: Number(values['lookup-ms']),
  blockBytes: Number(values['block-mib']) * MiB,
  seed: Number(values.seed)
})

const sizes = (values.nodes ?? '').split(',').map(Number)
const first = settings(sizes[0] ?? 1)
console.log(`Fleet simulation: ${values.mib} MiB image in ${first.layers} layers of ${Number(values['block-mib'])} MiB blocks, ` +
  `${first.seeders} seeder(s) (upload ${values['seeder-gbit'] ?? values.gbit} Gbit/s each), links ${values.gbit} Gbit/s up / ${values['down-gbit'] ?? values.gbit} Gbit/s down per node, ` +
  `${first.latencyMs} ms one way, pulls started within ${first.spreadMs} ms, gossip hop ${first.hopMs} ms, holder lookup ${first.lookupMs} ms.`)
console.log(`Commit ${gitCommit()}; ${machineDescription()}; Node ${process.version}.\n`)
console.log('| N | p50 s | p99 s | max s | max / one node\'s pull | seeder egress (× image) | relay 404s | failed fetch rounds | events | wall s |')
console.log('|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
const rows: Array<Outcome & { settings: Settings }> = []
let single: number | undefined
for (const n of sizes) {
  const s = settings(n)
  const outcome = simulate(s)
  const sorted = [...outcome.durations].sort((a, b) => a - b)
  const max = sorted[sorted.length - 1] as number
  if (n === 1) single = max
  const egress = outcome.seederBytes / buildImage(s).totalBytes
  console.log(`| ${n} | ${(quantile(sorted, 0.5) / 1000).toFixed(2)} | ${(quantile(sorted, 0.99) / 1000).toFixed(2)} | ${(max / 1000).toFixed(2)} | ` +
    `${single === undefined ? '' : (max / single).toFixed(2)} | ${egress.toFixed(2)} | ${outcome.relayed404} | ${outcome.fetchFailures} | ${outcome.events} | ${(outcome.wallMs / 1000).toFixed(1)} |`)
  rows.push({ ...outcome, durations: sorted, settings: s })
}
if (values.json !== undefined) await writeFile(values.json, JSON.stringify(rows, null, 1))
