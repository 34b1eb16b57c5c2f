// What a mesh test file makes and takes down after: block stores in temporary directories and
// HTTP servers (stand-in providers) on loopback.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FsBlockstore } from '../../src/content/fs-blockstore.ts'
import type { Provider } from '../../src/mesh/provider-pool.ts'

export class Scratch {
  private readonly dirs: string[] = []
  private readonly servers = new Set<Server>()

  /** A block store of its own, so each test starts holding nothing. */
  async blockstore (): Promise<FsBlockstore> {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-scratch-'))
    this.dirs.push(dir)
    const store = new FsBlockstore(dir)
    await store.start()
    return store
  }

  /** Listens on a free loopback port until cleanup; the server's URL. */
  async listen (server: Server): Promise<string> {
    this.servers.add(server)
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    if (typeof address !== 'object' || address === null) throw new Error('the server has no port')
    return `http://127.0.0.1:${address.port}`
  }

  /** A provider that answers every block request with bytes that are not the block. */
  async liar (): Promise<Provider> {
    return { id: 'liar', url: await this.listen(createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/vnd.ipld.raw' }).end(randomBytes(4096)))) }
  }

  /** A provider at a port where nothing listens any more. */
  async deadProvider (): Promise<Provider> {
    const server = createServer()
    const url = await this.listen(server)
    this.servers.delete(server)
    await new Promise(resolve => server.close(resolve))
    return { id: 'dead', url }
  }

  async cleanup (): Promise<void> {
    for (const server of this.servers) {
      server.closeAllConnections()
      server.close()
    }
    await Promise.all(this.dirs.map(async dir => await rm(dir, { recursive: true, force: true })))
  }
}
