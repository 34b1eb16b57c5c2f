// A private containerd for tests (shared/notes/containerd.md): its own root, state and socket in a
// scratch directory, no CRI, the native snapshotter (overlay may not mount in a sandbox). `ctr`
// talks to it; nothing of the machine's own containerd is touched.
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface Containerd {
  /** `ctr --address <socket> <args>`; rejects with ctr's stderr. */
  ctr(...args: string[]): Promise<string>
  stop(): Promise<void>
}

export async function startContainerd (): Promise<Containerd> {
  const dir = await mkdtemp(join(tmpdir(), 'shoal-containerd-'))
  const socket = join(dir, 'sock')
  await writeFile(join(dir, 'config.toml'), [
    'version = 2',
    `root = "${dir}/root"`,
    `state = "${dir}/state"`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]',
    '[grpc]',
    `  address = "${socket}"`,
    '[ttrpc]',
    `  address = "${socket}.ttrpc"`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = "${dir}/opt"`,
    ''
  ].join('\n'))
  const daemon: ChildProcess = spawn('containerd', ['--config', join(dir, 'config.toml')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let log = ''
  daemon.stderr?.on('data', (chunk: Buffer) => { log = (log + chunk.toString()).slice(-8192) })
  const deadline = Date.now() + 20_000
  while (!existsSync(socket)) {
    if (Date.now() > deadline || daemon.exitCode !== null) {
      daemon.kill('SIGKILL')
      throw new Error(`containerd did not start: ${log}`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return {
    async ctr (...args) {
      try {
        const { stdout } = await run('ctr', ['--address', socket, ...args], { env: { ...process.env, CONTAINERD_SNAPSHOTTER: 'native' }, timeout: 120_000 })
        return stdout
      } catch (err) {
        throw new Error(`ctr ${args.join(' ')} failed: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`, { cause: err })
      }
    },
    async stop () {
      daemon.kill('SIGTERM')
      await new Promise(resolve => { if (daemon.exitCode !== null) resolve(undefined); else daemon.once('exit', resolve) })
      await rm(dir, { recursive: true, force: true })
    }
  }
}
