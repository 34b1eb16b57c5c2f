// HTML built from template literals: every interpolated value is escaped unless it is already
// HTML made here, so data from the catalogue (tags, labels, names other nodes chose) cannot inject
// markup into the page.

/** Markup that is safe to insert as it is: made by `html`, never from outside data. */
export class SafeHtml {
  readonly text: string

  constructor (text: string) {
    this.text = text
  }

  toString (): string {
    return this.text
  }
}

/** A value to interpolate: escaped text, safe markup, or a list of either; nothing for null, undefined and false. */
export type HtmlValue = SafeHtml | string | number | boolean | null | undefined | readonly HtmlValue[]

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', '\'': '&#39;' }

export function escapeHtml (text: string): string {
  return text.replace(/[&<>"']/g, char => ESCAPES[char] ?? char)
}

function render (value: HtmlValue): string {
  if (value instanceof SafeHtml) return value.text
  if (Array.isArray(value)) return value.map(render).join('')
  if (value === null || value === undefined || value === false) return ''
  return escapeHtml(String(value))
}

/** Tagged template: `html\`<td>${name}</td>\`` escapes `name`. Attribute values must be quoted. */
export function html (strings: TemplateStringsArray, ...values: HtmlValue[]): SafeHtml {
  let text = strings[0] ?? ''
  for (let i = 0; i < values.length; i++) text += render(values[i]) + (strings[i + 1] ?? '')
  return new SafeHtml(text)
}

/** A string usable as (part of) an element id, from any text: stable, so live updates find it again. */
export function idFor (...parts: string[]): string {
  return parts.map(part => part.replace(/[^A-Za-z0-9_-]/g, char => `_${char.codePointAt(0)?.toString(16) ?? ''}_`)).join('--')
}
