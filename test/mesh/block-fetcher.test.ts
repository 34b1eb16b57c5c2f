// The mesh's byte path: blocks fetched from real nodes over the trustless gateway, each
// verified against its CID before it is stored or handed on.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { createServer } from 'node:http'
import { setTimeout as sleep } from 'node:timers/promises'
import { after, before, describe, it } from 'node:test'
import { CarReader } from '@ipld/car'
import Fastify from 'fastify'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256, sha512 } from 'multiformats/hashes/sha2'
import type { PooledBytes } from '../../src/content/chunk-pool.ts'
import { walkDag } from '../../src/content/dag-reader.ts'
import type { FsBlockstore } from '../../src/content/fs-blockstore.ts'
import { CHUNK_SIZE } from '../../src/content/unixfs-dag.ts'
import { BlockFetcher, BlockUnavailableError, UnsupportedHashError, type Provider } from '../../src/mesh/block-fetcher.ts'
import { registerGatewayRoutes } from '../../src/mesh/gateway-routes.ts'
import { TokenBucket } from '../../src/mesh/token-bucket.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { Scratch } from '../support/scratch.ts'

const MiB = 1024 * 1024

describe('BlockFetcher', () => {
  let nodeA: TestNode
  let nodeB: TestNode
  let providerA: Provider
  let blob: Buffer
  let blobCid: CID
  let imageCid: CID
  const scratch = new Scratch()

  before(async () => {
    ;[nodeA, nodeB] = await Promise.all([startTestNode(), startTestNode()])
    providerA = { id: 'node-a', url: nodeA.url }
    const registry = new RegistryClient(nodeA.url)
    // Random bytes: five distinct leaves, not one leaf stored once and linked five times.
    blob = randomBytes(5 * MiB)
    const digest = await registry.pushBlob('mesh/blob', blob)
    blobCid = CID.parse((await nodeA.node.metadata.getBlob(digest))?.cid ?? '')
    const { response } = await registry.pushImage('mesh/app', 'v1', randomBytes(MiB + MiB / 4).toString('hex'))
    imageCid = CID.parse(response.headers.get('shoal-image-cid') ?? '')
  })

  after(async () => {
    await scratch.cleanup()
    await Promise.all([nodeA.stop(), nodeB.stop()])
  })

  /** Proxies to node A that count requests and how many overlap; `delay` runs before each. */
  async function countingProxies (ids: string[], delay: () => Promise<void>): Promise<{ providers: Provider[], peaks: Map<string, number>, served: Map<string, number> }> {
    const peaks = new Map<string, number>()
    const served = new Map<string, number>()
    const providers = await Promise.all(ids.map(async id => {
      let active = 0
      const url = await scratch.listen(createServer((req, res) => {
        active++
        peaks.set(id, Math.max(peaks.get(id) ?? 0, active))
        served.set(id, (served.get(id) ?? 0) + 1)
        void (async () => {
          await delay()
          const upstream = await fetch(`${nodeA.url}${req.url ?? ''}`, { headers: { accept: req.headers.accept ?? '' } })
          const body = Buffer.from(await upstream.arrayBuffer())
          active--
          res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? '' }).end(body)
        })()
      }))
      return { id, url }
    }))
    return { providers, peaks, served }
  }

  async function collect (chunks: AsyncIterable<PooledBytes>): Promise<Buffer> {
    const parts: Buffer[] = []
    for await (const chunk of chunks) {
      parts.push(Buffer.from(chunk.bytes))
      chunk.release()
    }
    return Buffer.concat(parts)
  }

  /** Every block a store holds hashes to the name it is stored under. */
  async function assertEveryBlockVerifies (store: FsBlockstore): Promise<number> {
    let count = 0
    for await (const { cid, bytes } of store.getAll()) {
      const parts: Uint8Array[] = []
      for await (const part of bytes) parts.push(part)
      assert.deepEqual(createHash('sha256').update(Buffer.concat(parts)).digest(), Buffer.from(cid.multihash.digest), `block ${cid.toString()}`)
      count++
    }
    return count
  }

  async function dagBlocks (store: FsBlockstore, root: CID): Promise<string[]> {
    const cids: string[] = []
    for await (const { cid } of walkDag(store, root)) cids.push(cid.toString())
    return cids
  }

  it('streams a whole blob from another node, stores every block and counts them in metrics', async () => {
    const fetched: Array<[string, number]> = []
    const metrics = nodeB.node.metrics
    const fetcher = new BlockFetcher({
      blockstore: nodeB.node.blockstore,
      onBlockFetched: (provider, size) => {
        fetched.push([provider.id, size])
        metrics.meshBlocksFetched.inc({ provider: provider.id })
        metrics.meshBytesFetched.inc({ provider: provider.id }, size)
      }
    })
    const bytes = await collect(fetcher.fetchFileChunks(blobCid, [providerA], 0, blob.length - 1, AbortSignal.timeout(10_000)))
    assert.ok(bytes.equals(blob), 'bytes identical to what was pushed')
    // The root and five leaves, each fetched once, all from A.
    assert.equal(fetched.length, 6)
    assert.ok(fetched.every(([id]) => id === 'node-a'))
    assert.deepEqual(await dagBlocks(nodeB.node.blockstore, blobCid), await dagBlocks(nodeA.node.blockstore, blobCid))

    const exposition = await (await fetch(`${nodeB.url}/metrics`)).text()
    assert.match(exposition, /shoal_mesh_blocks_fetched_total\{provider="node-a"\} 6/)
    assert.match(exposition, /shoal_mesh_bad_blocks_total/)

    // B now holds the blob: reading it again asks nobody, and B serves it to others.
    const again = await collect(fetcher.fetchFileChunks(blobCid, [await scratch.deadProvider()], 0, blob.length - 1, AbortSignal.timeout(5_000)))
    assert.ok(again.equals(blob))
    assert.equal(fetched.length, 6)
    const fromB = new BlockFetcher({ blockstore: await scratch.blockstore() })
    const viaB = await collect(fromB.fetchFileChunks(blobCid, [{ id: 'node-b', url: nodeB.url }], 0, blob.length - 1, AbortSignal.timeout(10_000)))
    assert.ok(viaB.equals(blob))
  })

  it('fetches only the leaves a range overlaps, and yields exactly that range', async () => {
    const store = await scratch.blockstore()
    const fetched: number[] = []
    const fetcher = new BlockFetcher({ blockstore: store, onBlockFetched: (_provider, size) => fetched.push(size) })
    const start = CHUNK_SIZE - 100
    const end = 3 * CHUNK_SIZE + 50
    const bytes = await collect(fetcher.fetchFileChunks(blobCid, [providerA], start, end, AbortSignal.timeout(10_000)))
    assert.ok(bytes.equals(blob.subarray(start, end + 1)))
    // The root and leaves 0-3 of 0-4.
    assert.equal(fetched.length, 5)
    assert.equal(fetched.filter(size => size === CHUNK_SIZE).length, 4)
    // Inside a single leaf, and a single byte.
    assert.ok((await collect(fetcher.fetchFileChunks(blobCid, [providerA], 10, 20, AbortSignal.timeout(5_000)))).equals(blob.subarray(10, 21)))
    assert.ok((await collect(fetcher.fetchFileChunks(blobCid, [providerA], blob.length - 1, blob.length - 1, AbortSignal.timeout(5_000)))).equals(blob.subarray(-1)))
  })

  it('pulls a whole image directory; the receiving node then serves it as ipfs/<cid>', async () => {
    const progress: number[] = []
    const fetcher = new BlockFetcher({ blockstore: nodeB.node.blockstore })
    const result = await fetcher.fetchDag(imageCid, [providerA], AbortSignal.timeout(10_000), p => progress.push(p.blocks))
    const expected = await dagBlocks(nodeA.node.blockstore, imageCid)
    assert.deepEqual(await dagBlocks(nodeB.node.blockstore, imageCid), expected)
    assert.equal(result.blocks, expected.length)
    assert.equal(result.fetchedBlocks, expected.length)
    assert.deepEqual(progress, expected.map((_cid, i) => i + 1))

    const manifest = await fetch(`${nodeB.url}/v2/ipfs/${imageCid.toString()}/manifests/latest`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
    assert.equal(manifest.status, 200, await manifest.clone().text())

    // A second pull finds everything held and fetches nothing.
    const again = await fetcher.fetchDag(imageCid, [await scratch.deadProvider()], AbortSignal.timeout(5_000))
    assert.equal(again.fetchedBlocks, 0)
    assert.equal(again.blocks, expected.length)
  })

  it('settles with the error when onProgress throws, and stops fetching', async () => {
    const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore() })
    let calls = 0
    const fetching = fetcher.fetchDag(imageCid, [providerA], AbortSignal.timeout(10_000), () => {
      calls++
      if (calls === 2) throw new Error('progress sink failed')
    })
    const outcome = await Promise.race([
      fetching.then(() => 'resolved', (err: unknown) => err),
      sleep(5_000).then(() => 'still pending after 5 s')
    ])
    assert.ok(outcome instanceof Error, `fetchDag ended as: ${String(outcome)}`)
    assert.equal(outcome.message, 'progress sink failed')
    assert.equal(calls, 2, 'no progress is reported after the sink failed')
  })

  it('drops a provider that sends wrong bytes, never stores them, and gets the block elsewhere', async () => {
    const liar = await scratch.liar()
    const store = await scratch.blockstore()
    const bad: string[] = []
    // One request per provider at a time, so the liar is certainly asked for some leaves.
    const fetcher = new BlockFetcher({ blockstore: store, maxInFlightPerProvider: 1, onBadBlock: (provider, cid) => bad.push(`${provider.id} ${cid.toString()}`) })
    const bytes = await collect(fetcher.fetchFileChunks(blobCid, [liar, providerA], 0, blob.length - 1, AbortSignal.timeout(10_000)))
    assert.ok(bytes.equals(blob))
    assert.ok(bad.length >= 1, 'the liar was caught')
    assert.ok(bad.every(entry => entry.startsWith('liar ')))
    assert.equal(await assertEveryBlockVerifies(store), 6)

    // With only the liar, a block is unavailable; nothing is stored.
    const leaf = CID.parse((await dagBlocks(nodeA.node.blockstore, imageCid)).at(-1) ?? '')
    const caught: string[] = []
    const alone = new BlockFetcher({ blockstore: store, onBadBlock: provider => caught.push(provider.id) })
    await assert.rejects(alone.fetchBlock(leaf, [liar], AbortSignal.timeout(5_000)), (err: unknown) => {
      assert.ok(err instanceof BlockUnavailableError)
      assert.match(err.message, /liar: sent bytes that do not match the CID/)
      return true
    })
    assert.deepEqual(caught, ['liar'], 'a lying provider is asked once per block, not retried')
    assert.equal(await store.has(leaf), false)
  })

  it('gets past a dead provider and one that never answers', async () => {
    const hanging = { id: 'hanging', url: await scratch.listen(createServer(() => { /* never answers */ })) }
    const store = await scratch.blockstore()
    const fetcher = new BlockFetcher({ blockstore: store, requestTimeoutMs: 300 })
    const started = performance.now()
    const bytes = await collect(fetcher.fetchFileChunks(blobCid, [await scratch.deadProvider(), hanging, providerA], 0, blob.length - 1, AbortSignal.timeout(10_000)))
    assert.ok(bytes.equals(blob))
    assert.ok(performance.now() - started < 5_000, 'the hanging provider cost timeouts, not the test')
  })

  it('throws BlockUnavailableError when no provider can deliver, naming why', async () => {
    const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore(), retryDelayMs: 20 })
    const missing = CID.createV1(raw.code, await sha256.digest(randomBytes(32)))
    await assert.rejects(fetcher.fetchBlock(missing, [providerA, await scratch.deadProvider()], AbortSignal.timeout(5_000)), (err: unknown) => {
      assert.ok(err instanceof BlockUnavailableError)
      assert.equal(err.cid.toString(), missing.toString())
      assert.match(err.message, /node-a: HTTP 404/)
      assert.match(err.message, /dead: connect ECONNREFUSED/)
      // Each asked twice: once, then again after all had failed.
      assert.equal(err.reasons.length, 4)
      return true
    })
    await assert.rejects(fetcher.fetchBlock(blobCid, [], AbortSignal.timeout(5_000)), BlockUnavailableError)
    const sha512Cid = CID.createV1(raw.code, await sha512.digest(randomBytes(8)))
    await assert.rejects(fetcher.fetchBlock(sha512Cid, [providerA], AbortSignal.timeout(5_000)), UnsupportedHashError)
  })

  it('keeps at most maxInFlightPerProvider requests at each provider and spreads the load', async () => {
    const { providers, peaks, served } = await countingProxies(['p1', 'p2'], async () => await sleep(30))
    const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore(), maxInFlightPerProvider: 2 })
    // Two readers at once: the cap holds across fetches, not per fetch.
    const [one, two] = await Promise.all([
      collect(fetcher.fetchFileChunks(blobCid, providers, 0, blob.length - 1, AbortSignal.timeout(10_000))),
      fetcher.fetchDag(imageCid, providers, AbortSignal.timeout(10_000))
    ])
    assert.ok(one.equals(blob))
    assert.ok(two.fetchedBlocks > 0)
    assert.deepEqual([peaks.get('p1'), peaks.get('p2')], [2, 2])
    assert.ok((served.get('p1') ?? 0) >= 3 && (served.get('p2') ?? 0) >= 3, `both providers served: ${JSON.stringify([...served])}`)
  })

  it('reads ahead a bounded number of leaves and yields them in order, however they arrive', async () => {
    // Random delays: leaves complete out of order.
    const { providers, peaks, served } = await countingProxies(['p'], async () => await sleep(Math.random() * 60))
    const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore(), readAhead: 3 })
    const chunks = fetcher.fetchFileChunks(blobCid, providers, 0, blob.length - 1, AbortSignal.timeout(10_000))[Symbol.asyncIterator]()
    const first = await chunks.next()
    assert.equal(first.done, false)
    const parts = [Buffer.from(first.value.bytes)]
    first.value.release()
    // A reader that stalls holds up further fetches: the root, the leaf it has, three ahead.
    await sleep(300)
    assert.equal(served.get('p'), 1 + 1 + 3)
    for (let next = await chunks.next(); next.done !== true; next = await chunks.next()) {
      parts.push(Buffer.from(next.value.bytes))
      next.value.release()
    }
    assert.ok(Buffer.concat(parts).equals(blob))
    assert.equal(peaks.get('p'), 3, 'leaves were fetched three at a time')
  })

  it('stops when its signal aborts', async () => {
    const hanging = { id: 'hanging', url: await scratch.listen(createServer(() => { /* never answers */ })) }
    const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore() })
    const controller = new AbortController()
    setTimeout(() => controller.abort(), 100)
    const started = performance.now()
    await assert.rejects(collect(fetcher.fetchFileChunks(blobCid, [hanging], 0, blob.length - 1, controller.signal)), { name: 'AbortError' })
    await assert.rejects(fetcher.fetchDag(imageCid, [hanging], AbortSignal.abort()), { name: 'AbortError' })
    assert.ok(performance.now() - started < 2_000)
  })

  it('a gateway with an upload cap of 2 MB/s takes about a second to serve 3 MiB', async () => {
    const digest = await new RegistryClient(nodeA.url).pushBlob('mesh/capped', randomBytes(3 * MiB))
    const cid = CID.parse((await nodeA.node.metadata.getBlob(digest))?.cid ?? '')
    const gateway = Fastify()
    registerGatewayRoutes(gateway, { blocks: nodeA.node.blockstore, metrics: nodeA.node.metrics, uploadLimiter: new TokenBucket({ bytesPerSecond: 2_000_000 }) })
    await gateway.listen({ host: '127.0.0.1', port: 0 })
    try {
      const address = gateway.server.address()
      assert.ok(typeof address === 'object' && address !== null)
      const fetcher = new BlockFetcher({ blockstore: await scratch.blockstore() })
      const started = performance.now()
      const bytes = await collect(fetcher.fetchFileChunks(cid, [{ id: 'capped', url: `http://127.0.0.1:${address.port}` }], 0, 3 * MiB - 1, AbortSignal.timeout(10_000)))
      const seconds = (performance.now() - started) / 1000
      assert.equal(bytes.length, 3 * MiB)
      // A full bucket (1 MiB burst) covers the first leaf; the other 2 MiB go at 2 MB/s: ~1.05 s.
      assert.ok(seconds >= 0.9, `took ${seconds.toFixed(2)} s`)

      // CARs are paced block by block too, and still whole. The bucket is empty by now, so the
      // image's ~2.6 MB go at 2 MB/s.
      const carStarted = performance.now()
      const car = await CarReader.fromBytes(new Uint8Array(await (await fetch(`http://127.0.0.1:${address.port}/ipfs/${imageCid.toString()}?format=car`)).arrayBuffer()))
      const carSeconds = (performance.now() - carStarted) / 1000
      const carBlocks: string[] = []
      for await (const block of car.blocks()) carBlocks.push(block.cid.toString())
      assert.deepEqual(carBlocks, await dagBlocks(nodeA.node.blockstore, imageCid))
      assert.ok(carSeconds >= 0.9, `CAR took ${carSeconds.toFixed(2)} s`)
    } finally {
      await gateway.close()
    }
  })
})

describe('TokenBucket', () => {
  it('serves takers in order at the configured rate and lets an aborted taker go', async () => {
    const bucket = new TokenBucket({ bytesPerSecond: 100_000, burstBytes: 10_000 })
    const started = performance.now()
    await bucket.take(10_000) // the burst: immediate
    assert.ok(performance.now() - started < 50)
    const order: number[] = []
    const aborted = new AbortController()
    const waits = [
      bucket.take(10_000).then(() => order.push(1)),
      bucket.take(10_000, aborted.signal).then(() => order.push(99), () => order.push(-1)),
      bucket.take(10_000).then(() => order.push(3))
    ]
    aborted.abort()
    await Promise.all(waits)
    // The aborted taker took nothing: two more bursts of 10 kB at 100 kB/s are ~0.2 s.
    const seconds = (performance.now() - started) / 1000
    assert.deepEqual(order, [-1, 1, 3])
    assert.ok(seconds >= 0.18 && seconds < 1, `took ${seconds.toFixed(3)} s`)
    await assert.rejects(bucket.take(1, AbortSignal.abort()), { name: 'AbortError' })
  })
})
