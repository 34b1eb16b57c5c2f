// curl as tests drive it: never throws; its exit code (0, or why it gave up: 60 is a certificate
// it could not verify), the HTTP status (0 when none) and the body.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

const run = promisify(execFile)

export async function curl (url: string, ...args: string[]): Promise<{ code: number, status: number, body: string }> {
  let stdout: string
  let code = 0
  try {
    ({ stdout } = await run('curl', ['-s', '--max-time', '10', '-w', '\n%{http_code}', ...args, url]))
  } catch (err) {
    code = (err as { code: number }).code
    stdout = (err as { stdout?: string }).stdout ?? ''
  }
  const at = stdout.lastIndexOf('\n')
  return { code, status: Number(stdout.slice(at + 1)) || 0, body: at === -1 ? '' : stdout.slice(0, at) }
}
