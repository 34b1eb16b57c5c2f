// The web UI in a real browser (Debian's chromium through playwright-core) against two real nodes:
// an image pushed with skopeo shows up live with its CID; a 50 % strategy made with the keyboard
// in the form reaches `held` on the node placement chose; an invalid one shows the API's message;
// deleting asks first; the nodes, peers and data store pages show the fleet. Screenshots of every
// page go to test/web/out/ for a person to look at.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { chromium, type Browser, type Page } from 'playwright-core'
import { eventually, startFleet, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { copyToRegistry } from '../support/skopeo.ts'
import { startFakeNode } from './fake-api.ts'

const CHROMIUM = '/usr/bin/chromium'
const SCREENSHOTS = join(import.meta.dirname, 'out')
const REPOSITORY = 'ui/app'
const TAG = '1.0'
const IMAGE = `${REPOSITORY}:${TAG}`

interface StatusAnswer { desired: Array<{ node: string, name: string, state: string }> }

describe('the web UI in a browser, on two real nodes', () => {
  let nodes: TestNode[]
  let browser: Browser
  let page: Page
  let work: string
  let a: TestNode
  let b: TestNode

  before(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: the web UI tests drive Debian's chromium. Run scripts/ensure-tools.sh (as root it installs it) or apt-get install chromium`)
    }
    work = await mkdtemp(join(tmpdir(), 'shoal-ui-'))
    await mkdir(SCREENSHOTS, { recursive: true })
    nodes = await startFleet(2, index => ({ name: `node-${'ab'[index]}`, labels: { zone: index === 0 ? 'eu' : 'us' }, heartbeatSeconds: 1, gcGraceSeconds: 0 }))
    ;[a, b] = nodes as [TestNode, TestNode]
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] })
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, permissions: ['clipboard-read', 'clipboard-write'] })
    page = await context.newPage()
  })

  after(async () => {
    await browser?.close()
    await Promise.all((nodes ?? []).map(async node => { await node.stop() }))
    if (work !== undefined) await rm(work, { recursive: true, force: true })
  })

  const screenshot = async (name: string): Promise<void> => {
    await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true })
  }
  const idOf = (node: TestNode): string => node.node.fleet?.mesh.peerId ?? ''
  // Expressions run in the page (this project's types have no DOM).
  const focusedId = async (): Promise<unknown> => await page.evaluate('document.activeElement?.id')
  const focusedText = async (): Promise<unknown> => await page.evaluate('document.activeElement?.textContent')

  it('shows an empty Images page, then the image pushed with skopeo, live, with its CID and pull line', async () => {
    await page.goto(`${a.url}/`)
    await page.getByText('No images yet').waitFor()
    await screenshot('images-empty')

    await createImageLayout(join(work, 'app'), { layers: [300_000, 120_000], seed: 'web-ui' })
    await copyToRegistry(join(work, 'app'), `${b.host}/${IMAGE}`)
    const imageCid = await eventually(async () => (await a.node.fleet?.catalogue.getTag(REPOSITORY, TAG))?.imageCid, 10_000, 'the tag on node a')

    // No reload: the page's live region picks it up.
    const card = page.getByRole('listitem').filter({ has: page.getByRole('heading', { name: IMAGE }) })
    await card.waitFor({ timeout: 10_000 })
    await card.getByText(imageCid, { exact: true }).waitFor()
    assert.equal(await card.getByLabel(`Pull by CID of ${IMAGE}`).inputValue(), `docker pull ${a.host}/ipfs/${imageCid}`)
    await card.getByText('linux/amd64').waitFor({ timeout: 5_000 })
    await card.getByText('node-b', { exact: true }).first().waitFor()
    await page.locator('#announcer').filter({ hasText: `Image ${IMAGE} listed` }).waitFor({ state: 'attached' })
    await card.getByRole('button', { name: `Copy the pull command of ${IMAGE}` }).click()
    assert.equal(await page.evaluate('navigator.clipboard.readText()'), `docker pull ${a.host}/ipfs/${imageCid}`)
    await screenshot('images')
  })

  it('creates a 50 % strategy with the keyboard alone and sees it reach held on the node placement chose', async () => {
    await page.goto(`${a.url}/strategies`)
    await page.getByText('No strategies yet').waitFor()
    const image = page.getByLabel('Image', { exact: true })
    await image.focus()
    await page.keyboard.type(IMAGE)
    await page.keyboard.press('Tab')
    assert.equal(await focusedId(), 'strategy-kind')
    assert.equal(await page.getByLabel('Placement').inputValue(), 'percentage')
    await page.keyboard.press('Tab')
    assert.equal(await focusedId(), 'strategy-percentage')
    await page.keyboard.press('ControlOrMeta+A')
    await page.keyboard.type('50')
    await page.keyboard.press('Enter')

    const created = await page.locator('#strategy-form-status').filter({ hasText: 'Created' }).textContent({ timeout: 10_000 })
    const [strategy] = (await (await fetch(`${a.url}/api/v1/strategies`)).json() as { strategies: Array<{ id: string, percentage: number }> }).strategies
    assert.ok(strategy !== undefined)
    assert.equal(strategy.percentage, 50)
    const status = await (await fetch(`${a.url}/api/v1/strategies/${strategy.id}/status`)).json() as StatusAnswer
    assert.equal(status.desired.length, 1, '50 % of two nodes is one node')
    const chosen = status.desired[0]!
    assert.ok(created?.includes(chosen.name), `the form says where it went: ${created}`)

    const row = page.locator(`tr[data-node="${chosen.node}"]`)
    await row.locator('.state', { hasText: 'held' }).waitFor({ timeout: 20_000 })
    assert.match(await row.textContent() ?? '', new RegExp(chosen.name))
    const holder = nodes.find(node => idOf(node) === chosen.node)
    assert.ok(holder !== undefined)
    assert.ok((await holder.node.metadata.listImages()).length > 0, 'the chosen node holds an image')
    // The other node is no desired node of the strategy.
    assert.equal(await page.locator(`tr[data-node="${idOf(nodes.find(node => node !== holder)!)}"]`).count(), 0)
    await page.locator('#announcer').filter({ hasText: new RegExp(`${IMAGE} on ${chosen.name}: (fetching|held)`) }).waitFor({ state: 'attached' })
    await screenshot('strategies')
  })

  it('shows the API\'s message next to the form for an invalid strategy, on the field it names', async () => {
    await page.getByLabel('Percentage of the nodes').fill('150')
    await page.getByRole('button', { name: 'Create strategy' }).click()
    const error = page.locator('#strategy-form-error')
    await error.filter({ hasText: 'percentage must be a number from 1 to 100, not 150' }).waitFor()
    assert.equal(await error.getAttribute('role'), 'alert')
    const percentage = page.getByLabel('Percentage of the nodes')
    assert.equal(await percentage.getAttribute('aria-invalid'), 'true')
    assert.equal(await focusedId(), 'strategy-percentage')

    await page.getByLabel('Placement').selectOption('target')
    await page.getByLabel('Node (name or id)').fill('no-such-node')
    await page.getByLabel('Node (name or id)').press('Enter')
    await error.filter({ hasText: 'target "no-such-node" is not a member' }).waitFor()
    await screenshot('strategies-invalid')

    // A preview answers the placement and stores nothing.
    await page.getByLabel('Placement').selectOption('percentage')
    await page.getByLabel('Percentage of the nodes').fill('100')
    await page.getByRole('button', { name: 'Preview placement' }).click()
    const preview = await page.locator('#strategy-form-status').filter({ hasText: 'Preview' }).textContent()
    assert.match(preview ?? '', new RegExp(`${IMAGE} would be placed on (node-a, node-b|node-b, node-a)\\. Nothing was stored`))
    assert.equal(await error.textContent(), '')
    const listed = await (await fetch(`${a.url}/api/v1/strategies`)).json() as { strategies: unknown[] }
    assert.equal(listed.strategies.length, 1)
  })

  it('labels every field of the form and keeps hidden kinds out of the tab order', async () => {
    const unlabelled = await page.evaluate(`[...document.querySelectorAll('#strategy-form input, #strategy-form select')]
      .filter(field => field.labels.length === 0).map(field => field.id)`)
    assert.deepEqual(unlabelled, [])
    for (const label of ['Image', 'Placement', 'Percentage of the nodes', 'Node (name or id)', 'Number of nodes', 'Labels', 'At most this many nodes (optional)']) {
      assert.equal(await page.getByLabel(label, { exact: true }).count(), 1, label)
    }
    // With "percentage" chosen, Tab goes from the percentage straight to the buttons.
    await page.getByLabel('Percentage of the nodes').focus()
    await page.keyboard.press('Tab')
    assert.equal(await focusedText(), 'Create strategy')
    await page.keyboard.press('Tab')
    assert.equal(await focusedText(), 'Preview placement')
  })

  it('deletes the strategy only once the dialog is confirmed', async () => {
    const [strategy] = (await (await fetch(`${a.url}/api/v1/strategies`)).json() as { strategies: Array<{ id: string }> }).strategies
    assert.ok(strategy !== undefined)
    const deleteButton = page.getByRole('button', { name: `Delete the strategy ${IMAGE} on 50 % of the nodes` })

    page.once('dialog', dialog => { void dialog.dismiss() })
    await deleteButton.click()
    await new Promise(resolve => setTimeout(resolve, 300))
    assert.equal((await fetch(`${a.url}/api/v1/strategies/${strategy.id}`)).status, 200, 'dismissed: still there')

    let asked = ''
    page.once('dialog', dialog => {
      asked = dialog.message()
      void dialog.accept()
    })
    await deleteButton.click()
    await page.getByText('No strategies yet').waitFor({ timeout: 10_000 })
    assert.match(asked, new RegExp(`Delete the strategy ${IMAGE} on 50 % of the nodes\\?`))
    assert.equal((await fetch(`${a.url}/api/v1/strategies/${strategy.id}`)).status, 404)
    await page.locator('#strategy-form-status').filter({ hasText: 'Deleted' }).waitFor()
  })

  it('shows both nodes with their labels, disk and heartbeat, and the peer list with latency', async () => {
    await page.goto(`${a.url}/nodes`)
    const fleet = page.getByRole('table', { name: 'The fleet\'s nodes: identities from the catalogue, presence from gossip' })
    for (const node of nodes) {
      const row = fleet.locator(`tr[data-node="${idOf(node)}"]`)
      await row.waitFor()
      const text = await row.textContent() ?? ''
      assert.match(text, new RegExp(node.node.config.name ?? ''))
      assert.match(text, /zone=(eu|us)/)
      assert.match(text, /used, .* free/)
      assert.match(text, /\d+ s ago/)
      assert.match(text, /live/)
    }
    assert.match(await fleet.locator(`tr[data-node="${idOf(a)}"]`).textContent() ?? '', /this node/)
    const peers = page.getByRole('table', { name: 'Peers this node is connected to' })
    const peer = peers.locator(`tr[data-peer="${idOf(b)}"]`)
    await peer.waitFor()
    assert.match(await peer.textContent() ?? '', /node-b/)
    await peer.getByText(/^(< 1|\d+) ms$/).waitFor({ timeout: 10_000 })
    await screenshot('nodes')
  })

  it('shows the replicated data store: tags, strategies and node records, with writer and time', async () => {
    await page.goto(`${a.url}/datastore`)
    for (const name of ['shoal.tags', 'shoal.nodes', 'shoal.strategies']) await page.getByRole('heading', { name }).waitFor()
    const tags = page.getByRole('table', { name: 'Entries of shoal.tags' })
    const tag = tags.getByRole('row').filter({ hasText: IMAGE })
    await tag.waitFor()
    await tag.getByText('node-b').waitFor({ timeout: 10_000 })
    assert.match(await tag.textContent() ?? '', /Lamport time \d+/)
    // A value opened stays open through live updates.
    await tag.locator('summary').click()
    await new Promise(resolve => setTimeout(resolve, 2_500))
    assert.equal(await tag.locator('details').getAttribute('open'), '')
    await page.getByRole('table', { name: 'Entries of shoal.nodes' }).getByRole('row').filter({ hasText: 'node-a' }).first().waitFor()

    // The API behind it: every node record was written by the node itself, the tag by the node pushed to.
    const answer = await (await fetch(`${a.url}/api/v1/datastore`)).json() as { databases: Array<{ name: string, entries: Array<{ key: string, hash?: string, clock?: { time: number }, writer?: { node?: string, name?: string }, writtenAt?: string }> }> }
    assert.deepEqual(answer.databases.map(db => db.name), ['shoal.tags', 'shoal.nodes', 'shoal.strategies'])
    const [tagsDb, nodesDb] = answer.databases
    const tagEntry = tagsDb?.entries.find(entry => entry.key === IMAGE)
    assert.equal(tagEntry?.writer?.name, 'node-b')
    assert.match(tagEntry?.hash ?? '', /^zdpu/)
    assert.ok(tagEntry?.writtenAt !== undefined)
    for (const node of nodes) assert.equal(nodesDb?.entries.find(entry => entry.key === idOf(node))?.writer?.node, idOf(node))
    await screenshot('datastore')
  })
})

