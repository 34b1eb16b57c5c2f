// Strategies: the form that creates one of each kind, and every strategy with the state of each
// node it places the image on.
import { bodyOr, type ApiStrategy, type DesiredNode, type DroppingNode, type ImagesAnswer, type ManagementApi, type NodesAnswer, type StatusAnswer, type StrategiesAnswer } from '../api.ts'
import { formatBytes, relativeTime, shortId } from '../format.ts'
import { html, idFor, type SafeHtml } from '../html.ts'
import { apiProblem, emptyState } from '../layout.ts'

export interface StrategiesPageInput {
  api: ManagementApi
  now: number
}

/** Whether this node can take strategies at all (outside a mesh the API refuses them). */
export async function strategiesAvailable (api: ManagementApi): Promise<boolean> {
  const answer = await api.get<StrategiesAnswer>('/strategies')
  return answer.ok || answer.status !== 409
}

/**
 * The form. The browser's own checks are off (novalidate): the API's message is the one shown,
 * so the page and the CLI refuse the same things in the same words.
 */
export function renderStrategyForm (): SafeHtml {
  return html`<section class="panel" aria-labelledby="strategy-form-title">
<h2 id="strategy-form-title">New strategy</h2>
<form id="strategy-form" novalidate>
  <div class="fields">
    <div class="field grow">
      <label for="strategy-image">Image</label>
      <input id="strategy-image" name="image" list="known-images" autocomplete="off" spellcheck="false" aria-describedby="strategy-image-hint">
      <p class="hint" id="strategy-image-hint"><code>repo:tag</code> (follows the tag), <code>repo@sha256:…</code> or an image CID</p>
    </div>
    <div class="field">
      <label for="strategy-kind">Placement</label>
      <select id="strategy-kind" name="kind">
        <option value="percentage">A percentage of the nodes</option>
        <option value="target">One node</option>
        <option value="replicas">A number of nodes</option>
        <option value="all">Every node</option>
        <option value="labels">Nodes with labels</option>
      </select>
    </div>
    <div class="field" data-kinds="percentage">
      <label for="strategy-percentage">Percentage of the nodes</label>
      <input id="strategy-percentage" name="percentage" type="number" min="1" max="100" step="any" value="50" inputmode="decimal">
    </div>
    <div class="field" data-kinds="target">
      <label for="strategy-target">Node (name or id)</label>
      <input id="strategy-target" name="target" list="known-nodes" autocomplete="off" spellcheck="false">
    </div>
    <div class="field" data-kinds="replicas">
      <label for="strategy-replicas">Number of nodes</label>
      <input id="strategy-replicas" name="replicas" type="number" min="1" step="1" value="2" inputmode="numeric">
    </div>
    <div class="field" data-kinds="labels">
      <label for="strategy-selector">Labels</label>
      <input id="strategy-selector" name="selector" placeholder="zone=eu,tier=edge" autocomplete="off" spellcheck="false" aria-describedby="strategy-selector-hint">
      <p class="hint" id="strategy-selector-hint">A node must have every one</p>
    </div>
    <div class="field" data-kinds="labels">
      <label for="strategy-count">At most this many nodes (optional)</label>
      <input id="strategy-count" name="count" type="number" min="1" step="1" inputmode="numeric">
    </div>
  </div>
  <div class="actions">
    <button type="submit" class="primary">Create strategy</button>
    <button type="submit" name="dry-run" value="true">Preview placement</button>
  </div>
  <p id="strategy-form-error" class="message error" role="alert"></p>
  <p id="strategy-form-status" class="message" role="status"></p>
</form>
</section>`
}

export async function renderStrategiesLive ({ api, now }: StrategiesPageInput): Promise<SafeHtml> {
  const [strategies, images, nodes] = await Promise.all([
    api.get<StrategiesAnswer>('/strategies'), api.get<ImagesAnswer>('/images'), api.get<NodesAnswer>('/nodes')
  ])
  if (!strategies.ok) {
    return apiProblem(strategies.status === 409 ? 'Strategies need a fleet' : 'The strategies could not be read',
      strategies.status === 409 ? `${strategies.message}. Start the node with --mesh or --peer to place images on a fleet.` : strategies.message)
  }
  const statuses = await Promise.all(strategies.body.strategies.map(async strategy => ({ strategy, status: await api.get<StatusAnswer>(`/strategies/${encodeURIComponent(strategy.id)}/status`) })))
  // Suggestions for the form's image and node fields; refreshed with the rest.
  const suggestions = html`<datalist id="known-images">${bodyOr(images, { images: [] }).images.map(image => html`<option value="${image.repository}:${image.tag}"></option>`)}</datalist>
<datalist id="known-nodes">${bodyOr(nodes, { nodes: [] }).nodes.map(node => html`<option value="${node.name}"></option>`)}</datalist>`
  if (statuses.length === 0) {
    return html`${suggestions}${emptyState('No strategies yet', 'Create one with the form above: the nodes it places the image on fetch it, and their progress shows here.')}`
  }
  return html`${suggestions}
<h2 class="section-title">${statuses.length === 1 ? '1 strategy' : `${statuses.length} strategies`}</h2>
<ul class="cards" aria-label="Strategies">
  ${statuses.map(({ strategy, status }) => strategyCard(strategy, status.ok ? status.body : undefined, now))}
</ul>`
}

