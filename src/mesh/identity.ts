import { mkdir, readFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { writeFileAtomic } from '../content/atomic-file.ts'

/** The node's libp2p key, made once and kept in the data directory: its peer id never changes. */
export async function loadOrCreateIdentity (path: string): Promise<PrivateKey> {
  try {
    return privateKeyFromProtobuf(await readFile(path))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`cannot read the node identity ${path}: ${(err as Error).message}`, { cause: err })
  }
  const key = await generateKeyPair('Ed25519')
  await mkdir(dirname(path), { recursive: true })
  await writeFileAtomic(path, privateKeyToProtobuf(key))
  return key
}
