// `shoal strategy …`, `shoal nodes` and `shoal images` as a user runs them, against real nodes.
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { lpStream } from '@libp2p/utils'
import { PRESENCE_PROTOCOL } from '../../src/mesh/presence-link.ts'
import type { PlacementState } from '../../src/mesh/presence.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { RegistryClient } from '../support/registry-client.ts'
import { shoal } from '../support/cli.ts'


/** A command that must fail with exactly this one line. */
const failsWith = async (line: string | RegExp, ...args: string[]): Promise<void> => {
  const result = await shoal(...args)
  assert.notEqual(result.code, 0, `${args.join(' ')} fails`)
  assert.equal(result.stderr.trim().split('\n').length, 1, `one line: ${result.stderr}`)
  if (typeof line === 'string') assert.equal(result.stderr.trim(), line)
  else assert.match(result.stderr.trim(), line)
}

describe('the fleet commands of the CLI', () => {
  let one: TestNode
  let two: TestNode
  let imageCid: string
  let digest: string
  const idOf = (node: TestNode): string => node.node.fleet?.mesh.peerId ?? ''

  before(async () => {
    one = await startTestNode({ config: { mesh: true, name: 'one', labels: { zone: 'eu' } } })
    two = await startTestNode({ config: { peers: [one.node.fleet?.mesh.addresses[0] ?? ''], name: 'two', labels: { zone: 'us', tier: 'edge' } } })
    await Promise.all([one, two].map(async node => await eventually(
      async () => ((await node.node.fleet?.nodes())?.length ?? 0) >= 2 ? true : undefined, 15_000, 'the fleet to form')))
    const pushed = await new RegistryClient(one.url).pushImage('cli/app', '1.0', 'cli fleet layer')
    digest = pushed.digest
    imageCid = pushed.response.headers.get('shoal-image-cid') ?? ''
    await eventually(async () => await two.node.fleet?.catalogue.getTag('cli/app', '1.0'), 10_000, 'the tag on two')
  })
  after(async () => {
    await Promise.all([one, two].map(async node => await node?.stop()))
  })

  it('adds, lists, shows the status of and removes a strategy', async () => {
    const added = await shoal('strategy', 'add', 'cli/app:1.0', '--replicas', '2', '--node', one.url)
    assert.equal(added.code, 0, added.stderr)
    const id = /^strategy ([0-9a-f-]{36}): cli\/app:1\.0 on 2 replicas$/m.exec(added.stdout)?.[1] ?? ''
    assert.notEqual(id, '', added.stdout)
    assert.match(added.stdout, /^placed on: /m)
    for (const node of [one, two]) assert.ok(added.stdout.includes(`(${idOf(node)})`), `placed on ${idOf(node)}`)

    // Asked of the other node, once the catalogue carried it there.
    // ...and once both nodes' reconcilers hold the image.
    const listed = await eventually(async () => {
      const result = await shoal('strategy', 'ls', '--node', two.url)
      return new RegExp(`^${id}  cli/app:1\\.0  2 replicas  2/2 +\\d{4}-`, 'm').test(result.stdout) ? result : undefined
    }, 15_000, 'the strategy listed by two, held on both')
    assert.equal(listed.code, 0)
    assert.match(listed.stdout, /^ID +IMAGE +PLACEMENT +HELD +CREATED$/m)

    const status = await shoal('strategy', 'status', id, '--node', two.url)
    assert.equal(status.code, 0, status.stderr)
    assert.match(status.stdout, /^STRATEGY +NODE +STATE +PROGRESS$/m)
    for (const node of [one, two]) {
      assert.match(status.stdout, new RegExp(`^${id}  ${node === one ? 'one' : 'two'} \\(${idOf(node)}\\) +held +\\S`, 'm'))
    }
    const everyStatus = await shoal('strategy', 'status', '--node', one.url)
    assert.equal(everyStatus.code, 0)
    assert.ok(everyStatus.stdout.includes(id))

    const removed = await shoal('strategy', 'rm', id, '--node', one.url)
    assert.equal(removed.code, 0, removed.stderr)
    assert.equal(removed.stdout.trim(), `removed strategy ${id}`)
    await eventually(async () => (await shoal('strategy', 'ls', '--node', two.url)).stdout.trim() === 'no strategies' ? true : undefined, 15_000, 'the removal on two')
    await failsWith(`shoal: no strategy "${id}"`, 'strategy', 'rm', id, '--node', two.url)
  })

  it('a dry run prints the placement and stores nothing; other kinds take their flags', async () => {
    const dry = await shoal('strategy', 'add', imageCid, '--all', '--dry-run', '--node', one.url)
    assert.equal(dry.code, 0, dry.stderr)
    assert.match(dry.stdout, new RegExp(`^dry run, nothing stored: ${imageCid} on all nodes$`, 'm'))
    assert.match(dry.stdout, /^would place on: /m)
    const labelled = await shoal('strategy', 'add', `cli/app@${digest}`, '--labels', 'zone=us,tier=edge', '--count', '1', '--dry-run', '--json', '--node', one.url)
    assert.equal(labelled.code, 0, labelled.stderr)
    const answer = JSON.parse(labelled.stdout) as { strategy: { id: null, selector: Record<string, string>, count: number }, placement: Array<{ node: string }> }
    assert.deepEqual(answer.strategy.selector, { zone: 'us', tier: 'edge' })
    assert.deepEqual(answer.placement.map(placed => placed.node), [idOf(two)])
    const percentage = await shoal('strategy', 'add', 'cli/app:1.0', '--percentage', '50', '--dry-run', '--node', one.url)
    assert.match(percentage.stdout, /on 50% of the nodes/)
    const target = await shoal('strategy', 'add', 'cli/app:1.0', '--target', 'two', '--dry-run', '--node', one.url)
    assert.match(target.stdout, new RegExp(`^would place on: two \\(${idOf(two)}\\)$`, 'm'))
    assert.equal((await shoal('strategy', 'ls', '--node', one.url)).stdout.trim(), 'no strategies')
  })

  it('refuses a bad strategy with the API\'s message in one line', async () => {
    await Promise.all([
      failsWith('shoal: percentage must be a number from 1 to 100, not 0', 'strategy', 'add', 'cli/app:1.0', '--percentage', '0', '--node', one.url),
      failsWith(/^shoal: unknown image "cli\/app:2\.0"/, 'strategy', 'add', 'cli/app:2.0', '--all', '--node', one.url),
      failsWith(/^shoal: target "three" is not a member/, 'strategy', 'add', 'cli/app:1.0', '--target', 'three', '--node', one.url),
      failsWith('shoal: replicas 3 is more than the 2 member node(s)', 'strategy', 'add', 'cli/app:1.0', '--replicas', '3', '--node', one.url),
      failsWith('shoal: give exactly one of --percentage, --target, --replicas, --all, --labels, not --replicas and --all', 'strategy', 'add', 'cli/app:1.0', '--replicas', '2', '--all', '--node', one.url),
      failsWith('shoal: --count goes with --labels', 'strategy', 'add', 'cli/app:1.0', '--all', '--count', '1', '--node', one.url),
      failsWith('shoal: --replicas must be a number, not "two"', 'strategy', 'add', 'cli/app:1.0', '--replicas', 'two', '--node', one.url),
      failsWith(/^shoal: cannot reach http:\/\/127\.0\.0\.1:1/, 'strategy', 'ls', '--node', 'http://127.0.0.1:1')
    ])
  })

  it('shows the progress and failures the nodes report in their records', async () => {
    const added = await shoal('strategy', 'add', 'cli/app:1.0', '--all', '--json', '--node', one.url)
    const id = (JSON.parse(added.stdout) as { strategy: { id: string } }).strategy.id
    // What one's reconciler would say in its presence, sent by one; its real presence may
    // replace it meanwhile, so say it again until seen.
    const report = async (node: TestNode, state: PlacementState): Promise<void> => {
      const self = (await node.node.fleet?.nodes())?.find(candidate => candidate.self)
      const libp2p = node.node.fleet?.mesh.helia.libp2p
      assert.ok(self !== undefined && libp2p !== undefined)
      const presence = { peer: self.id, name: self.name, url: self.url, labels: self.labels, disk: self.disk, images: self.images, replication: { [id]: state }, at: new Date().toISOString() }
      for (const connection of libp2p.getConnections()) {
        const stream = lpStream(await libp2p.dialProtocol(connection.remotePeer, PRESENCE_PROTOCOL))
        await stream.write(new TextEncoder().encode(JSON.stringify(presence)))
        await stream.unwrap().close()
      }
    }
    const updatedAt = new Date().toISOString()
    const fetching = await eventually(async () => {
      await report(one, { image: 'cli/app:1.0', imageCid, state: 'fetching', bytesDone: 10 * 1024 * 1024, bytesTotal: 40 * 1024 * 1024, updatedAt })
      const result = await shoal('strategy', 'status', id, '--node', two.url)
      return /one .* fetching/.test(result.stdout) ? result : undefined
    }, 15_000, 'the fetching report in shoal strategy status')
    assert.match(fetching.stdout, new RegExp(`^${id}  one \\(${idOf(one)}\\) +fetching +10\\.0MiB/40\\.0MiB \\(25%\\)$`, 'm'))
    const failed = await eventually(async () => {
      await report(two, { image: 'cli/app:1.0', state: 'failed', reason: 'no node holds it', updatedAt })
      const result = await shoal('strategy', 'status', id, '--node', one.url)
      return /two .* failed/.test(result.stdout) ? result : undefined
    }, 15_000, 'the failed report in shoal strategy status')
    assert.match(failed.stdout, new RegExp(`^${id}  two \\(${idOf(two)}\\) +failed +no node holds it$`, 'm'))
    assert.equal((await shoal('strategy', 'rm', id, '--node', two.url)).code, 0)
  })

  it('lists the nodes and the images', async () => {
    const nodes = await eventually(async () => {
      const result = await shoal('nodes', '--node', two.url)
      // One's presence lists the image once it was sent after the push.
      return new RegExp(`^${idOf(one)}  one +zone=eu +\\S+ +1 `, 'm').test(result.stdout) ? result : undefined
    }, 15_000, 'one holding the image in shoal nodes')
    assert.equal(nodes.code, 0)
    assert.match(nodes.stdout, /^ID +NAME +LABELS +DISK USED\/FREE +IMAGES +HEARTBEAT +STANDING$/m)
    assert.match(nodes.stdout, new RegExp(`^${idOf(one)}  one +zone=eu +[\\d.]+(B|KiB|MiB)/[\\d.]+[KMGT]?i?B +1 +\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\dZ +live$`, 'm'))
    assert.match(nodes.stdout, new RegExp(`^${idOf(two)}  two \\(this node\\) +tier=edge,zone=us +`, 'm'))

    const images = await shoal('images', '--node', two.url)
    assert.equal(images.code, 0, images.stderr)
    assert.match(images.stdout, /^IMAGE +DIGEST +IMAGE CID +PUSHED TO +PUSHED BY +PUSHED AT +HELD BY$/m)
    // Held by one (pushed there), and by two too if a strategy of the tests above placed it there.
    assert.match(images.stdout, new RegExp(`^cli/app:1\\.0  ${digest.slice(0, 'sha256:'.length + 12)}  ${imageCid}  one +- +\\d{4}-\\S+Z +(two,)?one$`, 'm'))
  })
})

describe('the fleet commands against a node outside a mesh', () => {
  let node: TestNode
  before(async () => { node = await startTestNode() })
  after(async () => { await node.stop() })

  it('say so in one line, or list nothing', async () => {
    await failsWith('shoal: this node is not in a mesh', 'strategy', 'ls', '--node', node.url)
    await failsWith('shoal: this node is not in a mesh', 'strategy', 'add', 'a/b:1', '--all', '--node', node.url)
    const nodes = await shoal('nodes', '--node', node.url)
    assert.equal(nodes.code, 0)
    assert.equal(nodes.stdout.trim(), 'no nodes: this node is not in a mesh')
    const images = await shoal('images', '--node', node.url)
    assert.equal(images.stdout.trim(), 'no images')
  })
})
