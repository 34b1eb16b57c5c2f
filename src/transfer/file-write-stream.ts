// The write stream every transfer writes a file with (a layout's blob, an archive, an unpacked
// entry): Node's own, with each write handed to the kernel in pieces of at most 128 KiB.
import { close, createWriteStream, open, write, type WriteStream } from 'node:fs'

/**
 * Why pieces: on this kind of VM (Linux 6.18, ext4's large folios, free page reporting) the
 * page cache takes a write of 1 MiB as one large folio, and filling large folios from memory the
 * host had taken back cost 2.5-3.0 s of system time per GiB, against 0.6-0.7 s in 128 KiB writes
 * (one file written after 12 s idle, alternated; a warm page cache takes both in ~0.23 s). A
 * decrypted pull that wrote the decipher's 1 MiB pieces: 3.3 s of system time, 1.5 s in pieces.
 * Small chunks queued behind a write would otherwise go as one large writev
 * (docs/architecture.md, "Encrypted images").
 */
export const FILE_WRITE_PIECE = 128 * 1024

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
