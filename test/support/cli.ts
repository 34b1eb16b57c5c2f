import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { REPO_ROOT } from './node-process.ts'

const run = promisify(execFile)

/** Runs the CLI as users do (`bin/shoal <args>`); a failure is an answer with its exit code, not a throw. */
export async function shoal (...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> {
  return await shoalWith({}, ...args)
}

/** The same, with these environment variables added. */
export async function shoalWith (env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ stdout: string, stderr: string, code: number }> {
  try {
    const { stdout, stderr } = await run(join(REPO_ROOT, 'bin', 'shoal'), args, { cwd: REPO_ROOT, env: { ...process.env, ...env } })
    return { stdout, stderr, code: 0 }
  } catch (err) {
    const failed = err as { stdout: string, stderr: string, code: number }
    return { stdout: failed.stdout, stderr: failed.stderr, code: failed.code }
  }
}
