import * as raw from 'multiformats/codecs/raw'
import { readFileChunks, type BlockSource } from './dag-reader.ts'
import type { UnixfsFile } from './unixfs-path.ts'

/**
 * Bytes [start, end] (inclusive) of a UnixFS file as fresh buffers, one leaf at a time. The count
 * is checked against the range: a DAG whose block sizes lie must not yield a short body behind a
 * Content-Length, nor a tar entry that shifts every header after it.
 */
export async function * fileBytes (source: BlockSource, file: UnixfsFile, start: number, end: number, signal?: AbortSignal): AsyncGenerator<Buffer> {
  if (end < start) return
  if (file.cid.code === raw.code) {
    // A raw block is the whole file, read already.
    yield Buffer.from(file.block.buffer, file.block.byteOffset + start, end - start + 1)
    return
  }
  let sent = 0
  for await (const chunk of readFileChunks(source, file.cid, start, end, signal)) {
    const bytes = Buffer.from(chunk.bytes)
    chunk.release()
    sent += bytes.length
    yield bytes
  }
  if (sent !== end - start + 1) throw new Error(`${file.cid.toString()}: ${sent} bytes where its node promised ${end - start + 1}`)
}
