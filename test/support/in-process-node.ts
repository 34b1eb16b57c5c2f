import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { DEFAULT_CONFIG, type Config } from '../../src/config.ts'
import { ShoalNode } from '../../src/node.ts'

export interface TestNode {
  node: ShoalNode
  url: string
  /** host:port, as image references want it. */
  host: string
  /** The port alone, for raw sockets. */
  port: number
  dataDir: string
  /** Log lines (parsed JSON) at warn and above, for tests that assert what the node said. */
  logs: Array<Record<string, unknown>>
  stop(): Promise<void>
}

export interface TestNodeOptions {
  /** Reuse a data directory (it is then kept at stop). */
  dataDir?: string
  config?: Partial<Config>
}

/** A real node in this process on a free loopback port, with a fresh data directory. */
export async function startTestNode (options: TestNodeOptions = {}): Promise<TestNode> {
  const dir = options.dataDir ?? await mkdtemp(join(tmpdir(), 'shoal-node-'))
  const logs: Array<Record<string, unknown>> = []
  const sink = new Writable({
    write (chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line !== '') logs.push(JSON.parse(line) as Record<string, unknown>)
      done()
    }
  })
  const node = await ShoalNode.create({
    config: { ...DEFAULT_CONFIG, listen: '127.0.0.1:0', data: dir, ...options.config },
    logger: pino({ level: 'warn' }, sink)
  })
  await node.start()
  return {
    node,
    url: node.url,
    host: new URL(node.url).host,
    port: Number(new URL(node.url).port),
    dataDir: dir,
    logs,
    async stop () {
      await node.stop()
      if (options.dataDir === undefined) await rm(dir, { recursive: true, force: true })
    }
  }
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T> (check: () => Promise<T | undefined>, timeoutMs = 10_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < deadline) {
    try {
      const value = await check()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : `: ${String(last)}`}`)
}

/**
 * A fleet in this process: the first node starts the mesh, the others join through it; resolves
 * once every node's inventory lists them all.
 */
export async function startFleet (count: number, config: Partial<Config> | ((index: number) => Partial<Config>) = {}): Promise<TestNode[]> {
  const configOf = typeof config === 'function' ? config : () => config
  const first = await startTestNode({ config: { ...configOf(0), mesh: true } })
  const peers = [first.node.fleet?.mesh.addresses[0] ?? '']
  const nodes = [first]
  for (let i = 1; i < count; i++) nodes.push(await startTestNode({ config: { ...configOf(i), peers } }))
  await Promise.all(nodes.map(async node => await eventually(
    async () => ((await node.node.fleet?.nodes())?.length ?? 0) >= count ? true : undefined, 15_000, 'the fleet to form')))
  return nodes
}