/** "50 % of the nodes", "on node b", … */
export function describePlacement (strategy: ApiStrategy): string {
  switch (strategy.kind) {
    case 'percentage': return `${strategy.percentage ?? '?'} % of the nodes`
    case 'target': return `on node ${strategy.target ?? '?'}`
    case 'replicas': return `${strategy.replicas ?? '?'} ${strategy.replicas === 1 ? 'node' : 'nodes'}`
    case 'all': return 'every node'
    case 'labels': {
      const labels = Object.entries(strategy.selector ?? {}).map(([key, value]) => `${key}=${value}`).join(',')
      return `nodes labelled ${labels}${strategy.count === undefined ? '' : ` (at most ${strategy.count})`}`
    }
    default: return strategy.kind
  }
}

function strategyCard (strategy: ApiStrategy, status: StatusAnswer | undefined, now: number): SafeHtml {
  const key = idFor('strategy', strategy.id)
  const placement = describePlacement(strategy)
  const summary = strategy.summary
  return html`<li class="card" id="${key}" aria-labelledby="${key}-title">
  <div class="card-head">
    <div>
      <h3 class="card-title" id="${key}-title">${strategy.image} <span class="placement">${placement}</span></h3>
      <p class="muted small">${summary === undefined ? '' : `${summary.held} of ${summary.desired} held`}${summary !== undefined && summary.dropping > 0 ? `, ${summary.dropping} dropping` : ''} · created ${relativeTime(strategy.createdAt, now)} · id ${shortId(strategy.id)}</p>
    </div>
    <button type="button" class="danger" id="${key}-delete" data-delete-strategy="${strategy.id}" data-describe="${strategy.image} on ${placement}">Delete<span class="visually-hidden"> the strategy ${strategy.image} on ${placement}</span></button>
  </div>
  ${status === undefined
    ? html`<p class="muted">Its status could not be read.</p>`
    : html`<table class="states">
    <caption class="visually-hidden">Nodes of the strategy ${strategy.image} on ${placement}</caption>
    <thead><tr><th scope="col">Node</th><th scope="col">State</th><th scope="col">Progress</th><th scope="col">Updated</th></tr></thead>
    <tbody>
      ${status.desired.length === 0 ? html`<tr><td colspan="4" class="muted">No node is placed: no live node matches.</td></tr>` : ''}
      ${status.desired.map(node => desiredRow(strategy, node, now))}
      ${status.extra.map(node => droppingRow(strategy, node))}
    </tbody>
  </table>`}
</li>`
}

function stateBadge (strategy: ApiStrategy, node: { node: string, name: string }, state: string, spoken: string): SafeHtml {
  return html`<span class="state state-${state}" data-announce-key="${idFor(strategy.id, node.node)}" data-announce="${strategy.image} on ${node.name}: ${spoken}">${state}</span>`
}

function desiredRow (strategy: ApiStrategy, node: DesiredNode, now: number): SafeHtml {
  const spoken = node.state === 'failed' ? `failed, ${node.reason ?? 'no reason given'}` : node.state
  return html`<tr data-node="${node.node}" data-state="${node.state}">
    <th scope="row">${node.name} ${shortId(node.node, 6)}</th>
    <td>${stateBadge(strategy, node, node.state, spoken)}</td>
    <td>${progressOf(strategy, node)}</td>
    <td>${node.updatedAt === undefined ? html`<span class="muted">—</span>` : relativeTime(node.updatedAt, now)}</td>
  </tr>`
}

function progressOf (strategy: ApiStrategy, node: DesiredNode): SafeHtml {
  switch (node.state) {
    case 'pending': return html`<span class="muted">the node has not started on it</span>`
    case 'fetching': {
      const done = node.bytesDone ?? 0
      const total = node.bytesTotal
      if (total === undefined || total === 0) return html`<progress aria-label="${strategy.image} on ${node.name}"></progress> ${formatBytes(done)}`
      const percent = Math.min(100, Math.floor(done / total * 100))
      return html`<progress max="${total}" value="${Math.min(done, total)}" aria-label="${strategy.image} on ${node.name}"></progress> ${formatBytes(done)} of ${formatBytes(total)} (${percent} %)`
    }
    case 'held': return html`${node.bytesTotal === undefined ? 'held whole' : `${formatBytes(node.bytesTotal)}, held whole`}`
    case 'failed': return html`<span class="reason">${node.reason ?? 'no reason given'}</span>`
    default: return html``
  }
}

function droppingRow (strategy: ApiStrategy, node: DroppingNode): SafeHtml {
  return html`<tr data-node="${node.node}" data-state="dropping">
    <th scope="row">${node.name} ${shortId(node.node, 6)}</th>
    <td>${stateBadge(strategy, node, 'dropping', 'dropping')}</td>
    <td class="muted">no longer placed here; last said ${node.reported}${node.silent ? ', and is silent' : ''}</td>
    <td></td>
  </tr>`
}
