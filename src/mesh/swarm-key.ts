import { readFile } from 'node:fs/promises'

/** Reads a libp2p pre-shared key file (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits). */
export async function readSwarmKey (path: string): Promise<Uint8Array> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new Error(`cannot read swarm key ${path}: ${(err as Error).message}`, { cause: err })
  }
  const lines = text.trim().split(/\r?\n/)
  if (lines[0] !== '/key/swarm/psk/1.0.0/' || lines[1] !== '/base16/' || !/^[0-9a-fA-F]{64}$/.test(lines[2] ?? '')) {
    throw new Error(`swarm key ${path} is not in swarm.key format (/key/swarm/psk/1.0.0/, /base16/, 64 hex digits)`)
  }
  return new TextEncoder().encode(`${lines.slice(0, 3).join('\n')}\n`)
}

/** A new random key in swarm.key format. */
export function newSwarmKey (): string {
  const hex = Buffer.from(crypto.getRandomValues(new Uint8Array(32))).toString('hex')
  return `/key/swarm/psk/1.0.0/\n/base16/\n${hex}\n`
}
