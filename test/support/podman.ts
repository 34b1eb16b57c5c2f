// Runs podman isolated from the machine's own containers: a scratch storage (vfs, no overlay
// mount needed), runtime and configuration directories per call, an accept-anything signature
// policy and an empty registries.conf. Only what a pull needs: no container is ever run.
import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface PodmanPullOptions {
  /** Verify the registry's certificate against the CAs (`*.crt`) in this directory; none: plain HTTP, unverified. */
  certDir?: string
  /** `user:password`. */
  creds?: string
}

/** `podman pull <ref>` into a throwaway store; answers the pulled image's id (its config digest, hex). Rejects with podman's stderr. */
export async function podmanPull (ref: string, options: PodmanPullOptions = {}): Promise<string> {
  const scratch = await mkdtemp(join(tmpdir(), 'shoal-podman-'))
  try {
    for (const sub of ['xdg', 'config', 'data', 'tmp']) await mkdir(join(scratch, sub), { recursive: true, mode: 0o700 })
    await writeFile(join(scratch, 'policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }))
    await writeFile(join(scratch, 'registries.conf'), '')
    const args = [
      '--root', join(scratch, 'root'), '--runroot', join(scratch, 'run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file',
      'pull', '--quiet', '--signature-policy', join(scratch, 'policy.json'),
      ...(options.certDir === undefined ? ['--tls-verify=false'] : ['--cert-dir', options.certDir]),
      ...(options.creds === undefined ? [] : ['--creds', options.creds]),
      ref
    ]
    try {
      const { stdout } = await run('podman', args, {
        timeout: 120_000,
        env: { PATH: process.env.PATH, HOME: scratch, XDG_RUNTIME_DIR: join(scratch, 'xdg'), XDG_CONFIG_HOME: join(scratch, 'config'), XDG_DATA_HOME: join(scratch, 'data'), TMPDIR: join(scratch, 'tmp'), CONTAINERS_REGISTRIES_CONF: join(scratch, 'registries.conf') }
      })
      return stdout.trim()
    } catch (err) {
      throw new Error(`podman pull ${ref} failed: ${((err as { stderr?: string }).stderr ?? (err as Error).message).trim()}`, { cause: err })
    }
  } finally {
    await rm(scratch, { recursive: true, force: true })
  }
}
