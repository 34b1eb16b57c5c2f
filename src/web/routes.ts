// The web UI (D8): server-rendered pages at /, /strategies, /nodes and /datastore on the registry's
// own port, built from the management API, plus the one script and stylesheet they load. Each page
// answers `?part=live` with only its live region, which the script fetches again every 2 s.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { inProcessApi, type ManagementApi, type NodesAnswer } from './api.ts'
import type { SafeHtml } from './html.ts'
import type { ImageDetailsReader, PeerToken } from './image-details.ts'
import { sessionOf } from '../registry/request-access.ts'
import { ASSETS_PREFIX, renderPage } from './layout.ts'
import { renderDatastoreLive } from './pages/datastore.ts'
import { renderImagesLive } from './pages/images.ts'
import { renderNodesLive } from './pages/nodes.ts'
import { renderStrategiesLive, renderStrategyForm, strategiesAvailable } from './pages/strategies.ts'

interface PageInput {
  api: ManagementApi
  details: Pick<ImageDetailsReader, 'details'>
  host: string
  now: number
}

interface PageDefinition {
  path: string
  title: string
  intro: string
  /** Fixed content above the live region, rendered with the whole page only. */
  before?: (input: PageInput) => Promise<SafeHtml | undefined>
  live: (input: PageInput) => Promise<SafeHtml>
}

const PAGES: readonly PageDefinition[] = [
  {
    path: '/',
    title: 'Images',
    intro: 'Every tagged image of the fleet, its content address and the nodes that hold it.',
    live: renderImagesLive
  },
  {
    path: '/strategies',
    title: 'Strategies',
    intro: 'Where images must live. Each node works out its own share, fetches it and drops what no strategy needs.',
    before: async ({ api }) => (await strategiesAvailable(api)) ? renderStrategyForm() : undefined,
    live: renderStrategiesLive
  },
  {
    path: '/nodes',
    title: 'Nodes',
    intro: 'The fleet as its replicated inventory shows it, and the peers this node is connected to.',
    live: renderNodesLive
  },
  {
    path: '/datastore',
    title: 'Data store',
    intro: 'The replicated catalogue as it is: every database\'s current entries, when and by which node each was written.',
    live: renderDatastoreLive
  }
]

// No inline script or style anywhere: the pages load only their own two files.
const SECURITY_HEADERS = {
  'content-security-policy': 'default-src \'self\'; script-src \'self\'; style-src \'self\'; img-src \'self\' data:; connect-src \'self\'; base-uri \'none\'; form-action \'self\'; frame-ancestors \'none\'',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store'
}

const ASSETS: Record<string, string> = {
  'app.js': 'text/javascript; charset=utf-8',
  'style.css': 'text/css; charset=utf-8',
  'icon.svg': 'image/svg+xml'
}

/**
 * `peerCa`: CA certificates (PEM) other nodes' HTTPS certificates are checked against.
 * `internalRead`: headers that let the UI's own reads of this node's /v2 through the access guard
 * (the images they describe are those the API listed for the user). `peerToken`: a token for
 * other nodes' /v2, for the image being described only.
 */
export function registerWebUi (app: FastifyInstance, peerCa?: string[], internalRead?: Record<string, string>, peerToken?: PeerToken): void {
  const api = (headers: FastifyRequest['headers']): ManagementApi => inProcessApi(app, { authorization: headers.authorization, cookie: headers.cookie })
  // The image details' reader (registry reads, the ocicrypt parser and jose behind it) is loaded
  // with the first page that describes an image: a node nobody browses never holds it.
  let reader: Promise<ImageDetailsReader> | undefined
  const readerOnce = async (): Promise<ImageDetailsReader> => await (reader ??= import('./image-details.ts')
    .then(({ ImageDetailsReader }) => new ImageDetailsReader(app, peerCa, internalRead, peerToken)))
  const details: PageInput['details'] = { details: async (...args) => await (await readerOnce()).details(...args) }
  for (const [file, contentType] of Object.entries(ASSETS)) {
    // Read once at start: a few kilobytes, served as they are (no build step).
    const body = readFileSync(join(import.meta.dirname, 'assets', file))
    app.get(`${ASSETS_PREFIX}/${file}`, async (_req, reply) => await reply
      .header('content-type', contentType).header('cache-control', 'no-cache').header('x-content-type-options', 'nosniff').send(body))
  }
  // Browsers ask for /favicon.ico whatever the page links; a 404 there is logged as an error on
  // every page. Every current browser takes an SVG icon.
  const icon = readFileSync(join(import.meta.dirname, 'assets', 'icon.svg'))
  app.get('/favicon.ico', { schema: { hide: true } }, async (_req, reply) => await reply
    .header('content-type', 'image/svg+xml').header('cache-control', 'max-age=86400').send(icon))
  for (const page of PAGES) {
    // The API answers as the signed-in user would be answered (what the user may see).
    app.get(page.path, async (req, reply) => await answerPage(page, req, reply, { api: api(req.headers), details, host: req.host, now: Date.now() }))
  }
}

async function answerPage (page: PageDefinition, req: FastifyRequest, reply: FastifyReply, input: PageInput): Promise<FastifyReply> {
  reply.headers({ ...SECURITY_HEADERS, 'content-type': 'text/html; charset=utf-8' })
  try {
    if ((req.query as Record<string, unknown>).part === 'live') return await reply.send((await page.live(input)).text)
    const [live, before, self] = await Promise.all([page.live(input), page.before?.(input), selfName(input.api)])
    const session = sessionOf(req)
    return await reply.send(renderPage({ path: page.path, title: page.title, intro: page.intro, before, live, node: { name: self, host: input.host }, ...(session === undefined ? {} : { session }) }))
  } catch (err) {
    req.log.error({ err, url: req.url }, 'a page of the web UI failed')
    return await reply.code(500).send('<!doctype html><title>Shoal</title><p>This page failed to render; the node logged why. Reload to try again.</p>')
  }
}

async function selfName (api: ManagementApi): Promise<string | undefined> {
  const answer = await api.get<NodesAnswer>('/nodes')
  return answer.ok ? answer.body.nodes.find(node => node.self)?.name : undefined
}
