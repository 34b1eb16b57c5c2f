// The web UI's only script, served as it is (no build step). It keeps a page's live region current
// by fetching the page's `?part=live` HTML every 2 s and patching the DOM in place (so focus, text
// selection and open details survive), announces status changes through a polite live region,
// and drives the strategy form, delete buttons and copy buttons through the management API.
/* global document, fetch, navigator, setTimeout, clearTimeout, setInterval, confirm, Node */

const POLL_MS = 2000
const live = document.getElementById('live')
const announcer = document.getElementById('announcer')
const freshness = document.getElementById('freshness')
const freshnessText = document.getElementById('freshness-text')

// ---- announcements -------------------------------------------------------------------------

let announceTimer
/** Says `text` through the polite live region (cleared first, so a repeated message is said again). */
function announce (text) {
  if (announcer === null || text === '') return
  clearTimeout(announceTimer)
  announcer.textContent = ''
  announceTimer = setTimeout(() => { announcer.textContent = text }, 100)
}

/** key -> what to say about it, from every [data-announce-key] element of the live region. */
function announcements () {
  const said = new Map()
  if (live === null) return said
  for (const element of live.querySelectorAll('[data-announce-key]')) said.set(element.dataset.announceKey, element.dataset.announce ?? element.textContent)
  return said
}

let lastAnnouncements = announcements()

function announceChanges () {
  const current = announcements()
  const changes = []
  for (const [key, text] of current) if (lastAnnouncements.get(key) !== text) changes.push(text)
  lastAnnouncements = current
  if (changes.length > 0) announce(changes.join('. '))
}

// ---- relative times ------------------------------------------------------------------------

