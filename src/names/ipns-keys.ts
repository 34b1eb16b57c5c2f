// The keys this node publishes IPNS names with: `self`, the node's own libp2p key (its name is
// its peer id), and named keys made with `shoal name key create`, one Ed25519 key a file in
// `<data>/ipns-keys/<name>.key` (libp2p's protobuf form, mode 0600).
import { randomUUID } from 'node:crypto'
import { link, mkdir, open, readFile, readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { syncDirectory } from '../content/directory-sync.ts'
import { InvalidNameError, KeyExistsError, KeyUnknownError } from './errors.ts'
import { ipnsNameOf } from './ipns-name.ts'

/** The node's own key: its IPNS name is its peer id. */
export const SELF_KEY = 'self'
const KEY_SUFFIX = '.key'
// Safe as a file name on every filesystem, and short enough to read in a listing.
const KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

export interface IpnsKeyInfo {
  /** `self`, or the name it was created with. */
  key: string
  /** Its IPNS name (`k51…`). */
  name: string
  /** The same identity as a peer id (`12D3Koo…`). */
  peerId: string
  /** When the key was made (its file's time). */
  createdAt: string
}

export interface IpnsKeysOptions {
  /** `<data>/ipns-keys`. */
  dir: string
  /** The node's libp2p key (made on first use outside a mesh, read from the mesh's file in one). */
  self: () => Promise<{ key: PrivateKey, file: string }>
}

/** Reads, lists and makes this node's IPNS keys; every file is read when asked, nothing cached but `self`. */
export class IpnsKeys {
  private readonly options: IpnsKeysOptions

  constructor (options: IpnsKeysOptions) {
    this.options = options
  }

  /** Refuses a key name that cannot be one; `field` names it in the refusal. */
  static checkKeyName (key: string, field = 'key'): string {
    if (!KEY_NAME.test(key)) throw new InvalidNameError(`${field} ${JSON.stringify(key)} is not a key name: letters, digits, '.', '_' and '-', starting with a letter or digit, at most 64`)
    return key
  }

  async privateKey (key: string): Promise<PrivateKey> {
    if (key === SELF_KEY) return (await this.options.self()).key
    IpnsKeys.checkKeyName(key)
    try {
      return privateKeyFromProtobuf(await readFile(this.fileOf(key)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new KeyUnknownError(`key: no IPNS key named ${JSON.stringify(key)} on this node (shoal name key ls lists them)`)
      throw new Error(`cannot read the IPNS key ${this.fileOf(key)}: ${(err as Error).message}`, { cause: err })
    }
  }

  async list (): Promise<IpnsKeyInfo[]> {
    const self = await this.options.self()
    const keys = [await describe(SELF_KEY, self.key, self.file)]
    let files: string[]
    try {
      files = await readdir(this.options.dir)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      files = []
    }
    for (const file of files.filter(file => file.endsWith(KEY_SUFFIX)).sort()) {
      const key = file.slice(0, -KEY_SUFFIX.length)
      if (!KEY_NAME.test(key) || key === SELF_KEY) continue
      keys.push(await describe(key, await this.privateKey(key), this.fileOf(key)))
    }
    return keys
  }

  /** Makes a new Ed25519 key; refuses a name that exists (a key is never replaced: its name would change owner). */
  async create (key: string): Promise<IpnsKeyInfo> {
    IpnsKeys.checkKeyName(key, 'name')
    if (key === SELF_KEY) throw new KeyExistsError(`name: ${SELF_KEY} is this node's own key`)
    const privateKey = await generateKeyPair('Ed25519')
    const dir = this.options.dir
    await mkdir(dir, { recursive: true, mode: 0o700 })
    // Written whole under a temporary name, then linked into place: link refuses an existing
    // name, so two creates of one name cannot both win, and no reader sees half a key.
    const temporary = join(dir, `.${randomUUID()}.tmp`)
    const handle = await open(temporary, 'wx', 0o600)
    try {
      await handle.writeFile(privateKeyToProtobuf(privateKey))
      await handle.sync()
    } finally {
      await handle.close()
    }
    try {
      await link(temporary, this.fileOf(key))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyExistsError(`name: an IPNS key named ${JSON.stringify(key)} exists on this node`)
      throw err
    } finally {
      await unlink(temporary).catch(() => {})
    }
    await syncDirectory(dir)
    return await describe(key, privateKey, this.fileOf(key))
  }

  private fileOf (key: string): string {
    return join(this.options.dir, `${key}${KEY_SUFFIX}`)
  }
}

async function describe (key: string, privateKey: PrivateKey, file: string): Promise<IpnsKeyInfo> {
  const name = ipnsNameOf(privateKey.publicKey)
  return { key, name: name.text, peerId: name.peerId.toString(), createdAt: (await stat(file)).mtime.toISOString() }
}
