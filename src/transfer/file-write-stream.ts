// The write stream every transfer writes a file with (a layout's blob, an archive, an unpacked
// entry): Node's own, with each write handed to the kernel in pieces of at most 128 KiB (why:
// content/file-pieces.ts).
import { close, createWriteStream, open, write, type WriteStream } from 'node:fs'
import { FILE_WRITE_PIECE } from '../content/file-pieces.ts'

type WriteDone = (error: NodeJS.ErrnoException | null, written: number) => void

/** Writes `bytes` at the file's position, a piece at a time, each after the last. */
function writePieces (fd: number, bytes: Uint8Array, done: WriteDone, written = 0): void {
  if (written === bytes.length) {
    done(null, written)
    return
  }
  const length = Math.min(FILE_WRITE_PIECE, bytes.length - written)
  write(fd, bytes, written, length, null, (error, wrote) => {
    if (error != null) done(error, written)
    else writePieces(fd, bytes, done, written + wrote)
  })
}

/** What WriteStream calls its file system through: Node's own, but writes in pieces. */
const piecewise = {
  open,
  close,
  write (fd: number, bytes: Uint8Array, offset: number, length: number, _position: null, done: WriteDone): void {
    writePieces(fd, bytes.subarray(offset, offset + length), done)
  },
  // Chunks queued behind a write go one by one: one writev would make them one large write again.
  writev (fd: number, chunks: Uint8Array[], _position: null, done: WriteDone): void {
    let total = 0
    const next = (index: number): void => {
      const chunk = chunks[index]
      if (chunk === undefined) {
        done(null, total)
        return
      }
      writePieces(fd, chunk, (error, wrote) => {
        total += wrote
        if (error != null) done(error, total)
        else next(index + 1)
      })
    }
    next(0)
  }
}

/** A new file (or one truncated) for a transfer to write. The stream writes at the file's position (no `start`). */
export function createFileWriteStream (path: string): WriteStream {
  return createWriteStream(path, { fs: piecewise })
}
