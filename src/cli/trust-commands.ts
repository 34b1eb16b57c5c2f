// `shoal fleet init|admit|revoke|trust`: the operator key's side of trust inside a fleet (issue 12).
// The private key never leaves the operator's machine: the CLI signs here and hands the node only
// the signed statement.
import { existsSync } from 'node:fs'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ROLES, newOperatorKeys, signStatement, type Role, type Signed, type Statement } from '../access/certificates.ts'
import type { NodesAnswer, TrustAnswer } from '../api/schemas.ts'
import { CliError, callApi, getJson } from './api-client.ts'

export const OPERATOR_PRIVATE_FILE = 'operator.key'
export const OPERATOR_PUBLIC_FILE = 'operator.pub'

/** Writes a new operator key pair into `dir` (created if need be); refuses to overwrite one. */
export async function initFleet (dir: string): Promise<string> {
  const privatePath = join(dir, OPERATOR_PRIVATE_FILE)
  const publicPath = join(dir, OPERATOR_PUBLIC_FILE)
  for (const path of [privatePath, publicPath]) {
    if (existsSync(path)) throw new CliError(`${path} exists: an operator key is made once per fleet (remove it first to start a new fleet)`)
  }
  const { privatePem, publicPem } = newOperatorKeys()
  await mkdir(dir, { recursive: true })
  await writeFile(privatePath, privatePem, { mode: 0o600 })
  await chmod(privatePath, 0o600)
  await writeFile(publicPath, publicPem)
  return [
    `wrote ${privatePath} (keep it off the nodes) and ${publicPath}`,
    `start every node with --operator-key ${publicPath}, then admit each: shoal fleet admit <peer-id> --key ${privatePath}`
  ].join('\n')
}

async function readPrivateKey (file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8')
  } catch (err) {
    throw new CliError(`cannot read the operator key ${file}: ${(err as Error).message}`)
  }
}

function sign (statement: Statement, privatePem: string, file: string): Signed<Statement> {
  try {
    return signStatement(statement, privatePem)
  } catch (err) {
    throw new CliError(`${file} is not an operator key: ${(err as Error).message}`)
  }
}

/**
 * Certifies `peer` as a member (or admin): its writer key comes from its presence as `node`
 * heard it (the presence is signed by the peer's own libp2p key on the way), then the signed
 * certificate goes to `node`, which hands it to the fleet.
 */
export async function admitPeer (node: string, peer: string, options: { key: string, role?: string }): Promise<string> {
  const role = (options.role ?? 'member') as Role
  if (!(ROLES as readonly string[]).includes(role)) throw new CliError(`--role must be member or admin, not ${JSON.stringify(options.role)}`)
  const privatePem = await readPrivateKey(options.key)
  const { nodes } = await getJson<NodesAnswer>(node, '/nodes')
  const found = nodes.find(candidate => candidate.id === peer)
  if (found === undefined) throw new CliError(`${node} knows no node ${peer}: start it with the fleet's swarm key and --operator-key, and see shoal nodes --node ${node}`)
  const writer = (found as { writer?: unknown }).writer
  if (typeof writer !== 'string' || writer === '') throw new CliError(`${node} has not heard ${peer}'s writer key yet (its presence): try again in a few seconds`)
  const certificate = sign({ kind: 'certificate', peer, writer, role, issuedAt: new Date().toISOString() }, privatePem, options.key)
  await callApi(node, 'POST', '/fleet/statements', certificate)
  return `admitted ${peer} (${found.name}) as ${role}: its catalogue writes reach the fleet`
}

/** Revokes every certificate of `peer` issued until now; the fleet stops counting its catalogue writes. */
export async function revokePeer (node: string, peer: string, options: { key: string }): Promise<string> {
  const privatePem = await readPrivateKey(options.key)
  const revocation = sign({ kind: 'revocation', peer, revokedAt: new Date().toISOString() }, privatePem, options.key)
  await callApi(node, 'POST', '/fleet/statements', revocation)
  return `revoked ${peer}: the fleet no longer counts its catalogue writes`
}

/** The operator key a node trusts, its own certificate, and who is certified. */
export async function showTrust (node: string, json: boolean): Promise<string> {
  const trust = await callApi<TrustAnswer>(node, 'GET', '/fleet/trust')
  if (json) return JSON.stringify(trust, null, 2)
  if (trust.operatorKey === null) return 'no operator key: every node with the swarm key writes the catalogue'
  const lines = [
    `operator key: ${trust.operatorKey}`,
    `this node:    ${trust.self.role ?? 'not certified (its catalogue writes stay local)'}`
  ]
  for (const statement of trust.statements) {
    lines.push(statement.kind === 'certificate'
      ? `certificate   ${statement.peer} ${statement.role ?? ''} ${statement.issuedAt ?? ''}`
      : `revocation    ${statement.peer} ${statement.revokedAt ?? ''}`)
  }
  return lines.join('\n')
}
