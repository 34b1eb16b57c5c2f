// The gateway's answers that read UnixFS (path-gateway spec): `/ipfs/<cid>/<path>` resolved
// through directories, then the raw block or a CAR at its end, a file's bytes (Range too), or a
// tree as a tar (IPIP-288). The bare `/ipfs/<cid>` raw block and CAR stay in gateway-routes.ts:
// that is how nodes move blocks between each other.
import { Readable } from 'node:stream'
import { CarWriter } from '@ipld/car'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { CID } from 'multiformats/cid'
import { walkDag, type BlockSource } from '../content/dag-reader.ts'
import { fileBytes } from '../content/unixfs-file.ts'
import { readUnixfsNode, resolveUnixfsPath, type ResolvedPath } from '../content/unixfs-path.ts'
import { assertSafeTarName, unixfsTar } from '../content/unixfs-tar.ts'
import { parseRange } from '../registry/blob-service.ts'
import { CAR, FormatUnacceptableError, RAW, TAR } from './gateway-errors.ts'

export type UnixfsFormat = 'raw' | 'car' | 'tar' | 'file'

/** Waits until `bytes` more may go out (the upload cap) and counts them; rejects once the client left. */
export type Pace = (bytes: number) => Promise<void>

export interface UnixfsRequest {
  root: CID
  /** The path below the root, decoded, one name per segment. */
  segments: string[]
  format: UnixfsFormat
  blocks: BlockSource
  pace: Pace
  /** Aborts when the client leaves: every read and fetch stops. */
  signal: AbortSignal
}

export async function serveUnixfs (req: FastifyRequest, reply: FastifyReply, request: UnixfsRequest): Promise<FastifyReply> {
  const { root, segments, format, blocks, signal } = request
  const resolved = await resolveUnixfsPath(blocks, root, segments, signal)
  const below = segments.map(segment => `/${encodeURIComponent(segment)}`).join('')
  const path = `/ipfs/${root.toString()}${below}`
  reply.header('x-content-type-options', 'nosniff').header('cache-control', 'public, max-age=29030400, immutable').header('vary', 'Accept')
    .header('x-ipfs-path', path).header('x-ipfs-roots', [...resolved.traversed.map(node => node.cid), resolved.cid].join(','))
  switch (format) {
    case 'raw': return await sendBlock(req, reply, resolved.cid, request)
    case 'car': return await sendCar(req, reply, resolved, `${root.toString()}${below}`, request)
    case 'tar': {
      const node = await readUnixfsNode(blocks, resolved.cid, path, signal)
      // The archive's top entry is named as the path's last segment (the CID for none).
      const name = segments.at(-1) ?? root.toString()
      assertSafeTarName(name, path)
      reply.header('content-type', TAR).header('etag', `W/"${root.toString()}${below}.x-tar"`)
        .header('content-disposition', `attachment; filename="${resolved.cid.toString()}.tar"`)
      if (req.method === 'HEAD') return await reply.send()
      return await sendStream(reply, unixfsTar(blocks, node, name, path, signal), request.pace)
    }
    case 'file': {
      const node = await readUnixfsNode(blocks, resolved.cid, path, signal)
      if (node.kind === 'directory') throw new FormatUnacceptableError(`${path} is a directory: ask for ?format=tar (its files), ?format=car or ?format=raw`)
      const range = parseRange(req.headers.range, node.size)
      reply.header('content-type', 'application/octet-stream').header('accept-ranges', 'bytes').header('etag', `"${node.cid.toString()}"`)
        .header('content-length', range === undefined ? node.size : range.end - range.start + 1)
      if (range !== undefined) reply.code(206).header('content-range', `bytes ${range.start}-${range.end}/${node.size}`)
      if (req.method === 'HEAD') return await reply.send()
      return await sendStream(reply, fileBytes(blocks, node, range?.start ?? 0, range?.end ?? node.size - 1, signal), request.pace)
    }
  }
}

/** The block at the end of the path (the trustless spec has raw blocks at bare CIDs only; the path gateway resolves first). */
async function sendBlock (req: FastifyRequest, reply: FastifyReply, cid: CID, { blocks, pace, signal }: UnixfsRequest): Promise<FastifyReply> {
  const bytes = await blocks.getBytes(cid, { signal })
  reply.header('content-type', RAW).header('content-length', bytes.length).header('etag', `"${cid.toString()}.raw"`)
    .header('content-disposition', `attachment; filename="${cid.toString()}.bin"`)
  if (req.method === 'HEAD') return await reply.send()
  try {
    await pace(bytes.length)
  } catch (err) {
    if (!signal.aborted) throw err
    // The client left while waiting for its turn: there is nobody to answer.
    return reply.hijack()
  }
  return await reply.send(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
}

/**
 * The blocks that prove the path (the root and each directory walked through), then the whole DAG
 * at its end, depth first, each block once. The CAR's root is the path's end, as Kubo's is.
 */
async function sendCar (req: FastifyRequest, reply: FastifyReply, resolved: ResolvedPath, tag: string, { blocks, pace, signal }: UnixfsRequest): Promise<FastifyReply> {
  reply.header('content-type', `${CAR}; version=1; order=dfs; dups=n`).header('etag', `"${tag}.car"`)
    .header('content-disposition', `attachment; filename="${resolved.cid.toString()}.car"`)
  if (req.method === 'HEAD') return await reply.send()
  const { writer, out } = CarWriter.create([resolved.cid])
  const body = Readable.from(out)
  void (async () => {
    try {
      for (const block of resolved.traversed) {
        await pace(block.bytes.length)
        await writer.put(block)
      }
      for await (const block of walkDag(blocks, resolved.cid, signal)) {
        await pace(block.bytes.length)
        await writer.put(block)
      }
      await writer.close()
    } catch (err) {
      // The 200 is out: the response is cut, so that a short CAR never looks whole.
      if (!signal.aborted) req.log.error({ err, path: tag }, 'CAR walk failed mid-response')
      body.destroy(err as Error)
    }
  })()
  return await reply.send(body)
}

/**
 * Streams `chunks`, paced. The first is read before the status goes out: content that cannot be
 * read at all (its first block missing, no peer serving it) gets an error status, not a cut 200.
 * Later failures cut the response; the client leaving ends the generator (and, through the
 * signal its reads take, the reads in flight).
 */
async function sendStream (reply: FastifyReply, chunks: AsyncGenerator<Buffer>, pace: Pace): Promise<FastifyReply> {
  const first = await chunks.next()
  async function * paced (): AsyncGenerator<Buffer> {
    try {
      for (let next = first; next.done !== true; next = await chunks.next()) {
        await pace(next.value.length)
        yield next.value
      }
    } finally {
      await chunks.return(undefined)
    }
  }
  // Not object mode: one chunk (a leaf) is read ahead of the socket, not sixteen.
  return await reply.send(Readable.from(paced(), { objectMode: false }))
}
