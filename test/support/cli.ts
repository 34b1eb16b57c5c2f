import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { REPO_ROOT } from './node-process.ts'

const run = promisify(execFile)

/** Runs the CLI (`shoal <args>`) on this Node; a failure is an answer with its exit code, not a throw. */
export async function shoal (...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> {
  try {
    const { stdout, stderr } = await run(process.execPath, ['src/cli/main.ts', ...args], { cwd: REPO_ROOT })
    return { stdout, stderr, code: 0 }
  } catch (err) {
    const failed = err as { stdout: string, stderr: string, code: number }
    return { stdout: failed.stdout, stderr: failed.stderr, code: failed.code }
  }
}
