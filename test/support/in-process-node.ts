import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DEFAULT_CONFIG } from '../../src/config.ts'
import { ShoalNode } from '../../src/node.ts'

export interface TestNode {
  node: ShoalNode
  url: string
  /** host:port, as image references want it. */
  host: string
  dataDir: string
  stop(): Promise<void>
}

/** A real node in this process on a free loopback port, with a fresh data directory. */
export async function startTestNode (dataDir?: string): Promise<TestNode> {
  const dir = dataDir ?? await mkdtemp(join(tmpdir(), 'shoal-node-'))
  const node = new ShoalNode({ config: { ...DEFAULT_CONFIG, listen: '127.0.0.1:0', data: dir, logLevel: 'silent' } })
  await node.start()
  return {
    node,
    url: node.url,
    host: new URL(node.url).host,
    dataDir: dir,
    async stop () {
      await node.stop()
      if (dataDir === undefined) await rm(dir, { recursive: true, force: true })
    }
  }
}
