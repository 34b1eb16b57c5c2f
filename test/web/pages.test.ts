// The web UI's pages over HTTP, without a browser: every strategy state and the image details
// from a stand-in node's API, markup from the catalogue escaped, a standalone node's empty
// states, and the UI's routes beside /v2, /api and the not-found handler.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { escapeHtml, html } from '../../src/web/html.ts'
import { formatBytes } from '../../src/web/format.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { FAKE, FAKE_IMAGE_BYTES, HOSTILE, startFakeNode } from './fake-api.ts'

const PAGES = ['/', '/strategies', '/nodes', '/datastore']

async function page (base: string, path: string): Promise<{ status: number, type: string, csp: string, text: string }> {
  const response = await fetch(`${base}${path}`)
  return { status: response.status, type: response.headers.get('content-type') ?? '', csp: response.headers.get('content-security-policy') ?? '', text: await response.text() }
}

describe('html', () => {
  it('escapes interpolated text and keeps markup made with html', () => {
    assert.equal(escapeHtml(`<a href="x">'&'</a>`), '&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;')
    const inner = html`<b>${'<i>'}</b>`
    assert.equal(html`<p title="${'"quoted"'}">${inner}${['<', html`<br>`]}${undefined}${false}${0}</p>`.text,
      '<p title="&quot;quoted&quot;"><b>&lt;i&gt;</b>&lt;<br>0</p>')
    assert.equal(formatBytes(414 * 1024), '414 KiB')
    assert.equal(formatBytes(1536), '1.5 KiB')
  })
})

describe('the pages of a stand-in node with every state', () => {
  let fake: Awaited<ReturnType<typeof startFakeNode>>
  before(async () => { fake = await startFakeNode() })
  after(async () => { await fake.app.close() })

  it('shows fetching with a progress bar, failed with its reason, pending and dropping', async () => {
    const { text } = await page(fake.url, '/strategies')
    assert.match(text, /shop\/web:2\.1 <span class="placement">3 nodes<\/span>/)
    assert.match(text, /<progress max="629145600" value="157286400" aria-label="shop\/web:2\.1 on edge-a"><\/progress> 150 MiB of 600 MiB \(25 %\)/)
    assert.match(text, /data-announce="shop\/web:2\.1 on edge-b: failed, no holder of bafy… answered within 30 s"/)
    assert.match(text, /<span class="reason">no holder of bafy… answered within 30 s<\/span>/)
    assert.match(text, /data-state="pending"/)
    assert.match(text, /data-state="dropping"[\s\S]*last said held, and is silent/)
    assert.match(text, /<form id="strategy-form" novalidate>/)
    assert.match(text, /<datalist id="known-images"><option value="shop\/web:2\.1"><\/option><\/datalist>/)
  })

  it('reads size, platforms and referrers of a multi-platform image from the node that holds it', async () => {
    const { text } = await page(fake.url, '/')
    assert.ok(text.includes(`<code class="cid">${FAKE.imageCid}</code>`))
    assert.match(text, new RegExp(`value="docker pull 127\\.0\\.0\\.1:\\d+/ipfs/${FAKE.imageCid}"`))
    assert.ok(text.includes(`<dt>Size</dt><dd>${formatBytes(FAKE_IMAGE_BYTES)}</dd>`), 'every platform\'s manifests, configs and layers')
    assert.match(text, /<span class="chip">linux\/amd64<\/span> <span class="chip">linux\/arm64\/v8<\/span>/)
    assert.doesNotMatch(text, /unknown\/unknown/, 'attestations are no platform')
    assert.match(text, /application\/vnd\.dev\.cosign\.artifact\.sig\.v1\+json/)
    assert.match(text, /edge-a<\/span> <span class="chip" title="[^"]+">edge-b/)
  })

  it('escapes markup that other nodes wrote into the catalogue, on every page', async () => {
    for (const path of PAGES) {
      const { status, text } = await page(fake.url, path)
      assert.equal(status, 200, path)
      assert.ok(!text.includes(HOSTILE), `${path} shows the name as text`)
      if (path !== '/') assert.ok(text.includes(escapeHtml(HOSTILE)), `${path} shows the hostile name escaped`)
    }
    const nodes = (await page(fake.url, '/nodes')).text
    assert.match(nodes, /class="is-silent"[\s\S]*data-announce="Node &lt;script&gt;alert\(&quot;x&quot;\)&lt;\/script&gt; is silent"/)
    assert.match(nodes, /3 ms/)
    assert.match(nodes, /9\.0 GiB free/)
  })

  it('answers ?part=live with the live region only', async () => {
    const full = await page(fake.url, '/nodes')
    const live = await page(fake.url, '/nodes?part=live')
    assert.match(full.text, /^<!doctype html>/)
    assert.doesNotMatch(live.text, /<html|<head|<form/)
    assert.ok(full.text.includes(`<div id="live" data-live-src="/nodes?part=live">${live.text.slice(0, 200)}`), 'the page embeds the same fragment, unchanged')
  })
})

describe('the pages of a standalone node', () => {
  let node: TestNode
  before(async () => { node = await startTestNode() })
  after(async () => { await node.stop() })

  it('serves every page as HTML with a strict content security policy and a clear empty state', async () => {
    const expected: Record<string, RegExp> = {
      '/': /No images yet/,
      '/strategies': /Strategies need a fleet[\s\S]*this node is not in a mesh/,
      '/nodes': /This node is not in a mesh/,
      '/datastore': /No replicated data store/
    }
    for (const path of PAGES) {
      const { status, type, csp, text } = await page(node.url, path)
      assert.equal(status, 200, path)
      assert.match(type, /^text\/html; charset=utf-8/)
      assert.match(csp, /script-src 'self'/)
      assert.match(text, expected[path] ?? /./, path)
      assert.match(text, new RegExp(`<a href="${path}" aria-current="page">`))
    }
    assert.doesNotMatch((await page(node.url, '/strategies')).text, /<form/, 'no form where strategies cannot be made')
  })

  it('serves its script and stylesheet, and leaves /v2, /api/v1 and unknown paths as they were', async () => {
    const script = await fetch(`${node.url}/ui/app.js`)
    assert.equal(script.status, 200)
    assert.match(script.headers.get('content-type') ?? '', /^text\/javascript/)
    assert.match(await script.text(), /data-live-src|liveSrc/)
    assert.match((await fetch(`${node.url}/ui/style.css`)).headers.get('content-type') ?? '', /^text\/css/)
    assert.equal(await (await fetch(`${node.url}/v2/`)).text(), '{}')
    const datastore = await fetch(`${node.url}/api/v1/datastore`)
    assert.equal(datastore.status, 409)
    assert.match(((await datastore.json()) as { message: string }).message, /not in a mesh/)
    const unknown = await fetch(`${node.url}/no-such-page`)
    assert.equal(unknown.status, 404)
    assert.match(await unknown.text(), /"code":"UNSUPPORTED"/)
  })
})
