// Users from an htpasswd file of bcrypt entries (`htpasswd -B`), as Distribution's auth.htpasswd.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import type * as Bcrypt from '@node-rs/bcrypt'
import { TooManyRequestsError } from '../oci/errors.ts'
import { ConfigError } from '../config.ts'

/** A password checked recently is not checked again for this long: bcrypt costs ~50 ms a check, and a pull sends dozens of requests. */
const VERIFIED_FOR_MS = 5 * 60_000
const MAX_REMEMBERED = 1000
/** bcrypt checks at once; past it a sign-in is refused (429): wrong passwords must not fill the threadpool the blockstore uses. */
const MAX_CHECKS_IN_FLIGHT = 8

export class Htpasswd {
  private readonly hashes: ReadonlyMap<string, string>
  /** Checked for an unknown user, at the file's own cost, so that a wrong name costs as long as a wrong password. */
  private readonly dummyHash: string
  private checking = 0
  /** sha256(user, password, hash) of recent good checks, and until when each holds. */
  private readonly verified = new Map<string, number>()
  /**
   * The bcrypt addon, required when a file is loaded rather than imported with this module: a
   * node without users never maps it (about 2.5 MiB of RSS).
   */
  private readonly bcrypt = createRequire(import.meta.url)('@node-rs/bcrypt') as typeof Bcrypt

  private constructor (hashes: Map<string, string>) {
    this.hashes = hashes
    const cost = Number(/^\$2[abxy]\$(\d\d)\$/.exec(hashes.values().next().value ?? '')?.[1] ?? 10)
    this.dummyHash = this.bcrypt.hashSync('not a password', cost)
  }

  /** Reads the file (once, when the node is built); a line that is not `user:bcrypt-hash` is refused, with its number. */
  static load (file: string): Htpasswd {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read htpasswd ${file}: ${(err as Error).message}`)
    }
    const hashes = new Map<string, string>()
    for (const [index, line] of text.split(/\r?\n/).entries()) {
      if (line.trim() === '' || line.startsWith('#')) continue
      const at = line.indexOf(':')
      const user = line.slice(0, at)
      const hash = line.slice(at + 1).trim()
      if (at <= 0) throw new ConfigError(`htpasswd ${file} line ${index + 1} is not user:hash`)
      if (!/^\$2[abxy]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) throw new ConfigError(`htpasswd ${file} line ${index + 1} (${user}): only bcrypt entries are taken (htpasswd -B), as in Distribution`)
      hashes.set(user, hash)
    }
    return new Htpasswd(hashes)
  }

  /** Whether `password` is `user`'s. */
  async verify (user: string, password: string): Promise<boolean> {
    const hash = this.hashes.get(user)
    const key = createHash('sha256').update(user).update('\0').update(password).update('\0').update(hash ?? '').digest('base64')
    const now = Date.now()
    if (hash !== undefined && (this.verified.get(key) ?? 0) > now) return true
    if (this.checking >= MAX_CHECKS_IN_FLIGHT) throw new TooManyRequestsError('too many sign-ins at once: try again in a moment')
    this.checking++
    let good: boolean
    try {
      good = await this.bcrypt.verify(password, hash ?? this.dummyHash)
    } finally {
      this.checking--
    }
    if (!good || hash === undefined) return false
    if (this.verified.size >= MAX_REMEMBERED) this.verified.delete(this.verified.keys().next().value as string)
    this.verified.set(key, now + VERIFIED_FOR_MS)
    return true
  }
}
