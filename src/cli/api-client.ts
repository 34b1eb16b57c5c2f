/** A failure the CLI reports in one line. */
export class CliError extends Error {}

/** `user:password` for a node at `url`: the URL's own (https://alice:pw@host), else SHOAL_USER (undefined: none). */
export function nodeCredentials (url: URL): string | undefined {
  return url.username !== '' ? `${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}` : process.env.SHOAL_USER
}

/** A request to a node; a node that cannot be reached becomes a one-line CLI error. */
export async function requestNode (node: string, path: string, init: RequestInit = {}): Promise<Response> {
  // A node with authentication on: user and password in the node's URL (https://alice:pw@host),
  // else SHOAL_USER=user:password. fetch refuses URLs with credentials, so they become a header.
  const url = new URL(path, node)
  const credentials = nodeCredentials(url)
  url.username = ''
  url.password = ''
  const headers = new Headers(init.headers)
  if (credentials !== undefined && credentials !== '' && !headers.has('authorization')) headers.set('authorization', `Basic ${Buffer.from(credentials).toString('base64')}`)
  try {
    return await fetch(url, { ...init, headers })
  } catch (err) {
    const cause = (err as Error).cause
    throw new CliError(`cannot reach ${shown(node)}: ${oneLine(cause instanceof Error ? cause.message : (err as Error).message)}`, { cause: err })
  }
}

/**
 * A call to a node's management API. A refusal becomes a CliError with the API's own message; an
 * answer that is not the API's (another server on that port, a proxy's HTML page) says what came
 * back in one line, never the page itself.
 */
export async function callApi<T> (node: string, method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const response = await requestNode(node, `/api/v1${path}`, {
    method,
    signal,
    headers: { accept: 'application/json', ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  const text = await response.text()
  const parsed = parseJson(text)
  if (!response.ok) {
    const message = (parsed as { message?: unknown } | undefined)?.message
    if (typeof message === 'string') throw new CliError(oneLine(message))
    throw new CliError(`${method} /api/v1${path}: ${notOurs(node, response, text)}`)
  }
  if (parsed === NOT_JSON) throw new CliError(`${method} /api/v1${path}: ${notOurs(node, response, text)}`)
  return parsed as T
}

/** GETs JSON from a node's management API (`path` under /api/v1). */
export async function getJson<T> (node: string, path: string, signal?: AbortSignal): Promise<T> {
  return await callApi<T>(node, 'GET', path, undefined, signal)
}

/**
 * One line for an answer that is not what a Shoal node sends: its status and media type, and the
 * likely reason. An OCI error body (from /v2) is shown by its codes and messages.
 */
export function describeAnswer (node: string, response: Response, text: string): string {
  const parsed = parseJson(text)
  const errors = (parsed as { errors?: unknown } | undefined)?.errors
  if (Array.isArray(errors)) {
    return `${response.status} ${oneLine(errors.map(e => `${String((e as { code?: unknown }).code)}: ${String((e as { message?: unknown }).message)}`).join('; '))}`
  }
  return notOurs(node, response, text)
}

const NOT_JSON = Symbol('not JSON')

function parseJson (text: string): unknown {
  if (text === '') return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return NOT_JSON
  }
}

function notOurs (node: string, response: Response, text: string): string {
  const type = response.headers.get('content-type')?.split(';')[0]?.trim() ?? 'no content type'
  const status = `${response.status}${response.statusText === '' ? '' : ` ${response.statusText}`}`
  if (parseJson(text) !== NOT_JSON) return `${status}: an unexpected answer (${type}, ${text.length} bytes)`
  return `${status}: the answer is ${type}, not JSON: is ${shown(node)} a Shoal node?`
}

/** A node's URL as messages show it: never its password. */
function shown (node: string): string {
  try {
    const url = new URL(node)
    if (url.password !== '') url.password = '***'
    return url.toString().replace(/\/$/, '')
  } catch {
    return node
  }
}

/** Messages from elsewhere (a server, the network) flattened to one line. */
function oneLine (text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat
}
