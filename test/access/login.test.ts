// The web UI's sign-in in a real browser (issue 12): Debian's chromium through playwright-core
// against a node with users. Session cookie attributes, CSRF tokens on changes, sign-out.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { htpasswdText } from '../support/htpasswd.ts'
import { chromium, type Browser, type Page } from 'playwright-core'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'

const CHROMIUM = '/usr/bin/chromium'
/** The page's document, as the functions run in Chromium use it (no DOM types in this project). */
declare const document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null, cookie: string }

describe('signing in to the web UI', () => {
  let dir: string
  let node: TestNode
  let browser: Browser
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/ensure-tools.sh (as root it installs it) or apt-get install chromium`)
    dir = await mkdtemp(join(tmpdir(), 'shoal-login-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText({ alice: 'alice-pw', root: 'root-pw' }))
    node = await startTestNode({ config: { htpasswd: join(dir, 'htpasswd'), admins: ['root'] } })
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] })
  })
  after(async () => {
    await browser?.close()
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  const signIn = async (page: Page, user: string, password: string): Promise<void> => {
    await page.fill('#username', user)
    await page.fill('#password', password)
    await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')])
  }
  /** A change as the UI's script makes it, with or without the page's CSRF token. */
  const createStrategy = async (page: Page, withToken: boolean): Promise<{ status: number, message: string }> => await page.evaluate(async (withToken) => {
    const token = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content') ?? ''
    const response = await fetch('/api/v1/strategies', { method: 'POST', headers: { 'content-type': 'application/json', ...(withToken ? { 'x-csrf-token': token } : {}) }, body: JSON.stringify({ image: 'a:1', kind: 'all' }) })
    return { status: response.status, message: ((await response.json()) as { message: string }).message }
  }, withToken)

  it('sends a browser to the sign-in page, refuses a wrong password, and signs in with a cookie no script can read', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`${node.url}/nodes`)
    assert.equal(new URL(page.url()).pathname, '/login')
    assert.equal(new URL(page.url()).searchParams.get('next'), '/nodes')
    await signIn(page, 'alice', 'nope')
    assert.match(await page.textContent('[role=alert]') ?? '', /Wrong user name or password/)
    await signIn(page, 'alice', 'alice-pw')
    assert.equal(new URL(page.url()).pathname, '/nodes')
    assert.match(await page.textContent('.session') ?? '', /alice/)
    const [cookie] = (await context.cookies()).filter(candidate => candidate.name === 'shoal_session')
    assert.ok(cookie !== undefined)
    assert.equal(cookie.httpOnly, true)
    assert.equal(cookie.sameSite, 'Strict')
    assert.equal(cookie.secure, false, 'plain HTTP here; Secure under TLS')
    assert.equal(await page.evaluate(() => document.cookie), '', 'HttpOnly: scripts cannot read it')
    await context.close()
  })

  it('refuses a change without the CSRF token, and lets only admins make one with it', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`${node.url}/`)
    await signIn(page, 'alice', 'alice-pw')
    const bare = await createStrategy(page, false)
    assert.equal(bare.status, 403)
    assert.match(bare.message, /CSRF token/)
    const notAdmin = await createStrategy(page, true)
    assert.equal(notAdmin.status, 403)
    assert.match(notAdmin.message, /alice is not an admin/)
    await context.close()
    const rootContext = await browser.newContext()
    const rootPage = await rootContext.newPage()
    await rootPage.goto(`${node.url}/`)
    await signIn(rootPage, 'root', 'root-pw')
    // Past the guard: this node is in no mesh, which the API says (409).
    assert.equal((await createStrategy(rootPage, true)).status, 409)
    await rootContext.close()
  })

  it('sends a signed-in browser only to a page of this node, whatever next says', async () => {
    for (const next of ['//evil.example/x', '/\t/evil.example', '/\\evil.example', 'https://evil.example/', '/%0d%0aSet-Cookie:x=y']) {
      const response = await fetch(`${node.url}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ username: 'alice', password: 'alice-pw', next }).toString() })
      assert.equal(response.status, 303, next)
      const location = response.headers.get('location') ?? ''
      assert.ok(location.startsWith('/') && !location.startsWith('//') && !location.includes('evil.example') && !/[\r\n\t\\]/.test(location), `${JSON.stringify(next)} -> ${JSON.stringify(location)}`)
    }
    const kept = await fetch(`${node.url}/login`, { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams({ username: 'alice', password: 'alice-pw', next: '/nodes?x=1' }).toString() })
    assert.equal(kept.headers.get('location'), '/nodes?x=1')
  })

  it('signs out: the session ends and pages send the browser to sign in again', async () => {
    const context = await browser.newContext()
    const page = await context.newPage()
    await page.goto(`${node.url}/`)
    await signIn(page, 'alice', 'alice-pw')
    const [cookie] = (await context.cookies()).filter(candidate => candidate.name === 'shoal_session')
    await Promise.all([page.waitForLoadState('load'), page.click('.session button')])
    assert.equal(new URL(page.url()).pathname, '/login')
    // The old session id is dead on the node, not only dropped by the browser.
    const replayed = await fetch(`${node.url}/api/v1/nodes`, { headers: { cookie: `shoal_session=${cookie?.value ?? ''}` } })
    assert.equal(replayed.status, 401)
    await page.goto(`${node.url}/`)
    assert.equal(new URL(page.url()).pathname, '/login')
    await context.close()
  })
})
