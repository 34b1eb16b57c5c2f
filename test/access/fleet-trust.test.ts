// Trust inside a fleet (issue 12): an operator key made by `shoal fleet init`, nodes certified and
// revoked with `shoal fleet admit` and `revoke` while they run, and what that changes: whose
// catalogue writes (tags, identities and so token keys, strategies) count on the other nodes.
// Three real nodes in a mesh, skopeo pushing, the CLI as operators run it.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { stat, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { newOperatorKeys, signStatement } from '../../src/access/certificates.ts'
import { shoal } from '../support/cli.ts'
import { htpasswdText } from '../support/htpasswd.ts'
import { eventually, startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { copyFromRegistry, copyToRegistry } from '../support/skopeo.ts'

const PASSWORDS = { alice: 'alice-pw', root: 'root-pw' }
const basic = (user: keyof typeof PASSWORDS): string => `Basic ${Buffer.from(`${user}:${PASSWORDS[user]}`).toString('base64')}`
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json'

describe('a fleet with an operator key', () => {
  let dir: string
  let a: TestNode
  let b: TestNode
  let c: TestNode
  /** The node's URL with root's credentials, as the CLI takes them. */
  const asRoot = (node: TestNode): string => `http://root:${PASSWORDS.root}@${node.host}`
  const peerOf = (node: TestNode): string => node.node.fleet?.peerId ?? ''
  const tagOn = async (node: TestNode, repository: string, tag: string): Promise<string | undefined> => (await node.node.fleet?.catalogue.getTag(repository, tag))?.digest
  const roleOn = (node: TestNode): string | null | undefined => node.node.fleet?.trustStatus().self.role
  const push = async (node: TestNode, repository: string, seed: string): Promise<void> => {
    const layout = join(dir, seed)
    await createImageLayout(layout, { layers: [4096], seed })
    await copyToRegistry(layout, `${node.host}/${repository}`, { creds: `alice:${PASSWORDS.alice}` })
  }
  /** A pull token `user` gets from `issuer`, and the status `node` answers a manifest read with it. */
  const tokenStatus = async (issuer: TestNode, node: TestNode, repository: string, tag: string): Promise<number> => {
    const answer = await (await fetch(`${issuer.url}/auth/token?service=shoal&scope=repository:${repository}:pull`, { headers: { authorization: basic('alice') } })).json() as { token: string }
    return (await fetch(`${node.url}/v2/${repository}/manifests/${tag}`, { headers: { authorization: `Bearer ${answer.token}`, accept: MANIFEST } })).status
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-trust-'))
    await writeFile(join(dir, 'htpasswd'), htpasswdText(PASSWORDS))
    const init = await shoal('fleet', 'init', '--dir', join(dir, 'operator'))
    assert.equal(init.code, 0, init.stderr)
    const config = {
      htpasswd: join(dir, 'htpasswd'),
      admins: ['root'],
      accessRules: [{ repositories: ['*'], users: ['*'], allow: ['pull' as const, 'push' as const] }],
      operatorKey: join(dir, 'operator', 'operator.pub')
    }
    a = await startTestNode({ config: { ...config, mesh: true } })
    const peers = [a.node.fleet?.mesh.addresses[0] ?? '']
    b = await startTestNode({ config: { ...config, peers } })
    c = await startTestNode({ config: { ...config, peers } })
    // Presence (not the catalogue) makes them known to each other, certified or not.
    await Promise.all([a, b, c].map(async node => await eventually(async () => (await node.node.fleet?.nodes())?.filter(n => n.writer !== undefined).length === 3 ? true : undefined, 20_000, 'the fleet to form')))
  })
  after(async () => {
    await Promise.all([a, b, c].map(async node => await node?.stop()))
    await rm(dir, { recursive: true, force: true })
  })

  it('shoal fleet init writes the key pair once, the private key readable by its owner only', async () => {
    assert.equal((await stat(join(dir, 'operator', 'operator.key'))).mode & 0o777, 0o600)
    const again = await shoal('fleet', 'init', '--dir', join(dir, 'operator'))
    assert.notEqual(again.code, 0)
    assert.match(again.stderr, /^shoal: .*operator\.key exists/)
    assert.equal(again.stderr.trim().split('\n').length, 1)
  })

  it('refuses to start, in one line, with an operator key that is missing or not an Ed25519 public key', async () => {
    const serve = async (key: string): Promise<{ stderr: string, code: number }> => await shoal('serve', '--listen', '127.0.0.1:0', '--data', join(dir, 'bad-start'), '--mesh', '--p2p-listen', '/ip4/127.0.0.1/tcp/0', '--operator-key', key)
    const missing = await serve(join(dir, 'missing.pub'))
    assert.notEqual(missing.code, 0)
    assert.match(missing.stderr, /^shoal: config: operatorKey .*missing\.pub is not a usable operator public key: ENOENT[^\n]*\n$/)
    const privateKey = await serve(join(dir, 'htpasswd'))
    assert.notEqual(privateKey.code, 0)
    assert.match(privateKey.stderr, /^shoal: config: operatorKey .*htpasswd is not a usable operator public key[^\n]*\n$/)
  })

  it('admits nodes while they run: a member\'s tags reach the fleet, a node without a certificate keeps its writes', async () => {
    const untrusted = await shoal('fleet', 'trust', '--node', asRoot(a))
    assert.match(untrusted.stdout, /this node: +not certified/)
    const key = join(dir, 'operator', 'operator.key')
    const admitA = await shoal('fleet', 'admit', peerOf(a), '--key', key, '--role', 'admin', '--node', asRoot(a))
    assert.equal(admitA.code, 0, admitA.stderr)
    const admitB = await shoal('fleet', 'admit', peerOf(b), '--key', key, '--node', asRoot(a))
    assert.equal(admitB.code, 0, admitB.stderr)
    await eventually(async () => roleOn(b) === 'member' && roleOn(a) === 'admin' && c.node.fleet?.trustStatus().statements.length === 2 ? true : undefined, 20_000, 'the certificates on every node')

    await push(b, 'team/from-b:1', 'from-b')
    const fromB = await eventually(async () => await tagOn(a, 'team/from-b', '1'), 20_000, 'B\'s tag on A')
    await eventually(async () => (await tagOn(c, 'team/from-b', '1')) === fromB ? true : undefined, 20_000, 'B\'s tag on C')

    // C holds no certificate: its push works on C, and goes no further.
    await push(c, 'team/from-c:1', 'from-c')
    assert.ok(await tagOn(c, 'team/from-c', '1'), 'C serves its own tag')
    await push(b, 'team/after-c:1', 'after-c')
    await eventually(async () => await tagOn(a, 'team/after-c', '1'), 20_000, 'a later tag from B on A')
    assert.equal(await tagOn(a, 'team/from-c', '1'), undefined, 'C\'s tag stays off A')
    assert.equal(await tagOn(b, 'team/from-c', '1'), undefined, 'C\'s tag stays off B')
    // Its identity (and so its token key) does not count either: A refuses C's tokens, takes B's.
    assert.equal(await tokenStatus(b, a, 'team/from-b', '1'), 200, 'a member\'s token')
    assert.equal(await tokenStatus(c, a, 'team/from-b', '1'), 401, 'an uncertified node\'s token')
    // It says so, once.
    const said = await eventually(async () => { const lines = c.logs.filter(line => /holds no certificate/.test(String(line.msg))); return lines.length > 0 ? lines : undefined }, 25_000, 'C to say its writes stay local')
    assert.equal(said.length, 1)
    assert.match(String(said[0]?.msg), new RegExp(`shoal fleet admit ${peerOf(c)}`))

    // Admitted without a restart: what it wrote while uncertified reaches the fleet.
    const admitC = await shoal('fleet', 'admit', peerOf(c), '--key', key, '--node', asRoot(b))
    assert.equal(admitC.code, 0, admitC.stderr)
    await eventually(async () => await tagOn(a, 'team/from-c', '1'), 30_000, 'C\'s earlier tag on A once C is admitted')
    await eventually(async () => (await tokenStatus(c, a, 'team/from-b', '1')) === 200 ? true : undefined, 20_000, 'A to take C\'s tokens')
    assert.equal(c.logs.filter(line => /holds no certificate/.test(String(line.msg))).length, 1)
  })

  it('shows each node\'s role on the UI\'s nodes page', async () => {
    const page = await (await fetch(`${b.url}/nodes`, { headers: { authorization: basic('root') } })).text()
    const roleIn = (node: TestNode): string | undefined => new RegExp(`data-node="${peerOf(node)}"[\\s\\S]*?data-role="([a-z]+)"`).exec(page)?.[1]
    assert.match(page, /data-operator-key="[0-9a-f]{32}"/)
    assert.deepEqual([roleIn(a), roleIn(b), roleIn(c)], ['admin', 'member', 'member'])
  })

  it('lets admins set strategies and refuses them on a member node', async () => {
    const body = JSON.stringify({ image: 'team/from-b:1', kind: 'all' })
    const headers = { authorization: basic('root'), 'content-type': 'application/json' }
    const onMember = await fetch(`${b.url}/api/v1/strategies`, { method: 'POST', headers, body })
    assert.equal(onMember.status, 403)
    const refusal = await onMember.json() as { code: string, message: string }
    assert.equal(refusal.code, 'DENIED')
    assert.match(refusal.message, /member of the fleet, not an admin/)
    const onAdmin = await fetch(`${a.url}/api/v1/strategies`, { method: 'POST', headers, body })
    const created = await onAdmin.text()
    assert.equal(onAdmin.status, 201, created)
    const { strategy } = JSON.parse(created) as { strategy: { id: string } }
    await eventually(async () => (await b.node.fleet?.catalogue.getStrategy(strategy.id)) ?? undefined, 20_000, 'the admin\'s strategy on B')
  })

  it('refuses statements the operator key did not sign, through the API and the CLI', async () => {
    const stranger = newOperatorKeys()
    const writer = b.node.fleet?.trustStatus().self.writer ?? ''
    const forged = signStatement({ kind: 'certificate', peer: peerOf(b), writer, role: 'admin', issuedAt: new Date().toISOString() }, stranger.privatePem)
    const headers = { authorization: basic('root'), 'content-type': 'application/json' }
    const answer = await fetch(`${a.url}/api/v1/fleet/statements`, { method: 'POST', headers, body: JSON.stringify(forged) })
    assert.equal(answer.status, 400)
    assert.equal((await answer.json() as { code: string }).code, 'STATEMENT_INVALID')
    const raised = await fetch(`${a.url}/api/v1/fleet/statements`, { method: 'POST', headers, body: JSON.stringify({ ...signStatement({ kind: 'certificate', peer: peerOf(b), writer, role: 'member', issuedAt: new Date().toISOString() }, readFileSync(join(dir, 'operator', 'operator.key'), 'utf8')), role: 'admin' }) })
    assert.equal(raised.status, 400, 'a member certificate with its role raised')
    await writeFile(join(dir, 'stranger.key'), stranger.privatePem)
    const cli = await shoal('fleet', 'admit', peerOf(b), '--key', join(dir, 'stranger.key'), '--role', 'admin', '--node', asRoot(a))
    assert.notEqual(cli.code, 0)
    assert.match(cli.stderr, /^shoal: the statement is not a certificate or revocation signed by this fleet's operator key/)
    const role = await shoal('fleet', 'admit', peerOf(b), '--key', join(dir, 'operator', 'operator.key'), '--role', 'owner', '--node', asRoot(a))
    assert.equal(role.stderr, 'shoal: --role must be member or admin, not "owner"\n')
    const unknown = await shoal('fleet', 'admit', '12D3KooWNotInTheFleet', '--key', join(dir, 'operator', 'operator.key'), '--node', asRoot(a))
    assert.notEqual(unknown.code, 0)
    assert.match(unknown.stderr, /^shoal: .* knows no node 12D3KooWNotInTheFleet[^\n]*\n$/)
    // Only admins hand statements to the fleet.
    const byAlice = await fetch(`${a.url}/api/v1/fleet/statements`, { method: 'POST', headers: { ...headers, authorization: basic('alice') }, body: JSON.stringify(forged) })
    assert.equal(byAlice.status, 403)
    assert.equal(roleOn(b), 'member')
  })

  it('revokes a member while it runs: the fleet stops counting what it wrote, and its tokens', async () => {
    await eventually(async () => (await tokenStatus(b, c, 'team/from-b', '1')) === 200 ? true : undefined, 20_000, 'C to take B\'s tokens')
    const revoke = await shoal('fleet', 'revoke', peerOf(b), '--key', join(dir, 'operator', 'operator.key'), '--node', asRoot(c))
    assert.equal(revoke.code, 0, revoke.stderr)
    await eventually(async () => roleOn(b) === null ? true : undefined, 20_000, 'B to learn it was revoked')
    await eventually(async () => (await tagOn(a, 'team/from-b', '1')) === undefined ? true : undefined, 20_000, 'B\'s tag gone from A')
    assert.ok(await tagOn(b, 'team/from-b', '1'), 'B still serves its own tag')
    await push(b, 'team/after-revoke:1', 'after-revoke')
    await push(a, 'team/from-a:1', 'from-a')
    await eventually(async () => await tagOn(c, 'team/from-a', '1'), 20_000, 'a later tag from A on C')
    assert.equal(await tagOn(c, 'team/after-revoke', '1'), undefined, 'a revoked member\'s new tag')
    // Token keys are looked up again every 10 s (tokens.ts).
    await eventually(async () => (await tokenStatus(b, c, 'team/from-a', '1')) === 401 ? true : undefined, 15_000, 'C to refuse a revoked member\'s token')
    const trust = await shoal('fleet', 'trust', '--node', asRoot(c), '--json')
    const statements = (JSON.parse(trust.stdout) as { statements: Array<{ kind: string, peer: string }> }).statements
    assert.deepEqual(statements.filter(s => s.peer === peerOf(b)).map(s => s.kind).sort(), ['certificate', 'revocation'])
  })

  it('moves to a new catalogue generation when a certified node compacts, not when a revoked one does', async () => {
    const generationOn = async (node: TestNode): Promise<number | undefined> => (await node.node.fleet?.catalogue.generations())?.find(db => db.name === 'shoal.tags')?.current
    await b.node.fleet?.catalogue.compact('tag')
    assert.equal(await generationOn(b), 1, 'B moved itself on')
    await new Promise(resolve => setTimeout(resolve, 3000))
    assert.equal(await generationOn(a), 0, 'A did not follow the revoked B')
    assert.equal(await generationOn(c), 0, 'C did not follow the revoked B')
    await a.node.fleet?.catalogue.compact('tag')
    await eventually(async () => (await generationOn(c)) === 1 ? true : undefined, 20_000, 'C to follow A to generation 1')
    assert.ok(await tagOn(c, 'team/from-a', '1'), 'the tags carried into generation 1')
  })

  it('lets a node that joins later without a certificate pull the fleet\'s images', async () => {
    const late = await startTestNode({ config: { htpasswd: join(dir, 'htpasswd'), admins: ['root'], accessRules: [{ repositories: ['*'], users: ['*'], allow: ['pull' as const, 'push' as const] }], operatorKey: join(dir, 'operator', 'operator.pub'), peers: [a.node.fleet?.mesh.addresses[0] ?? ''] } })
    try {
      await eventually(async () => await tagOn(late, 'team/from-a', '1'), 20_000, 'A\'s tag on the late node')
      assert.equal(late.node.fleet?.trustStatus().self.role, null)
      await copyFromRegistry(`${late.host}/team/from-a:1`, join(dir, 'pulled-late'), { creds: `alice:${PASSWORDS.alice}` })
      assert.equal(await tagOn(late, 'team/from-b', '1'), undefined, 'the revoked B\'s tag does not count there either')
    } finally {
      await late.stop()
    }
  })
})
