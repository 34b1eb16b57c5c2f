import type { CID } from 'multiformats/cid'
import pLimit from 'p-limit'

export interface DagFetchProgress {
  /** Blocks of the DAG known to be held locally now, fetched or already there. */
  blocks: number
  /** Of those, blocks fetched from providers, and their bytes. */
  fetchedBlocks: number
  fetchedBytes: number
}

/** One block of the DAG brought in (or found held): its links, and its bytes when it was fetched. */
export type VisitBlock = (cid: CID, signal: AbortSignal) => Promise<{ links: CID[], fetchedBytes?: number }>

/**
 * Visits every block of a DAG once, at most `concurrency` at a time (p-limit), following each
 * block's links as it arrives. The first failure, of a visit or of `onProgress`, stops the
 * other visits and is what the walk rejects with, once every visit has settled.
 */
export async function fetchDagConcurrently (root: CID, visit: VisitBlock, options: { concurrency: number, signal: AbortSignal, onProgress?: (progress: DagFetchProgress) => void }): Promise<DagFetchProgress> {
  const { signal, onProgress } = options
  signal.throwIfAborted()
  const limit = pLimit(options.concurrency)
  const failure = new AbortController()
  const inner = AbortSignal.any([signal, failure.signal])
  const progress: DagFetchProgress = { blocks: 0, fetchedBlocks: 0, fetchedBytes: 0 }
  const seen = new Set<string>([root.toString()])
  const visits: Array<Promise<void>> = []
  const schedule = (cid: CID): void => {
    visits.push(limit(async () => {
      inner.throwIfAborted()
      const { links, fetchedBytes } = await visit(cid, inner)
      progress.blocks++
      if (fetchedBytes !== undefined) {
        progress.fetchedBlocks++
        progress.fetchedBytes += fetchedBytes
      }
      if (onProgress !== undefined && !inner.aborted) onProgress({ ...progress })
      for (const link of links) {
        const key = link.toString()
        if (seen.has(key)) continue
        seen.add(key)
        schedule(link)
      }
    }).catch((err: unknown) => {
      if (!failure.signal.aborted) failure.abort(err)
    }))
  }
  schedule(root)
  // A visit schedules its links before it settles, so the list is complete once all are awaited.
  for (let i = 0; i < visits.length; i++) await visits[i]
  if (failure.signal.aborted) throw signal.aborted ? signal.reason : failure.signal.reason
  return progress
}
