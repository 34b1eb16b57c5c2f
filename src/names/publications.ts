// What this node has published, one entry per key, in `<data>/ipns/published.json`: which key
// points at what, its sequence, and the last record it signed. Kept so that a restart republishes
// every name and the next publish continues the sequence (a lower one would never be taken).
import { mkdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { writeFileAtomic } from '../content/atomic-file.ts'

export interface Publication {
  /** The key's name on this node (`self` or a named key). */
  key: string
  /** The key's IPNS name (`k51…`). */
  name: string
  /** What the record points at: `/ipfs/<cid>`. */
  value: string
  /** What the publish named (`repo:tag`), for people. */
  image: string
  /** Decimal text: sequences are 64-bit. */
  sequence: string
  lifetimeSeconds: number
  ttlSeconds: number
  publishedAt: string
  /** When the record below was signed (at the publish, then at each republish). */
  signedAt: string
  /** The last record signed, marshalled, base64. */
  record: string
}

export class Publications {
  private readonly file: string
  private entries = new Map<string, Publication>()
  /** Writes in the order they were asked for, one at a time. */
  private writing: Promise<void> = Promise.resolve()

  constructor (file: string) {
    this.file = file
  }

  async load (): Promise<void> {
    let text: string
    try {
      text = await readFile(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw err
    }
    let parsed: { publications?: Publication[] }
    try {
      parsed = JSON.parse(text) as { publications?: Publication[] }
    } catch (err) {
      throw new Error(`cannot read this node's IPNS publications ${this.file}: ${(err as Error).message}`, { cause: err })
    }
    this.entries = new Map((parsed.publications ?? []).map(entry => [entry.key, entry]))
  }

  get (key: string): Publication | undefined {
    return this.entries.get(key)
  }

  /** The publication of the key whose IPNS name is `name`, if this node publishes it. */
  byName (name: string): Publication | undefined {
    for (const entry of this.entries.values()) if (entry.name === name) return entry
    return undefined
  }

  all (): Publication[] {
    return [...this.entries.values()]
  }

  /** Records a publication and waits until it is on disk. */
  async put (entry: Publication): Promise<void> {
    this.entries.set(entry.key, entry)
    const snapshot = JSON.stringify({ publications: this.all() }, null, 2)
    const write = this.writing.then(async () => {
      await mkdir(dirname(this.file), { recursive: true })
      await writeFileAtomic(this.file, snapshot)
    })
    this.writing = write.catch(() => {})
    await write
  }
}
