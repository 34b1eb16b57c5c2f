// The frame every page shares: navigation, the live region the page's script refreshes, and the
// polite live region that announces status changes to screen readers.
import { html, type SafeHtml } from './html.ts'

export interface NavItem {
  path: string
  label: string
}

export const NAV: readonly NavItem[] = [
  { path: '/', label: 'Images' },
  { path: '/strategies', label: 'Strategies' },
  { path: '/nodes', label: 'Nodes' },
  { path: '/datastore', label: 'Data store' }
]

export const ASSETS_PREFIX = '/ui'

export interface PageFrame {
  path: string
  title: string
  /** One line under the title: what the page shows. */
  intro: string
  /** Fixed content above the live region (a form): live updates never touch it. */
  before?: SafeHtml
  /**
   * The part the page's script fetches again every few seconds (`?part=live`); inserted exactly as
   * that answer is, so the first update finds the same nodes and patches rather than replaces.
   */
  live: SafeHtml
  /** This node's name and the host the browser reached it at. */
  node: { name?: string, host: string }
  /** Signed in with the session cookie: who, and the CSRF token the page's script sends with changes. */
  session?: { user: string, csrf: string }
}

export function renderPage (frame: PageFrame): string {
  return `<!doctype html>\n${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${frame.title} · Shoal</title>
<link rel="icon" href="${ASSETS_PREFIX}/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="${ASSETS_PREFIX}/style.css">
<script type="module" src="${ASSETS_PREFIX}/app.js"></script>
${frame.session === undefined ? '' : html`<meta name="csrf-token" content="${frame.session.csrf}">`}
</head>
<body>
<a class="skip" href="#content">Skip to content</a>
<header class="top">
  <div class="brand"><span class="logo" aria-hidden="true">◆</span> Shoal
    <span class="where">${frame.node.name === undefined ? 'standalone node' : html`node <strong>${frame.node.name}</strong>`} · <code>${frame.node.host}</code></span>
  </div>
  <nav aria-label="Pages">
    <ul>
      ${NAV.map(item => html`<li><a href="${item.path}"${item.path === frame.path ? html` aria-current="page"` : ''}>${item.label}</a></li>`)}
      <li><a href="/swagger">API</a></li>
    </ul>
  </nav>
  ${frame.session === undefined ? '' : html`<form class="session" method="post" action="/logout"><input type="hidden" name="csrf" value="${frame.session.csrf}"><span>${frame.session.user}</span> <button type="submit">Sign out</button></form>`}
  <p class="freshness" id="freshness"><span class="dot" aria-hidden="true"></span><span id="freshness-text">Live updates need JavaScript</span></p>
</header>
<main id="content" tabindex="-1">
  <h1>${frame.title}</h1>
  <p class="intro">${frame.intro}</p>
  ${frame.before}
  <div id="live" data-live-src="${frame.path}?part=live">${frame.live}</div>
</main>
<div id="announcer" class="visually-hidden" aria-live="polite"></div>
</body>
</html>
`}`
}

/** A page's message when there is nothing to show, with what to do about it. */
export function emptyState (title: string, body: SafeHtml | string): SafeHtml {
  return html`<div class="empty" role="note"><p class="empty-title">${title}</p><p>${body}</p></div>`
}

/** A refusal of the API, shown where the page's data would be. */
export function apiProblem (what: string, message: string): SafeHtml {
  return html`<div class="empty problem" role="note"><p class="empty-title">${what}</p><p>${message}</p></div>`
}
