// Nodes: the fleet's inventory (what each node says of itself) and the peers this node is
// connected to, with the latency of a ping.
import { certifiedWriters, type Role } from '../../access/certificates.ts'
import type { ApiNode, ImagesAnswer, ManagementApi, NodesAnswer, PeersAnswer, TrustAnswer } from '../api.ts'
import { bodyOr } from '../api.ts'
import { formatBytes, relativeTime, shortId } from '../format.ts'
import { html, idFor, type SafeHtml } from '../html.ts'
import { apiProblem, emptyState } from '../layout.ts'
import type { PeerAnswer } from '../../api/schemas.ts'

export interface NodesPageInput {
  api: ManagementApi
  now: number
}

export async function renderNodesLive ({ api, now }: NodesPageInput): Promise<SafeHtml> {
  const [nodes, peers, images, trustAnswer] = await Promise.all([api.get<NodesAnswer>('/nodes'), api.get<PeersAnswer>('/peers'), api.get<ImagesAnswer>('/images'), api.get<TrustAnswer>('/fleet/trust')])
  if (!nodes.ok) return apiProblem('The nodes could not be read', nodes.message)
  if (!peers.ok) return apiProblem('The peers could not be read', peers.message)
  if (peers.body.self === null) {
    return emptyState('This node is not in a mesh', 'It is a registry on its own: there is no fleet to show. Start it with --mesh, or --peer <multiaddr> to join one.')
  }
  const latency = new Map(peers.body.peers.map(peer => [peer.id, peer.latencyMs]))
  // Image CIDs read better as the tags that name them.
  const tagsOf = new Map<string, string[]>()
  for (const image of bodyOr(images, { images: [] }).images) tagsOf.set(image.imageCid, [...(tagsOf.get(image.imageCid) ?? []), `${image.repository}:${image.tag}`])
  const list = nodes.body.nodes
  const silent = list.filter(node => node.silent).length
  const trust = bodyOr(trustAnswer, { operatorKey: null, self: { writer: '', role: null }, statements: [] })
  // Each node's role, by the writer key its presence carries (the node answering verified the statements).
  const roles = trust.operatorKey === null ? undefined : certifiedWriters(trust.statements as Parameters<typeof certifiedWriters>[0])
  return html`<section aria-labelledby="fleet-title">
<h2 class="section-title" id="fleet-title">Fleet <span class="muted small">${list.length} ${list.length === 1 ? 'node' : 'nodes'}${silent > 0 ? `, ${silent} silent` : ''}</span></h2>
${trust.operatorKey === null
    ? ''
    : html`<p class="muted small" data-operator-key="${trust.operatorKey}">Operator key ${shortId(trust.operatorKey, 8)}: only certified nodes change the fleet's catalogue (<code>shoal fleet admit</code>).</p>`}
${list.length === 0
    ? emptyState('No node records yet', 'This node writes its own record at its first heartbeat; the others appear as their records replicate.')
    : html`<div class="table-wrap"><table class="nodes">
  <caption class="visually-hidden">The fleet's nodes: identities from the catalogue, presence from gossip</caption>
  <thead><tr><th scope="col">Node</th><th scope="col">Labels</th><th scope="col">Addresses</th><th scope="col">Disk</th><th scope="col">Images held</th><th scope="col">Last heartbeat</th><th scope="col">Latency</th></tr></thead>
  <tbody>${list.map(node => nodeRow(node, latency, tagsOf, now, roles === undefined ? undefined : roleOf(node, roles)))}</tbody>
</table></div>`}
</section>
<section aria-labelledby="peers-title">
<h2 class="section-title" id="peers-title">Peers of this node <span class="muted small">${peers.body.peers.length} connected</span></h2>
<p class="muted small">This node: ${shortId(peers.body.self.id)}, listening on ${peers.body.self.addresses.map(address => html`<code class="address" title="${address}">${withoutPeerId(address, peers.body.self?.id ?? '')}</code> `)}</p>
${peers.body.peers.length === 0
    ? emptyState('No peers connected', 'Nodes started with --peer pointing at this node (or found by mDNS) connect within seconds.')
    : html`<div class="table-wrap"><table class="peers">
  <caption class="visually-hidden">Peers this node is connected to</caption>
  <thead><tr><th scope="col">Peer</th><th scope="col">Node</th><th scope="col">Connection addresses</th><th scope="col">Latency</th></tr></thead>
  <tbody>${peers.body.peers.map(peer => peerRow(peer, list))}</tbody>
</table></div>`}
</section>`
}

// Records are written by other nodes: only a web address becomes a link (never `javascript:`).
/** What a node's certificate makes it, or null (none: its writes stay on it). */
function roleOf (node: ApiNode, roles: ReadonlyMap<string, { peer: string, role: Role }>): Role | null {
  const writer = (node as { writer?: unknown }).writer
  const holder = typeof writer === 'string' ? roles.get(writer) : undefined
  return holder !== undefined && holder.peer === node.id ? holder.role : null
}

function nodeRow (node: ApiNode, latency: ReadonlyMap<string, number | undefined>, tagsOf: ReadonlyMap<string, string[]>, now: number, role: Role | null | undefined): SafeHtml {
  const key = idFor('node', node.id)
  const disk = node.disk
  const ping = latency.get(node.id)
  return html`<tr id="${key}" class="${node.silent ? 'is-silent' : ''}" data-node="${node.id}">
  <th scope="row">
    <span class="node-name">${node.name}</span>
    ${node.self ? html`<span class="chip self">this node</span>` : ''}
    <span class="chip ${node.silent ? 'silent' : 'live'}" data-announce-key="${key}" data-announce="Node ${node.name} is ${node.standing}">${node.standing}</span>
    ${role === undefined ? '' : role === null ? html`<span class="chip silent" data-role="none" title="No certificate from the operator key: its writes stay on it">not certified</span>` : html`<span class="chip" data-role="${role}">${role}</span>`}
    <br>${shortId(node.id)}
    <br>${/^https?:\/\//.test(node.url) ? html`<a class="small" href="${node.url}">${node.url}</a>` : html`<span class="small">${node.url}</span>`}
  </th>
  <td class="labels">${Object.keys(node.labels).length === 0 ? html`<span class="muted">none</span>` : Object.entries(node.labels).map(([label, value]) => html`<span class="chip">${label}=${value}</span> `)}</td>
  <td>${addressList(node.addresses, node.id)}</td>
  <td>${disk === undefined
    ? html`<span class="muted">not heard yet</span>`
    : html`<meter min="0" max="${disk.usedBytes + disk.freeBytes}" high="${Math.round((disk.usedBytes + disk.freeBytes) * 0.9)}" optimum="0" value="${disk.usedBytes}" aria-label="Disk used on ${node.name}"></meter>
    <br><span class="small">${formatBytes(disk.usedBytes)} used, ${formatBytes(disk.freeBytes)} free</span>`}
  </td>
  <td>${node.images.length === 0
    ? html`<span class="muted">none</span>`
    : html`<ul class="plain">${node.images.map(cid => html`<li>${(tagsOf.get(cid) ?? []).length > 0 ? html`${tagsOf.get(cid)?.join(', ')} ` : ''}${shortId(cid, 6)}</li>`)}</ul>`}</td>
  <td>${node.heartbeatAt === undefined ? html`<span class="muted">not heard since this node started</span>` : relativeTime(node.heartbeatAt, now)}${node.gone
    ? html`<br><span class="small warn">gone: no sign of life for the grace, its share is placed elsewhere</span>`
    : node.silent ? html`<br><span class="small warn">no sign of life for three intervals</span>` : ''}</td>
  <td>${node.self ? html`<span class="muted">—</span>` : ping === undefined ? html`<span class="muted">${node.silent ? 'unreachable' : 'not connected'}</span>` : formatLatency(ping)}</td>
</tr>`
}

function peerRow (peer: PeerAnswer, nodes: readonly ApiNode[]): SafeHtml {
  const node = nodes.find(candidate => candidate.id === peer.id)
  return html`<tr data-peer="${peer.id}">
  <th scope="row">${shortId(peer.id)}</th>
  <td>${node === undefined ? html`<span class="muted">not in the inventory</span>` : node.name}</td>
  <td>${addressList(peer.addresses, peer.id)}</td>
  <td>${peer.latencyMs === undefined ? html`<span class="muted">no answer</span>` : formatLatency(peer.latencyMs)}</td>
</tr>`
}

/** Multiaddrs without the `/p2p/<id>` every one of them ends with (the row names the node); whole on hover. */
function addressList (addresses: readonly string[], id: string): SafeHtml {
  if (addresses.length === 0) return html`<span class="muted">none</span>`
  return html`<ul class="plain addresses">${addresses.map(address => html`<li><code class="address" title="${address}">${withoutPeerId(address, id)}</code></li>`)}</ul>`
}

function withoutPeerId (address: string, id: string): string {
  const suffix = `/p2p/${id}`
  return address.endsWith(suffix) ? address.slice(0, -suffix.length) : address
}

/** libp2p rounds a ping to whole milliseconds: 0 on a LAN or loopback means under one. */
function formatLatency (ms: number): string {
  return ms < 1 ? '< 1 ms' : `${ms} ms`
}
