// Images: every repo:tag of the catalogue (of this node outside a mesh), what it is and where it is.
import { bodyOr, type ApiNode, type ImagesAnswer, type ManagementApi, type MirrorsAnswer, type NodesAnswer, type PublishedNamesAnswer } from '../api.ts'
import { formatBytes, relativeTime, shortDigest, shortId } from '../format.ts'
import { html, idFor, type SafeHtml } from '../html.ts'
import type { ImageDetails, ImageDetailsReader } from '../image-details.ts'
import { apiProblem, emptyState } from '../layout.ts'
import type { ImageAnswer } from '../../api/schemas.ts'

/** How long a page waits for sizes and platforms not read yet; later ones show at the next update. */
const DETAILS_WAIT_MS = 1_500

export interface ImagesPageInput {
  api: ManagementApi
  details: Pick<ImageDetailsReader, 'details'>
  /** host:port the browser reached this node at: the registry in the pull command. */
  host: string
  now: number
}

export async function renderImagesLive ({ api, details, host, now }: ImagesPageInput): Promise<SafeHtml> {
  const [images, nodesAnswer, mirrorsAnswer, namesAnswer] = await Promise.all([api.get<ImagesAnswer>('/images'), api.get<NodesAnswer>('/nodes'), api.get<MirrorsAnswer>('/mirrors'), api.get<PublishedNamesAnswer>('/names/published')])
  const names = bodyOr(namesAnswer, { names: [] }).names
  const mirrors = bodyOr(mirrorsAnswer, { mirrors: [] }).mirrors
  if (!images.ok) return apiProblem('The images could not be listed', images.message)
  const nodes = bodyOr(nodesAnswer, { nodes: [] }).nodes
  if (images.body.images.length === 0) {
    return emptyState('No images yet', html`Push one to any node of the fleet, for example
      <code>skopeo copy oci:./my-image docker://${host}/app:1.0</code> or <code>docker push ${host}/app:1.0</code>;
      it shows here with its image CID.`)
  }
  const described = await Promise.all(images.body.images.map(async image => ({ image, details: await details.details(image, nodes, DETAILS_WAIT_MS) })))
  return html`<p class="count">${described.length === 1 ? '1 image' : `${described.length} images`}</p>
<ul class="cards" aria-label="Images">
  ${described.map(({ image, details }) => imageCard(image, details, nodes, host, now, mirrors.find(mirror => image.repository.startsWith(`${mirror.registry}/`))))}
</ul>
${names.length === 0 ? '' : publishedNames(names, host, now)}`
}

/** The IPNS names this node publishes: who (the key), what it points at, and the pull by name. */
function publishedNames (names: PublishedNamesAnswer['names'], host: string, now: number): SafeHtml {
  return html`<section aria-labelledby="names-title">
<h2 class="section-title" id="names-title">Names this node publishes <span class="muted small">${names.length}</span></h2>
<div class="table-wrap"><table class="names">
  <caption class="visually-hidden">IPNS names this node publishes and republishes</caption>
  <thead><tr><th scope="col">Name</th><th scope="col">Key</th><th scope="col">Image</th><th scope="col">Sequence</th><th scope="col">Signed</th><th scope="col">Pull</th></tr></thead>
  <tbody>${names.map(entry => html`<tr data-ipns-name="${entry.name}"><td><code class="cid">${entry.name}</code></td><td>${entry.key}</td><td>${entry.image}<br><code class="cid small">${entry.value}</code></td><td>${entry.sequence}</td><td>${relativeTime(entry.signedAt, now)}</td><td><code>${host}/ipns/${entry.name}:latest</code></td></tr>`)}</tbody>
</table></div>
</section>`
}

