// containerd (Debian's, through ctr) against a node with TLS and users (issue 12): the certificate
// verified against the fleet's CA, the sign-in through the token flow (containerd posts the
// OAuth2 password grant when it has credentials).
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { htpasswdText } from '../support/htpasswd.ts'
import { startContainerd, type Containerd } from '../support/containerd.ts'
import { startTestNode, type TestNode } from '../support/in-process-node.ts'
import { createImageLayout } from '../support/oci-image.ts'
import { copyToRegistry } from '../support/skopeo.ts'
import { makeCertificates, type TestCertificates } from '../support/tls.ts'

describe('containerd pulling from a node with TLS and users', () => {
  let dir: string
  let certs: TestCertificates
  let node: TestNode
  let containerd: Containerd
  let manifestDigest: string
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shoal-ctr-'))
    certs = await makeCertificates(dir)
    await writeFile(join(dir, 'htpasswd'), htpasswdText({ alice: 'alice-pw', carol: 'carol-pw' }))
    node = await startTestNode({
      config: {
        tlsCert: certs.cert,
        tlsKey: certs.key,
        htpasswd: join(dir, 'htpasswd'),
        accessRules: [{ repositories: ['team-a/*'], users: ['alice'], allow: ['pull', 'push'] }, { repositories: ['*'], users: ['*'], allow: ['pull'] }]
      }
    })
    const image = await createImageLayout(join(dir, 'image'), { layers: [1024 * 1024 + 11], seed: 'ctr' })
    manifestDigest = image.manifestDigest
    await copyToRegistry(join(dir, 'image'), `${node.host}/team-a/app:1.0`, { certDir: certs.caDir, creds: 'alice:alice-pw' })
    containerd = await startContainerd()
  })
  after(async () => {
    await containerd?.stop()
    await node?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  /**
   * A hosts directory for the node (containerd takes 127.0.0.1 for plain HTTP unless a hosts.toml
   * says https), trusting the CA or not.
   */
  const hostsDir = async (name: string, trustCa: boolean): Promise<string> => {
    const hosts = join(dir, name)
    await mkdir(join(hosts, node.host), { recursive: true })
    await writeFile(join(hosts, node.host, 'hosts.toml'), [
      `server = "https://${node.host}"`,
      `[host."https://${node.host}"]`,
      '  capabilities = ["pull", "resolve"]',
      ...(trustCa ? [`  ca = "${certs.caCert}"`] : []),
      ''
    ].join('\n'))
    return hosts
  }

  it('pulls with the CA and a password, the image as pushed', async () => {
    const ref = `${node.host}/team-a/app:1.0`
    await containerd.ctr('images', 'pull', '--hosts-dir', await hostsDir('trusting', true), '--user', 'carol:carol-pw', ref)
    const listed = await containerd.ctr('images', 'ls')
    assert.match(listed, new RegExp(`^${ref.replace(/[.]/g, '\\.')}\\s+\\S+\\s+${manifestDigest}`, 'm'))
  })

  it('is refused without the CA, with a wrong password, and without credentials', async () => {
    const ref = `${node.host}/team-a/app:1.0`
    const trusting = await hostsDir('trusting', true)
    await assert.rejects(containerd.ctr('images', 'pull', '--hosts-dir', await hostsDir('untrusting', false), '--user', 'carol:carol-pw', ref), /certificate signed by unknown authority/)
    await assert.rejects(containerd.ctr('images', 'pull', '--hosts-dir', trusting, '--user', 'carol:wrong', ref), /401|unauthorized/i)
    await assert.rejects(containerd.ctr('images', 'pull', '--hosts-dir', trusting, ref), /401|unauthorized|authorization/i)
  })
})
