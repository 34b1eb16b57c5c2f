import { setTimeout as sleep } from 'node:timers/promises'

/**
 * When to try again something that failed but may succeed later (a busy peer, a fleet that has
 * not converged yet, an image no node serves right now): how many tries, and how long to wait
 * before each retry. One shape for the block fetcher, the holder lookup and the reconciler.
 */
export interface RetryPolicy {
  /** Tries in all, the first included; Infinity for no limit. */
  tries: number
  /** The wait before the first retry. */
  delayMs: number
  /** Each wait is this many times the one before; 1 (the default) keeps them equal. */
  factor?: number
  /** No wait is longer than this. */
  maxDelayMs?: number
}

/** The wait before retry number `retry` (1 is the first retry, after the first try failed). */
export function retryDelay (policy: RetryPolicy, retry: number): number {
  return Math.min(policy.maxDelayMs ?? Number.POSITIVE_INFINITY, policy.delayMs * (policy.factor ?? 1) ** Math.max(0, retry - 1))
}

/** Whether `tried` failed tries leave room for another. */
export function mayRetry (policy: RetryPolicy, tried: number): boolean {
  return tried < policy.tries
}

/** Waits before retry number `retry`; rejects with the signal's reason if it aborts. */
export async function waitToRetry (policy: RetryPolicy, retry: number, signal?: AbortSignal): Promise<void> {
  await sleep(retryDelay(policy, retry), undefined, { signal })
}
