// How numbers, times and ids read on the pages.
import { html, type SafeHtml } from './html.ts'

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB']

export function formatBytes (bytes: number): string {
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${UNITS[unit]}`
}

/** "4 s ago", "3 min ago", "2 h ago", "5 d ago"; "in the future" when clocks disagree. */
export function formatAgo (iso: string, now: number): string {
  const ms = now - Date.parse(iso)
  if (!Number.isFinite(ms)) return 'unknown'
  if (ms < -5_000) return 'in the future'
  const seconds = Math.max(0, Math.round(ms / 1000))
  if (seconds < 90) return `${seconds} s ago`
  if (seconds < 90 * 60) return `${Math.round(seconds / 60)} min ago`
  if (seconds < 36 * 3600) return `${Math.round(seconds / 3600)} h ago`
  return `${Math.round(seconds / 86_400)} d ago`
}

/**
 * A time as "4 s ago", with the exact time on hover; the page's script keeps the text current
 * between updates (data-relative).
 */
export function relativeTime (iso: string | undefined, now: number): SafeHtml {
  if (iso === undefined) return html`<span class="muted">unknown</span>`
  return html`<time datetime="${iso}" title="${iso}" data-relative>${formatAgo(iso, now)}</time>`
}

/** `abcdef…uvwxyz`: both ends of a long id, the whole of it on hover. */
export function shortId (id: string, keep = 8): SafeHtml {
  if (id.length <= keep * 2 + 1) return html`<code>${id}</code>`
  return html`<code title="${id}">${id.slice(0, keep)}…${id.slice(-keep)}</code>`
}

/** The digest without its algorithm's full length: `sha256:0123abcd…`. */
export function shortDigest (digest: string): SafeHtml {
  const colon = digest.indexOf(':')
  return html`<code title="${digest}">${digest.slice(0, colon + 13)}…</code>`
}
