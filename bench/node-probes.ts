// What the fleet benchmarks read from the machine and from running nodes: CPU jiffies from /proc,
// Prometheus samples from /metrics, and the waits for a pushed tag to reach every node.
import { execFileSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'

export const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100

/** The fields of /proc/<pid>/stat after the command name (index 11 = utime, 12 = stime, 13/14 = children's). */
export async function processStat (pid: string): Promise<number[]> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8')
  return text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number)
}

/** Jiffies of all cores (busy: not idle, not iowait; and in all), and of this process's finished children. */
export async function machineJiffies (): Promise<{ busy: number, total: number, children: number }> {
  const fields = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number)
  const total = fields.reduce((sum, value) => sum + value, 0)
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0)
  const self = await processStat('self')
  return { busy: total - idle, total, children: (self[13] ?? 0) + (self[14] ?? 0) }
}

export interface Sample {
  name: string
  labels: Record<string, string>
  value: number
}

/** Every sample of a node's /metrics; `name` is for the error message. */
export async function scrapeMetrics (url: string, name: string): Promise<Sample[]> {
  const response = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(10_000) })
  if (!response.ok) throw new Error(`${name}: GET /metrics answered ${response.status}`)
  const samples: Sample[] = []
  for (const line of (await response.text()).split('\n')) {
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (match === null) continue
    const labels: Record<string, string> = {}
    for (const label of (match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[label[1]!] = label[2]!
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

export function subtractMetrics (after: Sample[], before: Sample[]): Sample[] {
  const key = (s: Sample): string => `${s.name}${JSON.stringify(s.labels)}`
  const earlier = new Map(before.map((s) => [key(s), s.value]))
  return after.map((s) => ({ ...s, value: s.value - (earlier.get(key(s)) ?? 0) }))
}

/** How long a fleet gets to start, or to see a pushed tag everywhere. */
export const READY_TIMEOUT_MS = 120_000

/** Polls `probe` every 200 ms until it returns something other than undefined. */
export async function eventually<T> (what: string, probe: () => Promise<T | undefined>, timeoutMs = READY_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let lastProblem = 'not yet'
  while (Date.now() < deadline) {
    try {
      const value = await probe()
      if (value !== undefined) return value
    } catch (error) {
      lastProblem = (error as Error).message
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new Error(`timed out after ${timeoutMs / 1000} s waiting for ${what} (${lastProblem})`)
}

/** Until every node lists `repository:tag` in its tags/list. */
export async function waitForTag (urls: string[], repository: string, tag: string): Promise<void> {
  await eventually(`every node to list ${repository}:${tag}`, async () => {
    const lists = await Promise.all(urls.map(async (url) => {
      const response = await fetch(`${url}/v2/${repository}/tags/list`, { signal: AbortSignal.timeout(5000) })
      if (!response.ok) {
        await response.body?.cancel()
        return []
      }
      return (await response.json() as { tags?: string[] | null }).tags ?? []
    }))
    return lists.every((tags) => tags.includes(tag)) ? true : undefined
  })
}

/**
 * Until every node's inventory lists the seeder as holding the image: a pull right after a push
 * can otherwise find no holder (the inventory is rewritten shortly after a push).
 */
export async function waitForHolder (nodes: Array<{ id?: string, url: string }>, seederName: string, repository: string, tag: string): Promise<void> {
  const seeder = nodes[0]!
  const head = await fetch(`${seeder.url}/v2/${repository}/manifests/${tag}`, {
    method: 'HEAD',
    headers: { accept: 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json' },
    signal: AbortSignal.timeout(5000)
  })
  const imageCid = head.headers.get('shoal-image-cid')
  if (!head.ok || imageCid === null) throw new Error(`HEAD ${repository}:${tag} on ${seederName} answered ${head.status} without Shoal-Image-CID`)
  await eventually(`every node to list ${seederName} as holder of ${repository}:${tag} (${imageCid})`, async () => {
    const lists = await Promise.all(nodes.map(async (node) => {
      const response = await fetch(`${node.url}/api/v1/nodes`, { signal: AbortSignal.timeout(5000) })
      if (!response.ok) throw new Error(`GET ${node.url}/api/v1/nodes answered ${response.status}`)
      return (await response.json() as { nodes: Array<{ id: string, images: string[] }> }).nodes
    }))
    return lists.every((records) => records.some((record) => record.id === seeder.id && record.images.includes(imageCid))) ? true : undefined
  })
}
