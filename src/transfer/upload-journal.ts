// Where each unfinished blob upload of this user's pushes stands, so a push run again after an
// interruption (a dropped link, Ctrl-C) sends only what the registry lacks.
import { randomBytes } from 'node:crypto'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'

/** `$XDG_STATE_HOME/shoal/uploads.json` (else ~/.local/state/...). */
export function defaultJournalPath (): string {
  return join(process.env.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'shoal', 'uploads.json')
}

/** Uploads by `<registry URL>/<repository>@<digest>`: the session's URL. */
export class UploadJournal {
  private readonly path: string
  /** Writes go one after the other: concurrent blob uploads share the file. */
  private writing: Promise<void> = Promise.resolve()

  constructor (path = defaultJournalPath()) {
    this.path = path
  }

  async get (key: string): Promise<string | undefined> {
    return (await this.read())[key]
  }

  async set (key: string, location: string | undefined): Promise<void> {
    this.writing = this.writing.then(async () => {
      const entries = await this.read()
      if (location === undefined) delete entries[key]
      else entries[key] = location
      await mkdir(dirname(this.path), { recursive: true })
      const temporary = `${this.path}.${randomBytes(6).toString('hex')}`
      await writeFile(temporary, JSON.stringify(entries), { mode: 0o600 })
      await rename(temporary, this.path)
    }).catch(() => {
      // A journal that cannot be written costs a resume, not the push.
    })
    await this.writing
  }

  private async read (): Promise<Record<string, string>> {
    try {
      const parsed = JSON.parse(await readFile(this.path, 'utf8')) as unknown
      return typeof parsed === 'object' && parsed !== null ? parsed as Record<string, string> : {}
    } catch {
      return {}
    }
  }
}
