// Key files for ocicrypt's JWE scheme, as skopeo and containerd take them (containers/ocicrypt
// helpers/parse_helpers.go, utils/utils.go): `jwe:<public key file>` to encrypt, `<private key
// file>[:<password>]` to decrypt. ocicrypt reads SPKI public keys (PEM or DER) and JWKs, and PKCS#8
// or PKCS#1 private keys (PEM or DER), SEC1 EC keys (DER only) and JWKs; node:crypto reads all of
// those and a few more (PKCS#1 public keys, certificates, SEC1 PEM, encrypted PKCS#8), which costs
// nothing since the JWE written is the same.

import { createHash, createPrivateKey, createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'

/** The JWE key management algorithms ocicrypt writes and reads (keywrap/jwe/keywrapper_jwe.go). */
export type KeyManagementAlgorithm = 'RSA-OAEP' | 'RSA-OAEP-256' | 'ECDH-ES+A128KW' | 'ECDH-ES+A192KW' | 'ECDH-ES+A256KW'
export const KEY_MANAGEMENT_ALGORITHMS: readonly KeyManagementAlgorithm[] = ['RSA-OAEP', 'RSA-OAEP-256', 'ECDH-ES+A128KW', 'ECDH-ES+A192KW', 'ECDH-ES+A256KW']

/** A recipient to encrypt layers for. */
export interface EncryptionKey {
  /** Where the key came from (a file path), for messages. */
  readonly source: string
  readonly key: KeyObject
  /** How the layer key is wrapped for this recipient: ocicrypt's choice for the key type, or the JWK's `alg`. */
  readonly algorithm: KeyManagementAlgorithm
  /** RFC 7638 thumbprint (SHA-256, base64url) of the public key: the same for both halves of a key pair. */
  readonly keyId: string
}

/** A private key to decrypt layers with. */
export interface DecryptionKey {
  readonly source: string
  readonly key: KeyObject
  /** RFC 7638 thumbprint of its public half, as in EncryptionKey. */
  readonly keyId: string
}

/** A key spec, file or key that cannot be used: the message names the file and says why, in one line. */
export class KeyFileError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'KEY_INVALID', status: 400, message: 'the key cannot be used for image encryption' }
}

export interface LoadOptions {
  signal?: AbortSignal
}

/** Reads `jwe:<file>` specs (the form of skopeo's --encryption-key) into recipients. */
export async function loadEncryptionKeys (specs: readonly string[], options: LoadOptions = {}): Promise<EncryptionKey[]> {
  const keys: EncryptionKey[] = []
  for (const spec of specs) {
    const scheme = /^([a-z0-9.]+):/.exec(spec)?.[1]
    if (scheme !== 'jwe') {
      throw new KeyFileError(scheme === undefined
        ? `${spec}: expected jwe:<public key file>`
        : `${spec}: the ${scheme}: scheme is not supported; only jwe:<public key file> is`)
    }
    const file = spec.slice('jwe:'.length)
    keys.push(parseEncryptionKey(await readKeyFile(file, options.signal), file))
  }
  return keys
}

/**
 * Reads private key specs (the form of skopeo's --decryption-key): `<file>`, optionally `jwe:<file>`,
 * and optionally followed by `:<password>`, `:pass=<password>` or `:file=<password file>` for an
 * encrypted key. As in ocicrypt, the first colon after the file name starts the password.
 */
export async function loadDecryptionKeys (specs: readonly string[], options: LoadOptions = {}): Promise<DecryptionKey[]> {
  const keys: DecryptionKey[] = []
  for (const spec of specs) {
    const rest = spec.startsWith('jwe:') ? spec.slice('jwe:'.length) : spec
    if (/^(pgp|pkcs7|pkcs11|provider):/.test(rest)) throw new KeyFileError(`${spec}: only JWE private key files are supported`)
    const colon = rest.indexOf(':')
    const file = colon < 0 ? rest : rest.slice(0, colon)
    const password = colon < 0 ? undefined : await readPassword(rest.slice(colon + 1), file, options.signal)
    keys.push(parseDecryptionKey(await readKeyFile(file, options.signal), file, password))
  }
  return keys
}

