// What a benchmark report says about where it ran: machine, tool versions, commit.
import { execFileSync } from 'node:child_process'
import os from 'node:os'
import { REPO_ROOT } from '../test/support/node-process.ts'

export function machineDescription (): string {
  const cpu = os.cpus()[0]?.model.trim() ?? 'unknown CPU'
  return `${os.availableParallelism()} × ${cpu}, ${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB RAM, Linux ${os.release()}`
}

export function toolVersion (command: string, args: string[]): string {
  try {
    return execFileSync(command, args, { encoding: 'utf8' }).trim()
  } catch {
    return `${command} (version unknown)`
  }
}

/** The commit measured, marked when src/ differs from it. */
export function gitCommit (): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim()
    return dirty === '' ? commit : `${commit} (src/ modified)`
  } catch {
    return '(none)'
  }
}