/** `mirror`: the upstream the image's repository is mirrored from, if any. */
function imageCard (image: ImageAnswer, details: ImageDetails, nodes: readonly ApiNode[], host: string, now: number, mirror: { registry: string, url: string } | undefined): SafeHtml {
  const reference = `${image.repository}:${image.tag}`
  const key = idFor('image', reference)
  const pull = `docker pull ${host}/ipfs/${image.imageCid}`
  const pusher = nodes.find(node => node.id === image.node)
  return html`<li class="card" id="${key}" aria-labelledby="${key}-title">
  <h2 class="card-title" id="${key}-title"><span data-announce-key="${key}" data-announce="Image ${reference} listed">${reference}</span>${mirror === undefined ? '' : html` <span class="chip" data-mirrored-from="${mirror.url}" title="Fetched from ${mirror.url} when the fleet lacked it">mirrored from ${mirror.registry}</span>`}${details.encryptedFor === undefined ? '' : html` <span class="chip" data-encrypted title="Its layers are encrypted: nodes hold and serve them, only the recipients' keys read them">encrypted</span>`}</h2>
  <dl class="facts">
    <div class="wide"><dt>Image CID</dt><dd><code class="cid">${image.imageCid}</code></dd></div>
    <div class="wide"><dt><label for="${key}-pull">Pull by CID<span class="visually-hidden"> of ${reference}</span></label></dt><dd class="copy-line">
      <input id="${key}-pull" class="command" readonly value="${pull}" spellcheck="false">
      <button type="button" id="${key}-copy" data-copy="${key}-pull">Copy<span class="visually-hidden"> the pull command of ${reference}</span></button></dd></div>
    <div><dt>Digest</dt><dd>${shortDigest(image.digest)}</dd></div>
    <div><dt>Size</dt><dd>${details.sizeBytes === undefined ? html`<span class="muted">unknown</span>` : formatBytes(details.sizeBytes)}</dd></div>
    <div><dt>Platforms</dt><dd>${platformsOf(details)}</dd></div>
    <div><dt>Referrers</dt><dd>${referrersOf(details)}</dd></div>
    ${details.encryptedFor === undefined ? '' : html`<div class="wide"><dt>Encrypted for</dt><dd><ul class="plain" aria-label="Recipients of ${reference}">${details.encryptedFor.map(recipient => html`<li><code>${recipient}</code></li>`)}</ul></dd></div>`}
    <div><dt>Held by</dt><dd>${heldBy(image, nodes)}</dd></div>
    <div><dt>Pushed</dt><dd>${image.pushedAt === undefined ? html`<span class="muted">here</span>` : html`${relativeTime(image.pushedAt, now)}${image.node === undefined ? '' : html` to ${pusher === undefined ? shortId(image.node) : pusher.name}`}${image.pushedBy === undefined ? '' : html` by ${image.pushedBy}`}`}</dd></div>
  </dl>
</li>`
}

function platformsOf (details: ImageDetails): SafeHtml {
  if (details.platforms.length > 0) return html`${details.platforms.map(platform => html`<span class="chip">${platform}</span> `)}`
  if (details.artifactType !== undefined) return html`<span class="muted">artifact</span> <code>${details.artifactType}</code>`
  return html`<span class="muted">unknown</span>`
}

function referrersOf (details: ImageDetails): SafeHtml {
  if (details.referrers === undefined) return html`<span class="muted">unknown</span>`
  if (details.referrers.length === 0) return html`<span class="muted">none</span>`
  return html`<ul class="plain">${details.referrers.map(referrer => html`<li>${shortDigest(referrer.digest)} ${referrer.artifactType === undefined ? '' : html`<span class="chip">${referrer.artifactType}</span>`}</li>`)}</ul>`
}

function heldBy (image: ImageAnswer, nodes: readonly ApiNode[]): SafeHtml {
  if (image.heldBy.length === 0) return html`<span class="muted">${image.heldHere ? 'this node' : 'no node says it holds it whole'}</span>`
  return html`${image.heldBy.map(id => {
    const node = nodes.find(candidate => candidate.id === id)
    return html`<span class="chip${node?.silent === true ? ' silent' : ''}" title="${id}">${node?.name ?? id.slice(-8)}${node?.silent === true ? ' (silent)' : ''}</span> `
  })}`
}