/** A recipient from a public key file's bytes (PEM, DER or JWK); `source` names it in errors. */
export function parseEncryptionKey (data: Uint8Array, source: string): EncryptionKey {
  const text = Buffer.from(data).toString('utf8')
  let key: KeyObject
  let jwkAlgorithm: unknown
  if (/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(text)) {
    // ocicrypt refuses these too; a private key handed out as a recipient is a mistake worth stopping.
    throw new KeyFileError(`${source}: this is a private key; encrypt with its public key (openssl pkey -in ${source} -pubout)`)
  }
  const jwk = parseJwk(text)
  try {
    if (jwk !== undefined) {
      if (jwk.d !== undefined) throw new KeyFileError(`${source}: this JWK is a private key; encrypt with its public key`)
      jwkAlgorithm = jwk.alg
      key = createPublicKey({ key: jwk, format: 'jwk' })
    } else if (text.includes('-----BEGIN')) {
      key = createPublicKey(text)
    } else {
      key = firstParsed([
        () => createPublicKey({ key: Buffer.from(data), format: 'der', type: 'spki' }),
        () => createPublicKey({ key: Buffer.from(data), format: 'der', type: 'pkcs1' })
      ])
    }
  } catch (error) {
    if (error instanceof KeyFileError) throw error
    throw new KeyFileError(`${source}: not a public key (expected PEM, DER or JWK)`, undefined, { cause: error })
  }
  const algorithm = algorithmFor(key, jwkAlgorithm, source)
  return { source, key, algorithm, keyId: keyIdOf(key) }
}

/** A private key from a key file's bytes (PEM, DER or JWK), decrypted with `password` if it is encrypted. */
export function parseDecryptionKey (data: Uint8Array, source: string, password?: string): DecryptionKey {
  const text = Buffer.from(data).toString('utf8')
  const jwk = parseJwk(text)
  let key: KeyObject
  try {
    if (jwk !== undefined) {
      if (jwk.d === undefined) throw new KeyFileError(`${source}: this JWK is a public key; decrypting needs the private key`)
      key = createPrivateKey({ key: jwk, format: 'jwk' })
    } else if (text.includes('-----BEGIN')) {
      if (/-----BEGIN [A-Z0-9 ]*PUBLIC KEY-----|-----BEGIN CERTIFICATE-----/.test(text)) {
        throw new KeyFileError(`${source}: this is a public key or certificate; decrypting needs the private key`)
      }
      // PKCS#8 "ENCRYPTED PRIVATE KEY", or a traditional PEM with the legacy encryption headers.
      const encrypted = /-----BEGIN ENCRYPTED PRIVATE KEY-----|Proc-Type: *4, *ENCRYPTED/.test(text)
      if (encrypted && password === undefined) {
        throw new KeyFileError(`${source}: the key is encrypted; give its password as <file>:pass=<password> or <file>:file=<password file>`)
      }
      try {
        key = createPrivateKey({ key: text, format: 'pem', ...(password === undefined ? {} : { passphrase: password }) })
      } catch (error) {
        if (encrypted) throw new KeyFileError(`${source}: wrong password for the encrypted key`, undefined, { cause: error })
        throw error
      }
    } else {
      const der = Buffer.from(data)
      key = firstParsed((['pkcs8', 'pkcs1', 'sec1'] as const).map((type) => () => createPrivateKey({
        key: der, format: 'der', type, ...(password === undefined ? {} : { passphrase: password })
      })))
    }
  } catch (error) {
    if (error instanceof KeyFileError) throw error
    throw new KeyFileError(`${source}: not a private key (expected PEM, DER or JWK)`, undefined, { cause: error })
  }
  // Checked here so that an unusable key fails when it is loaded, not at the first layer.
  algorithmFor(key, undefined, source)
  return { source, key, keyId: keyIdOf(createPublicKey(key)) }
}

/**
 * The JWE algorithm for a recipient key: RSA-OAEP for RSA, ECDH-ES+A256KW for EC, as ocicrypt's
 * addPubKeys chooses; a JWK's own `alg` if it is one ocicrypt accepts.
 */
