/** A failure the CLI reports in one line. */
export class CliError extends Error {}

/** A request to a node; a node that cannot be reached becomes a one-line CLI error. */
export async function requestNode (node: string, path: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(new URL(path, node), init)
  } catch (err) {
    const cause = (err as Error).cause
    throw new CliError(`cannot reach ${node}: ${oneLine(cause instanceof Error ? cause.message : (err as Error).message)}`, { cause: err })
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
  return `${status}: the answer is ${type}, not JSON: is ${node} a Shoal node?`
}

/** Messages from elsewhere (a server, the network) flattened to one line. */
function oneLine (text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim()
  return flat.length > 300 ? `${flat.slice(0, 297)}...` : flat
}