function ago (iso) {
  const ms = Date.now() - Date.parse(iso)
  if (!Number.isFinite(ms)) return 'unknown'
  if (ms < -5000) return 'in the future'
  const seconds = Math.max(0, Math.round(ms / 1000))
  if (seconds < 90) return `${seconds} s ago`
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h ago`
  return `${Math.round(seconds / 86400)} d ago`
}

function renderTimes () {
  for (const time of document.querySelectorAll('time[data-relative]')) {
    const text = ago(time.getAttribute('datetime'))
    if (time.textContent !== text) time.textContent = text
  }
}

// ---- patching the live region in place ----------------------------------------------------

/** Attributes the user changes: a live update leaves them as they are. */
function isUserState (element, name) {
  return (element.tagName === 'DETAILS' && name === 'open') || (element.tagName === 'INPUT' && name === 'value' && element === document.activeElement)
}

function patchAttributes (current, next) {
  for (const { name } of [...current.attributes]) {
    if (!next.hasAttribute(name) && !isUserState(current, name)) current.removeAttribute(name)
  }
  for (const { name, value } of [...next.attributes]) {
    if (current.getAttribute(name) !== value && !isUserState(current, name)) {
      current.setAttribute(name, value)
      if (name === 'value' && 'value' in current) current.value = value
    }
  }
}

function sameKind (current, next) {
  if (current.nodeType !== next.nodeType) return false
  if (current.nodeType !== Node.ELEMENT_NODE) return true
  return current.tagName === next.tagName && current.id === next.id
}

/** Makes `current`'s children those of `next`, reusing nodes where they match (by id, else by place). */
function patchChildren (current, next) {
  const wanted = [...next.childNodes]
  for (let i = 0; i < wanted.length; i++) {
    const incoming = wanted[i]
    let existing = current.childNodes[i]
    if (incoming.nodeType === Node.ELEMENT_NODE && incoming.id !== '' && (existing === undefined || existing.id !== incoming.id)) {
      const moved = document.getElementById(incoming.id)
      if (moved !== null && moved.parentNode === current) {
        current.insertBefore(moved, existing ?? null)
        existing = moved
      }
    }
    if (existing !== undefined && sameKind(existing, incoming)) {
      if (existing.nodeType === Node.ELEMENT_NODE) {
        patchAttributes(existing, incoming)
        patchChildren(existing, incoming)
      } else if (existing.nodeValue !== incoming.nodeValue) {
        existing.nodeValue = incoming.nodeValue
      }
    } else {
      current.insertBefore(incoming, existing ?? null)
    }
  }
  while (current.childNodes.length > wanted.length) current.removeChild(current.lastChild)
}

function applyLive (text) {
  const template = document.createElement('template')
  template.innerHTML = text
  patchChildren(live, template.content)
  renderTimes()
  announceChanges()
}

// ---- polling ---------------------------------------------------------------------------------

let pollTimer
let polling = false
let pollAgain = false
let lastHtml
let reachable = true

function setFreshness (ok) {
  if (freshness === null || freshnessText === null) return
  freshness.classList.toggle('stale', !ok)
  freshnessText.textContent = ok
    ? `Live · updated ${new Date().toLocaleTimeString()}`
    : 'Not updating: the node did not answer; retrying'
  if (ok !== reachable) announce(ok ? 'Live updates resumed' : 'Live updates stopped: the node did not answer')
  reachable = ok
}

/** Fetches the live region now (or right after the fetch under way). */
async function refresh () {
  if (live === null) return
  if (polling) {
    pollAgain = true
    return
  }
  polling = true
  clearTimeout(pollTimer)
  try {
    const response = await fetch(live.dataset.liveSrc, { cache: 'no-store', headers: { accept: 'text/html' } })
    if (!response.ok) throw new Error(`HTTP ${response.status}`)
    const text = await response.text()
    if (text !== lastHtml) applyLive(text)
    lastHtml = text
    setFreshness(true)
  } catch {
    setFreshness(false)
  } finally {
    polling = false
    if (pollAgain) {
      pollAgain = false
      void refresh()
    } else if (!document.hidden) {
      pollTimer = setTimeout(refresh, POLL_MS)
    }
  }
}

if (live !== null) {
  setFreshness(true)
  pollTimer = setTimeout(refresh, POLL_MS)
  // A hidden tab stops polling; it catches up as soon as it is shown again.
  document.addEventListener('visibilitychange', () => { if (!document.hidden) void refresh() })
  setInterval(renderTimes, 1000)
}

// ---- copy buttons ----------------------------------------------------------------------------

document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-copy]')
  if (button === null) return
  const input = document.getElementById(button.dataset.copy)
  if (input === null) return
  try {
    await navigator.clipboard.writeText(input.value)
  } catch {
    // The clipboard API needs a secure context (https or localhost); selecting works anywhere.
    input.focus()
    input.select()
    document.execCommand('copy')
  }
  announce(`Copied: ${input.value}`)
})

// A click in a command field selects all of it, ready to copy.
document.addEventListener('focusin', (event) => {
  if (event.target.matches?.('input.command')) event.target.select()
})

// ---- strategies: create, preview, delete -----------------------------------------------------

const form = document.getElementById('strategy-form')
const formError = document.getElementById('strategy-form-error')
const formStatus = document.getElementById('strategy-form-status')
const FIELDS = ['image', 'kind', 'percentage', 'target', 'replicas', 'selector', 'count']

function field (name) {
  return document.getElementById(`strategy-${name}`)
}

function showKindFields () {
  const kind = field('kind').value
  for (const group of form.querySelectorAll('[data-kinds]')) group.hidden = !group.dataset.kinds.split(' ').includes(kind)
}

/** A number field's value as a number when it is one; as typed otherwise (the API says what is wrong). */
function numberOrText (name) {
  const input = field(name)
  const text = input.value.trim()
  if (text === '') return input.validity?.badInput === true ? 'not a number' : undefined
  const number = Number(text)
  return Number.isFinite(number) ? number : text
}

function strategyBody (kind) {
  const body = { image: field('image').value.trim(), kind }
  if (kind === 'percentage') body.percentage = numberOrText('percentage')
  if (kind === 'target') body.target = field('target').value.trim()
  if (kind === 'replicas') body.replicas = numberOrText('replicas')
  if (kind === 'labels') {
    body.selector = field('selector').value.trim()
    const count = numberOrText('count')
    if (count !== undefined) body.count = count
  }
  return body
}

function clearFormMessages () {
  formError.textContent = ''
  formStatus.textContent = ''
  for (const name of FIELDS) {
    const input = field(name)
    input.removeAttribute('aria-invalid')
    input.removeAttribute('aria-errormessage')
  }
}

/** Marks the field the API's message names first, and takes the focus there so it can be fixed. */
function markInvalidField (message) {
  const named = message.match(/\b(image|percentage|target|replicas|selector|count|kind|nametag)\b/)
  if (named === null) return
  const input = field(named[1] === 'nametag' ? 'image' : named[1])
  if (input === null || input.closest('[hidden]') !== null) return
  input.setAttribute('aria-invalid', 'true')
  input.setAttribute('aria-errormessage', 'strategy-form-error')
  input.focus()
}

function placementText (placement) {
  return placement.length === 0 ? 'no node' : placement.map(node => node.name).join(', ')
}

async function submitStrategy (event) {
  event.preventDefault()
  const dryRun = event.submitter?.name === 'dry-run'
  const kind = field('kind').value
  const body = strategyBody(kind)
  if (dryRun) body.execute = false
  clearFormMessages()
  form.setAttribute('aria-busy', 'true')
  try {
    const response = await fetch('/api/v1/strategies', {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json', ...csrfHeader() },
      body: JSON.stringify(body)
    })
    const answer = await response.json().catch(() => undefined)
    if (!response.ok) {
      const message = typeof answer?.message === 'string' ? answer.message : `the node answered HTTP ${response.status}`
      formError.textContent = `Not created: ${message}`
      markInvalidField(message)
      return
    }
    if (dryRun) {
      formStatus.textContent = `Preview: ${body.image} would be placed on ${placementText(answer.placement)}. Nothing was stored.`
    } else {
      formStatus.textContent = `Created: ${answer.strategy.image} on ${placementText(answer.placement)}.`
      void refresh()
    }
  } catch {
    formError.textContent = 'Not created: the node did not answer.'
  } finally {
    form.removeAttribute('aria-busy')
  }
}

if (form !== null) {
  field('kind').addEventListener('change', showKindFields)
  showKindFields()
  form.addEventListener('submit', submitStrategy)
}

document.addEventListener('click', async (event) => {
  const button = event.target.closest('[data-delete-strategy]')
  if (button === null) return
  const described = button.dataset.describe ?? 'this strategy'
  if (!confirm(`Delete the strategy ${described}?\n\nThe nodes that hold the image for it will drop it.`)) return
  const message = (text) => {
    if (formStatus !== null) formStatus.textContent = text
    else announce(text)
  }
  try {
    const response = await fetch(`/api/v1/strategies/${encodeURIComponent(button.dataset.deleteStrategy)}`, { method: 'DELETE', headers: { accept: 'application/json', ...csrfHeader() } })
    if (response.status === 204) {
      message(`Deleted the strategy ${described}.`)
    } else if (response.status === 404) {
      message(`The strategy ${described} was already deleted.`)
    } else {
      const answer = await response.json().catch(() => undefined)
      message(`Not deleted: ${answer?.message ?? `the node answered HTTP ${response.status}`}`)
    }
  } catch {
    message('Not deleted: the node did not answer.')
  }
  // The card goes with the next update: keep the keyboard user's place in the page.
  document.getElementById('content')?.focus()
  void refresh()
})

// Pages without a live region still get current relative times at load.
renderTimes()

/** With a signed-in session, every change carries the session's CSRF token (the page holds it; another site cannot read it). */
function csrfHeader () {
  const token = document.querySelector('meta[name="csrf-token"]')?.getAttribute('content')
  return token === null || token === undefined ? {} : { 'x-csrf-token': token }
}