describe('the web UI in a browser, every strategy state from a stand-in node', () => {
  let fake: Awaited<ReturnType<typeof startFakeNode>>
  let browser: Browser

  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/ensure-tools.sh (as root it installs it) or apt-get install chromium`)
    fake = await startFakeNode()
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] })
  })
  after(async () => {
    await browser?.close()
    await fake?.app.close()
  })

  it('shows fetching with a labelled progress bar, failed with its reason, pending, dropping and a silent node', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } })
    await page.goto(`${fake.url}/strategies`)
    const progress = page.getByRole('progressbar', { name: 'shop/web:2.1 on edge-a' })
    assert.equal(await progress.getAttribute('value'), '157286400')
    await page.getByText('no holder of bafy… answered within 30 s', { exact: true }).waitFor()
    await page.getByText('the node has not started on it').waitFor()
    await page.screenshot({ path: join(SCREENSHOTS, 'strategies-states.png'), fullPage: true })
    await page.goto(`${fake.url}/nodes`)
    await page.locator('tr.is-silent').getByText('silent', { exact: true }).waitFor()
    await page.screenshot({ path: join(SCREENSHOTS, 'nodes-silent.png'), fullPage: true })
    await page.goto(`${fake.url}/`)
    await page.getByText('linux/arm64/v8').waitFor()
    await page.screenshot({ path: join(SCREENSHOTS, 'images-multi-platform.png'), fullPage: true })
  })
})
