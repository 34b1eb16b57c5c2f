// How a transfer shows its progress: bars on a terminal (one a blob, one in total: bytes, rate,
// time left), JSON lines for scripts, a line a blob when the output is not a terminal, or nothing.
import { MultiBar, Presets, type SingleBar } from 'cli-progress'
import type { Descriptor } from '../oci/manifest.ts'
import { formatBytes } from '../web/format.ts'
import type { CopyProgress } from './image-copy.ts'

export type ProgressMode = 'bars' | 'lines' | 'json' | 'quiet'

export interface TransferReporter extends CopyProgress {
  /** The copy ended (whatever the outcome): bars stop before the last line. */
  stop(): void
}

/** JSON lines are throttled to one progress line per this many ms. */
const JSON_EVERY_MS = 500

export function progressMode (options: { quiet?: boolean, json?: boolean }, stream: NodeJS.WriteStream): ProgressMode {
  if (options.quiet === true) return 'quiet'
  if (options.json === true) return 'json'
  return stream.isTTY ? 'bars' : 'lines'
}

export function createReporter (mode: ProgressMode, stream: NodeJS.WriteStream): TransferReporter {
  switch (mode) {
    case 'bars': return new BarReporter(stream)
    case 'json': return new JsonReporter(stream)
    case 'lines': return new LineReporter(stream)
    default: return { planned () {}, blobStarted () {}, blobProgress () {}, blobDone () {}, stop () {} }
  }
}

function shortDigest (digest: string): string {
  return digest.slice(digest.indexOf(':') + 1, digest.indexOf(':') + 13)
}

/** Bytes a second since `started`, as text. */
function rateOf (bytes: number, started: number): string {
  const seconds = (performance.now() - started) / 1000
  return seconds <= 0 ? '-' : `${formatBytes(bytes / seconds)}/s`
}

class BarReporter implements TransferReporter {
  private readonly bars: MultiBar
  private total: SingleBar | undefined
  private readonly perBlob = new Map<string, { bar: SingleBar, sent: number, started: number }>()
  private sent = 0
  private readonly started = performance.now()

  constructor (stream: NodeJS.WriteStream) {
    this.bars = new MultiBar({
      stream,
      hideCursor: true,
      clearOnComplete: false,
      barsize: 24,
      format: '{name} |{bar}| {percentage}% {done}/{size} {rate} ETA {eta_formatted}',
      autopadding: true,
      etaBuffer: 50
    }, Presets.shades_classic)
  }

  planned (blobs: Descriptor[]): void {
    const bytes = blobs.reduce((sum, blob) => sum + blob.size, 0)
    this.total = this.bars.create(bytes, 0, { name: 'total       ', done: formatBytes(0), size: formatBytes(bytes), rate: '' })
  }

  blobStarted (descriptor: Descriptor): void {
    const bar = this.bars.create(descriptor.size, 0, { name: shortDigest(descriptor.digest), done: formatBytes(0), size: formatBytes(descriptor.size), rate: '' })
    this.perBlob.set(descriptor.digest, { bar, sent: 0, started: performance.now() })
  }

  blobProgress (descriptor: Descriptor, bytes: number): void {
    const blob = this.perBlob.get(descriptor.digest)
    if (blob !== undefined) {
      blob.sent += bytes
      blob.bar.update(blob.sent, { done: formatBytes(blob.sent), rate: rateOf(blob.sent, blob.started) })
    }
    this.sent += bytes
    this.total?.update(this.sent, { done: formatBytes(this.sent), rate: rateOf(this.sent, this.started) })
  }

  blobDone (descriptor: Descriptor, skipped: boolean): void {
    const blob = this.perBlob.get(descriptor.digest)
    if (blob === undefined) return
    if (skipped) {
      // Already there: it counts as done.
      this.sent += descriptor.size
      this.total?.update(this.sent, { done: formatBytes(this.sent) })
      blob.bar.update(descriptor.size, { done: 'exists', rate: '' })
    } else {
      blob.bar.update(descriptor.size, { done: formatBytes(descriptor.size) })
    }
  }

  stop (): void {
    this.bars.stop()
  }
}

class JsonReporter implements TransferReporter {
  private readonly stream: NodeJS.WriteStream
  private total = 0
  private sent = 0
  private lastLine = 0

  constructor (stream: NodeJS.WriteStream) {
    this.stream = stream
  }

  private write (line: Record<string, unknown>): void {
    this.stream.write(`${JSON.stringify(line)}\n`)
  }

  planned (blobs: Descriptor[]): void {
    this.total = blobs.reduce((sum, blob) => sum + blob.size, 0)
    this.write({ event: 'plan', blobs: blobs.length, bytes: this.total })
  }

  blobStarted (descriptor: Descriptor): void {
    this.write({ event: 'blob', digest: descriptor.digest, size: descriptor.size, state: 'started' })
  }

  blobProgress (_descriptor: Descriptor, bytes: number): void {
    this.sent += bytes
    const now = performance.now()
    if (now - this.lastLine < JSON_EVERY_MS) return
    this.lastLine = now
    this.write({ event: 'progress', bytes: this.sent, total: this.total })
  }

  blobDone (descriptor: Descriptor, skipped: boolean): void {
    if (skipped) this.sent += descriptor.size
    this.write({ event: 'blob', digest: descriptor.digest, size: descriptor.size, state: skipped ? 'exists' : 'done' })
  }

  stop (): void {}
}

class LineReporter implements TransferReporter {
  private readonly stream: NodeJS.WriteStream

  constructor (stream: NodeJS.WriteStream) {
    this.stream = stream
  }

  planned (blobs: Descriptor[]): void {
    this.stream.write(`${blobs.length} blobs, ${formatBytes(blobs.reduce((sum, blob) => sum + blob.size, 0))}\n`)
  }

  blobStarted (): void {}
  blobProgress (): void {}
  blobDone (descriptor: Descriptor, skipped: boolean): void {
    this.stream.write(`${skipped ? 'exists' : 'copied'} ${descriptor.digest} (${formatBytes(descriptor.size)})\n`)
  }

  stop (): void {}
}
