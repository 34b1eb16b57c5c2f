/** A failure the CLI reports in one line. */
export class CliError extends Error {}

/** A request to a node; a node that cannot be reached becomes a one-line CLI error. */
export async function requestNode (node: string, path: string, init: RequestInit = {}): Promise<Response> {
  try {
    return await fetch(new URL(path, node), init)
  } catch (err) {
    const cause = (err as Error).cause
    throw new CliError(`cannot reach ${node}: ${cause instanceof Error ? cause.message : (err as Error).message}`, { cause: err })
  }
}

/** GETs JSON from a node's management API; failures become one-line CLI errors. */
export async function getJson<T> (node: string, path: string, signal?: AbortSignal): Promise<T> {
  const response = await requestNode(node, path, { signal })
  const text = await response.text()
  if (!response.ok) throw new CliError(`${path}: ${response.status} ${text.slice(0, 200)}`)
  try {
    return JSON.parse(text) as T
  } catch {
    throw new CliError(`${path}: the answer is not JSON`)
  }
}
