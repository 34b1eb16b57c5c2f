// Data store: the replicated catalogue's databases as they are, each entry with when and by which
// node it was written (DistroMash's "distributed datastore").
import type { Datastore, ManagementApi } from '../api.ts'
import type { DatastoreEntry } from '../../api/schemas.ts'
import { relativeTime, shortId } from '../format.ts'
import { html, idFor, type SafeHtml } from '../html.ts'
import { apiProblem, emptyState } from '../layout.ts'

export interface DatastorePageInput {
  api: ManagementApi
  now: number
}

const DESCRIPTIONS: Record<string, string> = {
  'shoal.tags': 'Tags: repo:tag → manifest digest and image CID, written by the node pushed to',
  'shoal.nodes': 'Node identities: each node writes its own record when its name, URL, addresses or labels change',
  'shoal.strategies': 'Replication strategies, written by the node whose API created them'
}

export async function renderDatastoreLive ({ api, now }: DatastorePageInput): Promise<SafeHtml> {
  const answer = await api.get<Datastore>('/datastore')
  if (!answer.ok) {
    return answer.status === 409
      ? emptyState('No replicated data store', `${answer.message}. A node started with --mesh or --peer keeps its tags, strategies and node records in OrbitDB databases shared by the fleet.`)
      : apiProblem('The data store could not be read', answer.message)
  }
  return html`${answer.body.databases.map(db => html`<section class="panel" aria-labelledby="${idFor('db', db.name)}">
  <h2 id="${idFor('db', db.name)}">${db.name} <span class="muted small">${db.entries.length} ${db.entries.length === 1 ? 'entry' : 'entries'}</span></h2>
  <p class="muted small">${DESCRIPTIONS[db.name] ?? ''} · address <code class="address">${db.address}</code></p>
  ${db.entries.length === 0
    ? emptyState('No entries', 'Nothing has been written here yet, or every key written was deleted since (deleted keys are not shown).')
    : html`<div class="table-wrap"><table class="datastore">
    <caption class="visually-hidden">Entries of ${db.name}</caption>
    <thead><tr><th scope="col">Key</th><th scope="col">Value</th><th scope="col">Written</th><th scope="col">By</th></tr></thead>
    <tbody>${db.entries.map(entry => entryRow(db.name, entry, now))}</tbody>
  </table></div>`}
</section>`)}`
}

function entryRow (database: string, entry: DatastoreEntry, now: number): SafeHtml {
  const key = idFor('entry', database, entry.key)
  const compact = JSON.stringify(entry.value)
  return html`<tr id="${key}">
  <th scope="row"><code class="key">${entry.key}</code></th>
  <td>
    <details id="${key}-value">
      <summary><code class="preview">${compact.length > 100 ? `${compact.slice(0, 100)}…` : compact}</code></summary>
      <pre>${JSON.stringify(entry.value, null, 2)}</pre>
    </details>
  </td>
  <td>${relativeTime(entry.writtenAt, now)}${entry.clock === undefined ? '' : html`<br><span class="small muted">Lamport time ${entry.clock.time}</span>`}</td>
  <td>${entry.writer === undefined
    ? html`<span class="muted">unknown</span>`
    : entry.writer.name !== undefined ? html`${entry.writer.name}<br>${shortId(entry.writer.node ?? '', 6)}` : html`<span class="muted">identity</span> ${shortId(entry.writer.identity, 6)}`}
    ${entry.hash === undefined ? '' : html`<br><span class="small muted">entry ${shortId(entry.hash, 6)}</span>`}</td>
</tr>`
}
