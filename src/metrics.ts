import type { FastifyReply, FastifyRequest } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

export interface StoreStats {
  storedBlobs(): Promise<{ blobs: number, bytes: number }>
  openUploads(): Promise<number>
}

/** The node's Prometheus metrics, on a registry of its own (several nodes can share a process). */
export class Metrics {
  readonly registry = new Registry()
  readonly requests: Counter<'route' | 'method' | 'status'>
  readonly requestSeconds: Histogram<'route' | 'method' | 'status'>
  readonly bytesIn: Counter
  readonly bytesOut: Counter
  /** Blocks and their bytes fetched from other nodes, and blocks that did not match their CID. */
  readonly meshBlocksFetched: Counter<'provider'>
  readonly meshBytesFetched: Counter<'provider'>
  readonly meshBadBlocks: Counter<'provider'>
  /** Pull-through mirrors: manifest reads of mirrored repositories by outcome, bytes fetched from each upstream, its 429s. */
  readonly mirrorRequests: Counter<'registry' | 'outcome'>
  readonly mirrorUpstreamBytes: Counter<'registry'>
  readonly mirrorMemberBytes: Counter<'registry'>
  readonly mirrorRateLimited: Counter<'registry'>
  /** Garbage collections by outcome, and the blocks and bytes they freed. */
  readonly gcRuns: Counter<'outcome'>
  readonly gcBlocksRemoved: Counter
  readonly gcBytesRemoved: Counter
  /** Blocks on this node's disk found not to match their CID (moved to the quarantine). */
  readonly corruptBlocks: Counter
  /** Blocks the scrub or fsck read and checked against their CID. */
  readonly blocksVerified: Counter

  constructor (stats: StoreStats) {
    collectDefaultMetrics({ register: this.registry, prefix: 'shoal_' })
    this.requests = new Counter({
      name: 'shoal_http_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [this.registry]
    })
    // From a manifest read on loopback (a millisecond) to a blob push over a slow link (minutes).
    this.requestSeconds = new Histogram({
      name: 'shoal_http_request_duration_seconds',
      help: 'Time from a request\'s arrival to the end of its answer, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.005, 0.025, 0.1, 0.5, 2.5, 10, 60, 300],
      registers: [this.registry]
    })
    this.bytesIn = new Counter({ name: 'shoal_blob_bytes_received_total', help: 'Blob bytes received from clients', registers: [this.registry] })
    this.bytesOut = new Counter({ name: 'shoal_blob_bytes_sent_total', help: 'Blob and block bytes sent to clients', registers: [this.registry] })
    const registers = [this.registry]
    this.meshBlocksFetched = new Counter({ name: 'shoal_mesh_blocks_fetched_total', help: 'Blocks fetched from other nodes and verified, by provider', labelNames: ['provider'], registers })
    this.meshBytesFetched = new Counter({ name: 'shoal_mesh_bytes_fetched_total', help: 'Bytes of verified blocks fetched from other nodes, by provider', labelNames: ['provider'], registers })
    this.mirrorRequests = new Counter({ name: 'shoal_mirror_requests_total', help: 'Manifest reads of mirrored repositories, by registry and outcome: hit (the fleet had it), miss (fetched from the upstream), stale (served while the upstream was unavailable)', labelNames: ['registry', 'outcome'], registers })
    this.mirrorUpstreamBytes = new Counter({ name: 'shoal_mirror_upstream_bytes_total', help: 'Blob bytes fetched from each upstream registry', labelNames: ['registry'], registers })
    this.mirrorMemberBytes = new Counter({ name: 'shoal_mirror_member_bytes_total', help: 'Blob bytes of mirrored images fetched from the fleet member that fetched them from their upstream, by registry', labelNames: ['registry'], registers })
    this.mirrorRateLimited = new Counter({ name: 'shoal_mirror_rate_limited_total', help: 'Requests an upstream registry answered 429 (each waited out)', labelNames: ['registry'], registers })
    this.meshBadBlocks = new Counter({ name: 'shoal_mesh_bad_blocks_total', help: 'Blocks from other nodes that did not match their CID, by provider', labelNames: ['provider'], registers })
    this.gcRuns = new Counter({ name: 'shoal_gc_runs_total', help: 'Garbage collections, by outcome (completed, failed)', labelNames: ['outcome'], registers })
    this.gcBlocksRemoved = new Counter({ name: 'shoal_gc_blocks_removed_total', help: 'Unreferenced blocks removed by garbage collection', registers })
    this.gcBytesRemoved = new Counter({ name: 'shoal_gc_bytes_removed_total', help: 'Bytes of unreferenced blocks removed by garbage collection', registers })
    this.corruptBlocks = new Counter({ name: 'shoal_blocks_corrupt_total', help: 'Blocks on this node\'s disk that did not match their CID when read, scrubbed or checked (moved to the quarantine)', registers })
    this.blocksVerified = new Counter({ name: 'shoal_scrub_blocks_verified_total', help: 'Blocks the periodic scrub read and checked against their CID', registers })
    new Gauge({ name: 'shoal_blobs_stored', help: 'Blobs stored', registers, async collect () { this.set((await stats.storedBlobs()).blobs) } })
    new Gauge({ name: 'shoal_blob_bytes_stored', help: 'Bytes of stored blobs', registers, async collect () { this.set((await stats.storedBlobs()).bytes) } })
    new Gauge({ name: 'shoal_upload_sessions_open', help: 'Upload sessions not yet completed or cancelled', registers, async collect () { this.set(await stats.openUploads()) } })
  }
}

/**
 * What every answered request leaves behind, in one place: its count and duration in the metrics,
 * and one access-log line at info (method, url, status, duration).
 */
export function recordRequest (metrics: Metrics, route: string, req: FastifyRequest, reply: FastifyReply): void {
  const labels = { route, method: req.method, status: reply.statusCode }
  const durationMs = reply.elapsedTime
  metrics.requests.inc(labels)
  metrics.requestSeconds.observe(labels, durationMs / 1000)
  req.log.info({ method: req.method, url: req.url, status: reply.statusCode, durationMs: Math.round(durationMs * 10) / 10 }, 'request')
}
