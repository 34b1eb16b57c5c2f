// bin/shoal runs dist/ (src/ compiled by scripts/build.sh) only while it is as new as src/, and
// src/ otherwise: an edit, a new file or a checkout after the build is never run stale. The
// launcher is copied into a scratch tree whose two entry points say which one ran.
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import { after, before, describe, it } from 'node:test'
import { REPO_ROOT } from '../support/node-process.ts'

const run = promisify(execFile)

describe('bin/shoal', () => {
  let root: string
  const launch = async (command = 'which'): Promise<string> => (await run(path.join(root, 'bin', 'shoal'), [command], { env: { ...process.env, NODE_COMPILE_CACHE: '', NODE_DISABLE_COMPILE_CACHE: undefined } })).stdout.trim()
  const at = async (file: string, secondsAgo: number): Promise<void> => {
    const time = new Date(Date.now() - secondsAgo * 1000)
    await utimes(path.join(root, file), time, time)
  }

  before(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'shoal-launcher-'))
    await mkdir(path.join(root, 'bin'))
    await copyFile(path.join(REPO_ROOT, 'bin', 'shoal'), path.join(root, 'bin', 'shoal'))
    await mkdir(path.join(root, 'node_modules', 'node', 'bin'), { recursive: true })
    await symlink(path.join(REPO_ROOT, 'node_modules', 'node', 'bin', 'node'), path.join(root, 'node_modules', 'node', 'bin', 'node'))
    await mkdir(path.join(root, 'src', 'cli'), { recursive: true })
    await mkdir(path.join(root, 'dist', 'cli'), { recursive: true })
    await writeFile(path.join(root, 'src', 'cli', 'main.ts'), 'console.log(`src ${String(process.env.NODE_DISABLE_COMPILE_CACHE ?? "")}`)\n')
    await writeFile(path.join(root, 'dist', 'cli', 'main.js'), 'console.log(`dist ${String(process.env.NODE_DISABLE_COMPILE_CACHE ?? "")}`)\n')
  })
  after(async () => { await rm(root, { recursive: true, force: true }) })

  it('runs src/ when there is no build', async () => {
    assert.equal(await launch(), 'src')
  })

  it('runs dist/, without the compile cache, when the build is newer than every source', async () => {
    for (const file of ['src/cli/main.ts', 'src/cli', 'src']) await at(file, 60)
    await writeFile(path.join(root, 'dist', '.built'), '')
    assert.equal(await launch(), 'dist 1')
  })

  it('runs src/ again once a source is edited or added after the build', async () => {
    // The file system's clock may give two writes in a row one time: the stamp is put back.
    await at('dist/.built', 30)
    await writeFile(path.join(root, 'src', 'cli', 'main.ts'), 'console.log("src edited")\n')
    assert.equal(await launch(), 'src edited')

    for (const file of ['src/cli/main.ts', 'src/cli', 'src']) await at(file, 60)
    assert.match(await launch(), /^dist/)
    await writeFile(path.join(root, 'src', 'new-module.ts'), '\n')
    assert.equal(await launch(), 'src edited')
  })

  it('lets the old generation grow by half for serve only: a transfer\'s small heap collected all the time with it', async () => {
    await writeFile(path.join(root, 'src', 'cli', 'main.ts'), 'console.log(process.execArgv.join(" "))\n')
    assert.equal(await launch('serve'), '--max-semi-space-size=2 --heap-growing-percent=50')
    assert.equal(await launch('pull'), '--max-semi-space-size=2')
  })
})
