// Writes to files in pieces of at most 128 KiB, whatever size the bytes come in.
import type { FileHandle } from 'node:fs/promises'

/**
 * Why pieces: on this kind of VM (Linux 6.18, ext4's large folios, free page reporting) the page
 * cache takes a write of 1 MiB as one large folio, and filling large folios from memory the host
 * had taken back cost 2.5-3.0 s of system time per GiB, against 0.6-0.7 s in 128 KiB writes (one
 * file written after 12 s idle, alternated; a warm page cache takes both in ~0.23 s). A decrypted
 * pull's 1 MiB pieces: 3.3 s of system time, 1.5 s in pieces; a node fetching 1 GiB from a peer
 * (1 MiB blocks): 5.0-5.3 CPU s, 3.6-3.9 in pieces (docs/architecture.md, "Storage").
 */
export const FILE_WRITE_PIECE = 128 * 1024

/** All of `bytes` written at the file's position, a piece at a time, each after the last. */
export async function writeInPieces (handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let written = 0
  while (written < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, written, Math.min(FILE_WRITE_PIECE, bytes.length - written))
    written += bytesWritten
  }
}
