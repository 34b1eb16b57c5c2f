// A tar archive to a directory and back, streamed (archives hold images of GBs).
import { createReadStream, createWriteStream } from 'node:fs'
import { mkdir, readdir, stat } from 'node:fs/promises'
import { dirname, join, normalize, sep } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { extract, pack } from 'tar-stream'
import { ImageFileError } from './layout-endpoint.ts'

/** Unpacks regular files and directories of `file` under `dir`; links and names that leave `dir` are refused. */
export async function extractTar (file: string, dir: string, signal?: AbortSignal): Promise<void> {
  const entries = extract()
  const reading = pipeline(createReadStream(file), entries, { signal }).catch((err: unknown) => {
    throw new ImageFileError(`${file} is not a tar archive: ${(err as Error).message}`, undefined, { cause: err })
  })
  // Awaited below; marked handled now, as the loop may end first.
  reading.catch(() => {})
  try {
    for await (const entry of entries) {
      const name = normalize(entry.header.name)
      if (name.startsWith('..') || name.startsWith(sep)) throw new ImageFileError(`${file}: the entry ${entry.header.name} is outside the archive`)
      const path = join(dir, name)
      if (entry.header.type === 'directory') {
        await mkdir(path, { recursive: true })
        entry.resume()
      } else if (entry.header.type === 'file' || entry.header.type === 'contiguous-file') {
        await mkdir(dirname(path), { recursive: true })
        await pipeline(entry, createWriteStream(path), { signal })
      } else {
        entry.resume()
      }
    }
  } catch (err) {
    entries.destroy()
    const readError: unknown = await reading.then(() => undefined, (failed: unknown) => failed)
    throw err instanceof ImageFileError || readError === undefined ? err : readError
  }
  await reading
}

/** Packs every file below `dir` into a tar stream written to `file`, sorted by name. */
export async function packDirectory (dir: string, file: string, signal?: AbortSignal): Promise<void> {
  const archive = pack()
  const writing = pipeline(archive, createWriteStream(file), { signal })
  writing.catch(() => {})
  const walk = async (relative: string): Promise<void> => {
    for (const name of (await readdir(join(dir, relative))).sort()) {
      const path = join(relative, name)
      const info = await stat(join(dir, path))
      if (info.isDirectory()) {
        await new Promise<void>((resolve, reject) => archive.entry({ name: `${path}/`, type: 'directory', mode: 0o755, mtime: new Date(0) }, err => { if (err == null) resolve(); else reject(err) }))
        await walk(path)
      } else if (info.isFile()) {
        const sink = archive.entry({ name: path, size: info.size, mode: 0o644, mtime: new Date(0) })
        await pipeline(createReadStream(join(dir, path)), sink, { signal })
      }
    }
  }
  try {
    await walk('')
    archive.finalize()
  } catch (err) {
    archive.destroy(err as Error)
  }
  await writing
}
