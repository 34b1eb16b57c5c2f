import { setTimeout as sleep } from 'node:timers/promises'
import { untilAborted } from '../until-aborted.ts'

/** One leaf: the largest block Shoal writes, so a single block never waits on a full bucket. */
const DEFAULT_BURST_BYTES = 1024 * 1024

export interface TokenBucketOptions {
  /** The sustained rate. */
  bytesPerSecond: number
  /** What may go out at once after a quiet spell; defaults to 1 MiB. */
  burstBytes?: number
  /** The clock in milliseconds; tests may pass their own. */
  now?: () => number
}

/**
 * A token bucket for bytes. Takers are served first come, first served, so a stream of small
 * takes cannot starve a large one. A take larger than the burst waits for a full bucket and
 * then leaves it in debt, which the following takers pay off: the average rate holds anyway.
 */
export class TokenBucket {
  readonly bytesPerSecond: number
  readonly burstBytes: number
  private readonly now: () => number
  private tokens: number
  private refilledAt: number
  /** Settles once every earlier taker has had its turn. */
  private queue: Promise<void> = Promise.resolve()

  constructor ({ bytesPerSecond, burstBytes = DEFAULT_BURST_BYTES, now = () => performance.now() }: TokenBucketOptions) {
    if (!(bytesPerSecond > 0)) throw new RangeError(`bytesPerSecond must be positive, got ${bytesPerSecond}`)
    if (!(burstBytes > 0)) throw new RangeError(`burstBytes must be positive, got ${burstBytes}`)
    this.bytesPerSecond = bytesPerSecond
    this.burstBytes = burstBytes
    this.now = now
    this.tokens = burstBytes
    this.refilledAt = now()
  }

  /** Waits until `n` bytes may be sent, then takes them. Rejects with the signal's reason if aborted. */
  async take (n: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    if (n <= 0) return
    const earlier = this.queue
    let done!: () => void
    const mine = new Promise<void>(resolve => { done = resolve })
    // The next taker waits for this one and for everyone before it, even if this one gives up early.
    this.queue = earlier.then(async () => await mine)
    try {
      await untilAborted(earlier, signal)
      const needed = Math.min(n, this.burstBytes)
      this.refill()
      while (this.tokens < needed) {
        await sleep(Math.ceil((needed - this.tokens) / this.bytesPerSecond * 1000), undefined, { signal })
        this.refill()
      }
      this.tokens -= n
    } finally {
      done()
    }
  }

  private refill (): void {
    const now = this.now()
    this.tokens = Math.min(this.burstBytes, this.tokens + (now - this.refilledAt) / 1000 * this.bytesPerSecond)
    this.refilledAt = now
  }
}
