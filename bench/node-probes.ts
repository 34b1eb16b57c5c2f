// What the fleet benchmarks read from the machine and from running nodes: CPU jiffies and memory
// from /proc, TCP bytes per socket from `ss`, Prometheus samples from /metrics, and the waits for
// a pushed tag to reach every node.
import { execFile, execFileSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

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
      return (await response.json() as { nodes: Array<{ id: string, images: string[], standing?: string, heartbeatAt?: string }> }).nodes
    }))
    const lacking = nodes.flatMap((node, i) => {
      const record = lists[i]!.find((candidate) => candidate.id === seeder.id)
      if (record?.images.includes(imageCid) === true) return []
      // What this node knows of the seeder, to tell a presence that never came from one that is stale.
      return [`${node.url}: ${record === undefined ? 'no record' : `${record.images.length} images, ${record.standing ?? '?'}, heard ${record.heartbeatAt ?? 'never'}`}`]
    })
    if (lacking.length > 0) throw new Error(`${lacking.length} lack it: ${lacking.slice(0, 5).join('; ')}`)
    return true
  })
}

/** Resident set now (VmRSS) and its peak so far (VmHWM) of a live process, in bytes. */
export async function processMemory (pid: number): Promise<{ rss: number, peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB$`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024
  return { rss: kib('VmRSS'), peak: kib('VmHWM') }
}

/** CPU jiffies (user + system) a live process has used so far. */
export async function processCpuTicks (pid: number): Promise<number> {
  const stat = await processStat(String(pid))
  return (stat[11] ?? 0) + (stat[12] ?? 0)
}

/**
 * Bytes each process sent and received over TCP connections that have one end on one of `ports`
 * (libp2p's listen ports, to leave HTTP out), read from outside with `ss -tinpH` (the kernel's
 * per-socket tcp_info: bytes_sent, bytes_received). A socket is known only while it is open, so
 * sample often enough: each sample remembers every socket's last count, a socket first seen after
 * the start counts from zero, and one that closes keeps its last count (what it carried between
 * the last sample and its close is missed; `closed` says how many closed).
 */
export class SocketBytes {
  private readonly ports: Set<number>
  private start = new Map<string, SocketCount>()
  private last = new Map<string, SocketCount>()
  /** What sockets whose four-tuple was reused carried before. */
  private retired: SocketCount[] = []

  constructor (ports: Iterable<number>) {
    this.ports = new Set(ports)
  }

  /** Starts counting from the sockets open now. */
  async begin (): Promise<void> {
    this.start = await this.read()
    this.last = new Map(this.start)
    this.retired = []
  }

  async sample (): Promise<void> {
    this.record(await this.read())
  }

  /** Bytes since begin() by pid, and how many counted sockets closed meanwhile. */
  async totals (): Promise<{ byPid: Map<number, { sent: number, received: number, sockets: number }>, closed: number }> {
    const open = await this.read()
    this.record(open)
    const byPid = new Map<number, { sent: number, received: number, sockets: number }>()
    for (const count of this.retired) {
      const total = byPid.get(count.pid) ?? { sent: 0, received: 0, sockets: 0 }
      total.sent += count.sent
      total.received += count.received
      total.sockets++
      byPid.set(count.pid, total)
    }
    for (const [key, count] of this.last) {
      const before = this.start.get(key)
      const total = byPid.get(count.pid) ?? { sent: 0, received: 0, sockets: 0 }
      total.sent += count.sent - (before?.sent ?? 0)
      total.received += count.received - (before?.received ?? 0)
      total.sockets++
      byPid.set(count.pid, total)
    }
    return { byPid, closed: this.retired.length + [...this.last.keys()].filter((key) => !open.has(key)).length }
  }

  private record (open: Map<string, SocketCount>): void {
    for (const [key, count] of open) {
      const last = this.last.get(key)
      // The same four-tuple with smaller counts (or another owner) is a new connection on a reused port.
      if (last !== undefined && (count.pid !== last.pid || count.sent < last.sent || count.received < last.received)) {
        const before = this.start.get(key)
        this.retired.push({ pid: last.pid, sent: last.sent - (before?.sent ?? 0), received: last.received - (before?.received ?? 0) })
        this.start.delete(key)
      }
      this.last.set(key, count)
    }
  }

  private async read (): Promise<Map<string, SocketCount>> {
    const { stdout } = await execFileAsync('ss', ['-tinpH'], { maxBuffer: 64 * 1024 * 1024 })
    const sockets = new Map<string, SocketCount>()
    // Each socket is a line of addresses and users:((…,pid=N,…)), then an indented line of tcp_info.
    const lines = stdout.split('\n')
    for (let i = 0; i < lines.length - 1; i++) {
      const head = /^\S+\s+\d+\s+\d+\s+(\S+):(\d+)\s+(\S+):(\d+)\s+users:\(\("[^"]*",pid=(\d+)/.exec(lines[i]!)
      if (head === null) continue
      const [, localHost, localPort, remoteHost, remotePort, pid] = head
      if (!this.ports.has(Number(localPort)) && !this.ports.has(Number(remotePort))) continue
      const info = lines[i + 1]!
      sockets.set(`${localHost}:${localPort}-${remoteHost}:${remotePort}`, {
        pid: Number(pid),
        sent: Number(/bytes_sent:(\d+)/.exec(info)?.[1] ?? 0),
        received: Number(/bytes_received:(\d+)/.exec(info)?.[1] ?? 0)
      })
    }
    return sockets
  }
}

interface SocketCount {
  pid: number
  sent: number
  received: number
}

/**
 * Milliseconds from `since` until each of `urls` lists `repository:tag` in its tags/list, polled
 * cheaply: one request per node in flight, the next `intervalMs` after the answer, none once seen.
 */
export async function tagVisibleAfter (urls: string[], repository: string, tag: string, since: number, intervalMs: number, timeoutMs: number): Promise<number[]> {
  const deadline = since + timeoutMs
  return await Promise.all(urls.map(async (url) => {
    while (performance.now() < deadline) {
      try {
        const response = await fetch(`${url}/v2/${repository}/tags/list`, { signal: AbortSignal.timeout(5000) })
        const at = performance.now()
        if (response.ok && ((await response.json() as { tags?: string[] | null }).tags ?? []).includes(tag)) return at - since
        if (!response.ok) await response.body?.cancel()
      } catch {
        // an answer that timed out or broke: ask again
      }
      await new Promise((resolve) => setTimeout(resolve, intervalMs))
    }
    throw new Error(`${url} did not list ${repository}:${tag} within ${timeoutMs / 1000} s`)
  }))
}
