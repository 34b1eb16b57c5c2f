// Host and Origin (issue 12): a node answers only to its own names, and only its own pages may
// change anything, with or without authentication. curl sends what an attacker's page would make
// a browser send; Chromium tries the attacks for real from a page on another origin.
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import { after, before, describe, it } from 'node:test'
import { chromium } from 'playwright-core'
import { curl } from '../support/curl.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { sha256 } from '../support/registry-client.ts'

const CHROMIUM = '/usr/bin/chromium'

describe('Host and Origin checks', () => {
  let node: TestNode
  let attacker: Server
  let attackerUrl: string
  before(async () => {
    node = await startTestNode()
    // The attacker's site: another origin on this machine (same host, another port).
    attacker = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'text/html' }).end('<!doctype html><title>elsewhere</title>') })
    await new Promise<void>(resolve => attacker.listen(0, '127.0.0.1', resolve))
    const address = attacker.address()
    attackerUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`
  })
  after(async () => {
    await node?.stop()
    await new Promise(resolve => attacker?.close(resolve))
  })

  it('answers only to its own names: a rebound name gets 403 in the face of the path', async () => {
    assert.equal((await curl(`${node.url}/v2/`)).status, 200)
    assert.equal((await curl(`${node.url}/v2/`, '-H', `Host: localhost:${node.port}`)).status, 200)
    // Any loopback address is this machine, listed by the interface or not (bench/fleet.ts's
    // clients use 127.0.0.2); one step outside the range is not.
    assert.equal((await curl(`${node.url}/v2/`, '-H', `Host: 127.0.0.2:${node.port}`)).status, 200)
    assert.equal((await curl(`${node.url}/v2/`, '-H', `Host: 128.0.0.2:${node.port}`)).status, 403)
    const rebound = await curl(`${node.url}/v2/`, '-H', `Host: attacker.example:${node.port}`)
    assert.equal(rebound.status, 403)
    assert.match(rebound.body, /"code":"DENIED".*attacker\.example/)
    const api = await curl(`${node.url}/api/v1/nodes`, '-H', 'Host: attacker.example')
    assert.equal(api.status, 403)
    assert.equal((JSON.parse(api.body) as { code: string }).code, 'DENIED')
  })

  it('refuses a cross-origin simple POST that would write a blob, and takes one from its own origin', async () => {
    const bytes = 'written by a web page'
    const path = `/v2/csrf/app/blobs/uploads/?digest=${sha256(bytes)}`
    const crossSite = await curl(`${node.url}${path}`, '-X', 'POST', '-H', 'Content-Type: text/plain', '-H', 'Origin: http://attacker.example', '--data-binary', bytes)
    assert.equal(crossSite.status, 403)
    const sameHostOtherPort = await curl(`${node.url}${path}`, '-X', 'POST', '-H', 'Content-Type: text/plain', '-H', `Origin: ${attackerUrl}`, '--data-binary', bytes)
    assert.equal(sameHostOtherPort.status, 403)
    const opaque = await curl(`${node.url}${path}`, '-X', 'POST', '-H', 'Origin: null', '--data-binary', bytes)
    assert.equal(opaque.status, 403)
    assert.equal((await curl(`${node.url}/v2/csrf/app/blobs/${sha256(bytes)}`, '-I')).status, 404, 'nothing was written')
    assert.equal((await curl(`${node.url}${path}`, '-X', 'POST', '-H', `Origin: ${node.url}`, '--data-binary', bytes)).status, 201)
  })

  it('stops Chromium on another origin from writing a blob with a no-cors POST', async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run scripts/ensure-tools.sh (as root it installs it) or apt-get install chromium`)
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] })
    try {
      const page = await browser.newPage()
      await page.goto(attackerUrl)
      const bytes = 'written by chromium from elsewhere'
      const target = `${node.url}/v2/csrf/browser/blobs/uploads/?digest=${sha256(bytes)}`
      // What a hostile page can do without the node's consent: an opaque, "simple" cross-origin POST.
      await page.evaluate(async ({ target, bytes }) => {
        await fetch(target, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: bytes })
      }, { target, bytes })
      assert.equal((await curl(`${node.url}/v2/csrf/browser/blobs/${sha256(bytes)}`, '-I')).status, 404, 'the blob was not written')
    } finally {
      await browser.close()
    }
  })
})