function algorithmFor (key: KeyObject, jwkAlgorithm: unknown, source: string): KeyManagementAlgorithm {
  const type = key.asymmetricKeyType
  let algorithm: KeyManagementAlgorithm
  if (type === 'rsa') {
    // jose (and RFC 7518 section 4.2) refuse RSA-OAEP with keys under 2048 bits.
    const bits = key.asymmetricKeyDetails?.modulusLength ?? 0
    if (bits < 2048) throw new KeyFileError(`${source}: RSA key of ${bits} bits; JWE needs at least 2048`)
    algorithm = 'RSA-OAEP'
  } else if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve
    if (curve !== 'prime256v1' && curve !== 'secp384r1' && curve !== 'secp521r1') {
      throw new KeyFileError(`${source}: EC curve ${curve ?? 'unknown'} is not supported; use P-256, P-384 or P-521`)
    }
    algorithm = 'ECDH-ES+A256KW'
  } else {
    throw new KeyFileError(`${source}: ${type ?? 'unknown'} keys are not supported; ocicrypt's JWE scheme takes RSA or EC keys`)
  }
  if (jwkAlgorithm === undefined) return algorithm
  const wanted = KEY_MANAGEMENT_ALGORITHMS.find((candidate) => candidate === jwkAlgorithm)
  if (wanted === undefined || wanted.startsWith('RSA') !== (type === 'rsa')) {
    throw new KeyFileError(`${source}: the JWK's alg ${String(jwkAlgorithm)} is not one ocicrypt accepts for a ${type} key`)
  }
  return wanted
}

/** RFC 7638 JWK thumbprint: SHA-256 over the required members, in lexicographic order, base64url. */
export function keyIdOf (publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' })
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url')
}

interface JwkFields { d?: unknown, alg?: unknown, kty?: unknown }

/** The file as a JWK, if it is JSON with a `kty`. */
function parseJwk (text: string): (JsonWebKey & JwkFields) | undefined {
  if (!text.trimStart().startsWith('{')) return undefined
  try {
    const parsed: unknown = JSON.parse(text)
    if (typeof parsed === 'object' && parsed !== null && typeof (parsed as JwkFields).kty === 'string') return parsed as JsonWebKey
  } catch {
    // Not JSON: let the PEM/DER parsers say what is wrong.
  }
  return undefined
}

function firstParsed (parsers: ReadonlyArray<() => KeyObject>): KeyObject {
  let last: unknown
  for (const parse of parsers) {
    try {
      return parse()
    } catch (error) {
      last = error
    }
  }
  throw last
}

async function readKeyFile (file: string, signal: AbortSignal | undefined): Promise<Buffer> {
  if (file === '') throw new KeyFileError('empty key file name')
  try {
    return await readFile(file, { signal })
  } catch (error) {
    if ((error as { name?: unknown }).name === 'AbortError') throw error
    const code = (error as NodeJS.ErrnoException).code
    throw new KeyFileError(`${file}: cannot read the key file (${code ?? String(error)})`, undefined, { cause: error })
  }
}

/** ocicrypt's password forms (processPwdString): `pass=<password>`, `file=<file>`, or the password itself. */
async function readPassword (spec: string, keyFile: string, signal: AbortSignal | undefined): Promise<string> {
  if (spec.startsWith('pass=')) return spec.slice('pass='.length)
  if (spec.startsWith('fd=')) throw new KeyFileError(`${keyFile}: password from a file descriptor (fd=) is not supported; use file= or pass=`)
  if (!spec.startsWith('file=')) return spec
  const file = spec.slice('file='.length)
  try {
    // Taken whole, newline and all, as ocicrypt does: the same spec must mean the same password.
    return await readFile(file, { encoding: 'utf8', signal })
  } catch (error) {
    if ((error as { name?: unknown }).name === 'AbortError') throw error
    throw new KeyFileError(`${file}: cannot read the password file for ${keyFile}`, undefined, { cause: error })
  }
}
