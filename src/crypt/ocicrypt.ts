// Image layer encryption compatible with containers/ocicrypt (what `skopeo copy --encryption-key
// jwe:…`, podman and containerd's imgcrypt write and read), JWE key wrapping only.
//
// The format, from ocicrypt's source (encryption.go, blockcipher/, keywrap/jwe/):
// - A layer is encrypted with AES-256-CTR under a random 32-byte key and 16-byte IV ("nonce"), then
//   HMAC-SHA256 is taken over the ciphertext with the same key. The ciphertext has the plaintext's
//   length; the descriptor gets `+encrypted` appended to its media type and the ciphertext's digest.
// - `org.opencontainers.image.enc.pubopts`: base64 of {"cipher","hmac","cipheroptions"} (byte
//   fields base64 inside the JSON, as Go marshals []byte).
// - `org.opencontainers.image.enc.keys.jwe`: base64 of a JWE (JSON serialization, content encryption
//   A256GCM, one recipient per public key: RSA-OAEP for RSA, ECDH-ES+A256KW for EC) whose plaintext
//   is {"symkey","digest","cipheroptions":{"nonce"}}; `digest` is meant to be the plain layer's, but
//   containers/image writes its source's digest even when it compressed the layer before encrypting
//   it, and readers ignore it (copy/encryption.go). Adding recipients later appends another base64
//   JWE after a comma, so readers split on commas.
// - The config and the manifest stay plain.
//
// Everything streams: layers can be gigabytes. Whole images (manifests rewritten over their new
// layers) are transfer/'s: the copy's layer transforms (transfer/crypt-transforms.ts).

import { createCipheriv, createDecipheriv, createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { GeneralEncrypt, flattenedDecrypt, generalDecrypt, type DecryptOptions, type FlattenedJWE, type GeneralJWE } from 'jose'
import { parseDigest } from '../oci/digest.ts'
import { ShoalError, type ErrorDescriptor } from '../oci/errors.ts'
import type { Descriptor } from '../oci/manifest.ts'
import { KEY_MANAGEMENT_ALGORITHMS, type DecryptionKey, type EncryptionKey } from './keys.ts'
import { OffloadedDigests } from './offloaded-digests.ts'

export {
  KeyFileError, keyIdOf, loadDecryptionKeys, loadEncryptionKeys, parseDecryptionKey, parseEncryptionKey,
  type DecryptionKey, type EncryptionKey, type KeyManagementAlgorithm, type LoadOptions
} from './keys.ts'

export const ENCRYPTED_SUFFIX = '+encrypted'
export const JWE_KEYS_ANNOTATION = 'org.opencontainers.image.enc.keys.jwe'
export const PUBOPTS_ANNOTATION = 'org.opencontainers.image.enc.pubopts'
/** Every ocicrypt annotation starts so; a decrypted layer keeps none of them (ocicrypt's FilterOutAnnotations). */
const ENCRYPTION_ANNOTATION_PREFIX = 'org.opencontainers.image.enc.'
/** `…keys.<scheme>`: jwe, pgp, pkcs7, pkcs11, provider.<name>. */
const KEYS_ANNOTATION_PREFIX = 'org.opencontainers.image.enc.keys.'
/** The only cipher ocicrypt has (blockcipher.AES256CTR). */
export const LAYER_CIPHER = 'AES_256_CTR_HMAC_SHA256'

const KEY_BYTES = 32
const NONCE_BYTES = 16
const HMAC_BYTES = 32

// What ocicrypt's UnwrapKey accepts (keywrap/jwe/keywrapper_jwe.go): RFC 7518 section 5.1.
const JWE_DECRYPT_OPTIONS: DecryptOptions = {
  keyManagementAlgorithms: [...KEY_MANAGEMENT_ALGORITHMS],
  contentEncryptionAlgorithms: ['A128CBC-HS256', 'A192CBC-HS384', 'A256CBC-HS512', 'A128GCM', 'A192GCM', 'A256GCM']
}

// ---------------------------------------------------------------------------------------------
// Errors

/** A layer or image that cannot be encrypted (already encrypted, bytes not matching the descriptor, no recipient). */
export class EncryptionError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'ENCRYPTION_FAILED', status: 400, message: 'the layer cannot be encrypted' }
}

/** An encrypted layer whose encryption metadata is missing, malformed or of a kind Shoal does not read. */
export class DecryptionError extends ShoalError {
  static override readonly descriptor: ErrorDescriptor = { code: 'DECRYPTION_FAILED', status: 400, message: 'the layer cannot be decrypted' }
}

/** None of the given keys unwraps the layer key. `detail` lists the layer's recipients and the keys tried. */
export class DecryptionKeyError extends DecryptionError {
  static override readonly descriptor: ErrorDescriptor = { code: 'DECRYPTION_KEY_UNSUITABLE', status: 403, message: 'none of the given keys can decrypt the layer' }
}

/** Ciphertext whose HMAC, size or decrypted digest does not match: it was altered, or cut short. */
export class LayerIntegrityError extends DecryptionError {
  static override readonly descriptor: ErrorDescriptor = { code: 'LAYER_INTEGRITY', status: 400, message: 'the encrypted layer does not match its HMAC or digest' }
}

// ---------------------------------------------------------------------------------------------
// Layers

export interface CryptOptions {
  signal?: AbortSignal
}

export interface EncryptedLayer {
  /** The ciphertext; read it once, to its end. A failure (including plaintext not matching its descriptor) throws from it. */
  readonly ciphertext: AsyncIterable<Uint8Array>
  /**
   * The encrypted layer's descriptor: `+encrypted` media type, the ciphertext's digest and size, the
   * two ocicrypt annotations. Settles once `ciphertext` has been read to its end, since the HMAC is
   * known only then; rejects if reading it failed or stopped early.
   */
  descriptor (): Promise<Descriptor>
}

/** A layer's key and IV, and the jwe annotation that carries them to its recipients. */
interface LayerSecrets {
  symkey: Buffer
  nonce: Buffer
  keysAnnotation: string
}

/**
 * Encrypts a plain layer for `recipients`. The layer key is wrapped before any byte is read, so a
 * recipient key that does not work fails here; the plain bytes are checked against `descriptor`'s
 * digest and size as they pass (that digest goes into the wrapped options, as ocicrypt records it).
 */
export async function encryptLayer (
  plain: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  descriptor: Descriptor,
  recipients: readonly EncryptionKey[],
  options: CryptOptions = {}
): Promise<EncryptedLayer> {
  if (isEncrypted(descriptor)) throw new EncryptionError(`layer ${descriptor.digest} is already encrypted`)
  if (recipients.length === 0) throw new EncryptionError('no recipient to encrypt the layer for')
  const plainDigest = parseDigest(descriptor.digest)
  const secrets = await wrapLayerKey(plainDigest.value, recipients)
  options.signal?.throwIfAborted()

  const { stream, outcome } = streamWithOutcome<Descriptor>(async function * (resolve, onEnd) {
    const cipher = createCipheriv('aes-256-ctr', secrets.symkey, secrets.nonce)
    // ocicrypt MACs the ciphertext, keyed with the layer key itself (blockcipher_aes_ctr.go);
    // the MAC and the ciphertext's digest are computed on another thread.
    const offloaded = new OffloadedDigests({ hmacKey: secrets.symkey, sha256: true })
    onEnd(() => { offloaded.close() })
    const plainHash = createHash(plainDigest.algorithm)
    let size = 0
    for await (const chunk of plain) {
      options.signal?.throwIfAborted()
      plainHash.update(chunk)
      const out = cipher.update(chunk)
      await offloaded.update(out)
      size += out.byteLength
      yield out
    }
    const { hmac, sha256 } = await offloaded.digests()
    if (hmac === undefined || sha256 === undefined) throw new EncryptionError('the ciphertext was not hashed')
    // CTR has no padding: final() is empty, and the sizes of plaintext and ciphertext are equal.
    const tail = cipher.final()
    if (tail.byteLength > 0) throw new EncryptionError('AES-CTR produced trailing bytes')
    const actual = `${plainDigest.algorithm}:${plainHash.digest('hex')}`
    if (actual !== plainDigest.value || size !== descriptor.size) {
      throw new EncryptionError(`the layer's bytes (${actual}, ${size} bytes) do not match its descriptor (${descriptor.digest}, ${descriptor.size} bytes)`)
    }
    const pubopts = { cipher: LAYER_CIPHER, hmac: hmac.toString('base64'), cipheroptions: {} }
    resolve({
      ...descriptor,
      mediaType: descriptor.mediaType + ENCRYPTED_SUFFIX,
      digest: `sha256:${sha256}`,
      size,
      annotations: {
        ...withoutEncryptionAnnotations(descriptor.annotations),
        [JWE_KEYS_ANNOTATION]: secrets.keysAnnotation,
        [PUBOPTS_ANNOTATION]: Buffer.from(JSON.stringify(pubopts)).toString('base64')
      }
    })
  }, () => new EncryptionError('the ciphertext was not read to its end'), () => new EncryptionError('the ciphertext can be read only once'))

  return { ciphertext: stream, descriptor: outcome }
}

/** A fresh layer key and IV, and the JWE that gives them (with the plain digest) to the recipients. */
async function wrapLayerKey (plainDigest: string, recipients: readonly EncryptionKey[]): Promise<LayerSecrets> {
  const symkey = randomBytes(KEY_BYTES)
  const nonce = randomBytes(NONCE_BYTES)
  // Field names and order as Go marshals blockcipher.PrivateLayerBlockCipherOptions.
  const privateOptions = JSON.stringify({
    symkey: symkey.toString('base64'),
    digest: plainDigest,
    cipheroptions: { nonce: nonce.toString('base64') }
  })
  // One JWE, one recipient each, as ocicrypt's jose.NewMultiEncrypter(A256GCM, …). The `kid` (the key's
  // thumbprint) is Shoal's addition, so that a reader can tell who may decrypt; ocicrypt ignores it.
  const jwe = new GeneralEncrypt(Buffer.from(privateOptions)).setProtectedHeader({ enc: 'A256GCM' })
  for (const recipient of recipients) {
    jwe.addRecipient(recipient.key).setUnprotectedHeader({ alg: recipient.algorithm, kid: recipient.keyId })
  }
  let wrapped: GeneralJWE
  try {
    wrapped = await jwe.encrypt()
  } catch (error) {
    throw new EncryptionError(`cannot wrap the layer key for ${recipients.map((r) => r.source).join(', ')}: ${String(error)}`, undefined, { cause: error })
  }
  return { symkey, nonce, keysAnnotation: Buffer.from(JSON.stringify(wrapped)).toString('base64') }
}

export interface DecryptedLayer {
  /** The key that unwrapped the layer key. */
  readonly key: DecryptionKey
  /**
   * The plain digest written in the wrapped options, if any: a hint, not checked. Anyone can encrypt
   * to a public key, so it proves nothing, and containers/image records the digest of the layer
   * before it compresses it on the way to encryption (what `skopeo copy --encryption-key` does by
   * default), so it often is not the digest of the plaintext.
   */
  readonly claimedDigest: string | undefined
  /**
   * The plaintext; read it once, to its end, and trust it only if that ends without an error. The
   * last chunk is held back until the ciphertext's size, HMAC and digest have been checked (as
   * ocicrypt's delayed reader holds back its tail), so a mismatch throws LayerIntegrityError before
   * the layer is complete.
   */
  readonly plaintext: AsyncIterable<Uint8Array>
  /**
   * The plain layer's descriptor: the media type without `+encrypted`, the plaintext's digest, the
   * same size (CTR does not pad), no ocicrypt annotations. Settles once `plaintext` has been read
   * to its end; rejects if that failed or stopped early.
   */
  descriptor (): Promise<Descriptor>
}

/**
 * Decrypts an encrypted layer with the first of `keys` that unwraps its layer key; throws
 * DecryptionKeyError, naming the layer's recipients, when none does. The ciphertext is checked
 * against the descriptor's size and HMAC (pubopts: what ocicrypt checks, and like the digest
 * something a signed or pinned manifest vouches for).
 */
export async function decryptLayer (
  ciphertext: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  descriptor: Descriptor,
  keys: readonly DecryptionKey[],
  options: CryptOptions = {}
): Promise<DecryptedLayer> {
  if (!isEncrypted(descriptor)) throw new DecryptionError(`layer ${descriptor.digest} is not encrypted (${descriptor.mediaType})`)
  parseDigest(descriptor.digest)
  const jwes = layerJwes(descriptor)
  const pubopts = publicOptions(descriptor)
  const { key, plaintext: wrapped } = await unwrapLayerKey(jwes, descriptor, keys, options.signal)
  const secrets = privateOptions(wrapped, descriptor)

  const { stream, outcome } = streamWithOutcome<Descriptor>(async function * (resolve, onEnd) {
    const decipher = createDecipheriv('aes-256-ctr', secrets.symkey, secrets.nonce)
    // The MAC on another thread. It is the ciphertext's only check: the value it must equal is in
    // the descriptor (pubopts), as the digest is, and a second ciphertext with the same HMAC-SHA256
    // is as hard to find, knowing the layer key (as every recipient does), as one with the same
    // SHA-256. Hashing the ciphertext once more cost a decrypted pull a SHA-256 pass per byte.
    const offloaded = new OffloadedDigests({ hmacKey: secrets.symkey, sha256: false })
    onEnd(() => { offloaded.close() })
    const plainHash = createHash('sha256')
    let size = 0
    let held: Buffer | undefined
    // A socket's small chunks gathered into large ones (in the hashing thread's ring): each chunk
    // costs a hand-over to that thread, a cipher call and a file write (64 KiB chunks: 1.8x a
    // plain pull's time).
    for await (const chunk of offloaded.gather(ciphertext, GATHER_BYTES)) {
      options.signal?.throwIfAborted()
      size += chunk.byteLength
      for (let offset = 0; offset < chunk.byteLength; offset += DECIPHER_PIECE) {
        const out = decipher.update(chunk.subarray(offset, offset + DECIPHER_PIECE))
        plainHash.update(out)
        if (held !== undefined) yield held
        held = out
      }
    }
    decipher.final()
    const where = `layer ${descriptor.digest}`
    if (size !== descriptor.size) throw new LayerIntegrityError(`${where}: ${size} bytes of ciphertext where the descriptor says ${descriptor.size}`)
    const { hmac } = await offloaded.digests()
    if (hmac === undefined) throw new DecryptionError('the ciphertext was not hashed')
    if (hmac.length !== pubopts.hmac.length || !timingSafeEqual(hmac, pubopts.hmac)) throw new LayerIntegrityError(`${where}: HMAC mismatch, the ciphertext was altered`)
    const plain: Descriptor = {
      ...descriptor,
      mediaType: descriptor.mediaType.slice(0, -ENCRYPTED_SUFFIX.length),
      digest: `sha256:${plainHash.digest('hex')}`,
      size
    }
    const annotations = withoutEncryptionAnnotations(descriptor.annotations)
    if (annotations === undefined) delete plain.annotations
    else plain.annotations = annotations
    resolve(plain)
    if (held !== undefined) yield held
  }, () => new DecryptionError('the plaintext was not read to its end'), () => new DecryptionError('the plaintext can be read only once'))

  return {
    key,
    claimedDigest: secrets.digest,
    plaintext: stream,
    descriptor: outcome
  }
}

/** Whether a layer descriptor is an encrypted one (ocicrypt and containers/image go by the media type). */
export function isEncrypted (descriptor: Pick<Descriptor, 'mediaType'>): boolean {
  return descriptor.mediaType.endsWith(ENCRYPTED_SUFFIX)
}

/** Who can decrypt a layer, as far as its annotations tell. */
export interface LayerRecipient {
  /** ocicrypt's key wrapping scheme: `jwe` (the one Shoal reads), or `pgp`, `pkcs7`, `pkcs11`, `provider.<name>`. */
  scheme: string
  /** The JWE key management algorithm, e.g. RSA-OAEP or ECDH-ES+A256KW (jwe only). */
  algorithm?: string
  /** The JWE `kid`: Shoal writes the key's RFC 7638 thumbprint (keyIdOf); skopeo writes none. */
  keyId?: string
}

/**
 * The recipients of an encrypted layer: one per JWE recipient, one per other scheme (whose packets
 * Shoal does not read). Empty for a plain layer. Throws DecryptionError on malformed annotations.
 */
export function recipientsOf (descriptor: Descriptor): LayerRecipient[] {
  const recipients: LayerRecipient[] = []
  for (const name of Object.keys(descriptor.annotations ?? {}).sort()) {
    if (!name.startsWith(KEYS_ANNOTATION_PREFIX)) continue
    const scheme = name.slice(KEYS_ANNOTATION_PREFIX.length)
    if (scheme !== 'jwe') {
      recipients.push({ scheme })
      continue
    }
    for (const jwe of layerJwes(descriptor)) {
      const shared = { ...protectedHeader(jwe), ...jwe.unprotected }
      const perRecipient = 'recipients' in jwe ? jwe.recipients.map((r) => r.header ?? {}) : [jwe.header ?? {}]
      for (const header of perRecipient) {
        const merged: Record<string, unknown> = { ...shared, ...header }
        recipients.push({
          scheme,
          ...(typeof merged.alg === 'string' ? { algorithm: merged.alg } : {}),
          ...(typeof merged.kid === 'string' ? { keyId: merged.kid } : {})
        })
      }
    }
  }
  return recipients
}

/** A one-line description of recipients, for messages. */
export function describeRecipients (recipients: readonly LayerRecipient[]): string {
  if (recipients.length === 0) return 'no recipient'
  return recipients.map((r) => [r.scheme, r.algorithm, r.keyId === undefined ? undefined : `key ${r.keyId}`].filter((p) => p !== undefined).join(' ')).join('; ')
}

// ---------------------------------------------------------------------------------------------
// Annotations

type LayerJwe = GeneralJWE | FlattenedJWE

/** The JWEs of the jwe annotation: comma-separated base64, each a general or (go-jose, one recipient) flattened JWE. */
function layerJwes (descriptor: Descriptor): LayerJwe[] {
  const annotation = descriptor.annotations?.[JWE_KEYS_ANNOTATION]
  const where = `layer ${descriptor.digest}`
  if (annotation === undefined || annotation === '') {
    const others = Object.keys(descriptor.annotations ?? {}).filter((name) => name.startsWith(KEYS_ANNOTATION_PREFIX))
    if (others.length > 0) {
      throw new DecryptionKeyError(`${where} is encrypted for ${others.map((name) => name.slice(KEYS_ANNOTATION_PREFIX.length)).join(', ')} recipients only; Shoal decrypts jwe`)
    }
    throw new DecryptionError(`${where} has no ${JWE_KEYS_ANNOTATION} annotation`)
  }
  return annotation.split(',').map((part) => {
    const parsed = parseBase64Json(part, `${where}: ${JWE_KEYS_ANNOTATION}`)
    if (typeof parsed.ciphertext !== 'string') throw new DecryptionError(`${where}: ${JWE_KEYS_ANNOTATION} holds no JWE`)
    // jose checks the rest of the structure when it decrypts.
    return parsed as unknown as LayerJwe
  })
}

function protectedHeader (jwe: LayerJwe): Record<string, unknown> {
  if (jwe.protected === undefined) return {}
  try {
    const parsed: unknown = JSON.parse(Buffer.from(jwe.protected, 'base64url').toString('utf8'))
    return isRecord(parsed) ? parsed : {}
  } catch {
    return {}
  }
}

interface PublicOptions { hmac: Buffer }

function publicOptions (descriptor: Descriptor): PublicOptions {
  const where = `layer ${descriptor.digest}: ${PUBOPTS_ANNOTATION}`
  const annotation = descriptor.annotations?.[PUBOPTS_ANNOTATION]
  if (annotation === undefined || annotation === '') throw new DecryptionError(`layer ${descriptor.digest} has no ${PUBOPTS_ANNOTATION} annotation`)
  const options = parseBase64Json(annotation, where)
  if (options.cipher !== LAYER_CIPHER) throw new DecryptionError(`${where}: unsupported cipher ${JSON.stringify(options.cipher)}`)
  return { hmac: base64Bytes(options.hmac, HMAC_BYTES, `${where}: hmac`) }
}

interface PrivateOptions {
  symkey: Buffer
  nonce: Buffer
  digest: string | undefined
}

function privateOptions (bytes: Uint8Array, descriptor: Descriptor): PrivateOptions {
  const where = `layer ${descriptor.digest}: the wrapped options`
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(bytes).toString('utf8'))
  } catch {
    throw new DecryptionError(`${where} are not JSON`)
  }
  if (!isRecord(parsed) || !isRecord(parsed.cipheroptions)) throw new DecryptionError(`${where} are malformed`)
  return {
    symkey: base64Bytes(parsed.symkey, KEY_BYTES, `${where}: symkey`),
    nonce: base64Bytes(parsed.cipheroptions.nonce, NONCE_BYTES, `${where}: nonce`),
    digest: typeof parsed.digest === 'string' && parsed.digest !== '' ? parsed.digest : undefined
  }
}

async function unwrapLayerKey (
  jwes: readonly LayerJwe[],
  descriptor: Descriptor,
  keys: readonly DecryptionKey[],
  signal: AbortSignal | undefined
): Promise<{ key: DecryptionKey, plaintext: Uint8Array }> {
  for (const key of keys) {
    for (const jwe of jwes) {
      signal?.throwIfAborted()
      try {
        const { plaintext } = 'recipients' in jwe
          ? await generalDecrypt(jwe, key.key, JWE_DECRYPT_OPTIONS)
          : await flattenedDecrypt(jwe, key.key, JWE_DECRYPT_OPTIONS)
        return { key, plaintext }
      } catch {
        // Not this key (or not this JWE): jose says no more than that, nor does ocicrypt.
      }
    }
  }
  const recipients = recipientsOf(descriptor)
  const tried = keys.length === 0 ? 'no key given' : `tried ${keys.map((k) => `${k.source} (key ${k.keyId})`).join(', ')}`
  throw new DecryptionKeyError(
    `no given key can decrypt layer ${descriptor.digest}: it is encrypted for ${describeRecipients(recipients)}; ${tried}`,
    { recipients, keys: keys.map((k) => ({ source: k.source, keyId: k.keyId })) }
  )
}

function parseBase64Json (text: string, where: string): Record<string, unknown> {
  let parsed: unknown
  try {
    parsed = JSON.parse(Buffer.from(text, 'base64').toString('utf8'))
  } catch {
    throw new DecryptionError(`${where} is not base64 JSON`)
  }
  if (!isRecord(parsed)) throw new DecryptionError(`${where} is not a JSON object`)
  return parsed
}

function base64Bytes (value: unknown, length: number, where: string): Buffer {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'base64') : undefined
  if (bytes?.byteLength !== length) throw new DecryptionError(`${where} is not ${length} base64 bytes`)
  return bytes
}

function withoutEncryptionAnnotations (annotations: Record<string, string> | undefined): Record<string, string> | undefined {
  if (annotations === undefined) return undefined
  const kept = Object.entries(annotations).filter(([name]) => !name.startsWith(ENCRYPTION_ANNOTATION_PREFIX))
  return kept.length === 0 ? undefined : Object.fromEntries(kept)
}

function isRecord (value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** The size the ciphertext is gathered into before it is decrypted. */
const GATHER_BYTES = 1024 * 1024
/**
 * The size each piece is decrypted in: every call gives a new buffer, and 1 MiB ones, few and
 * large, let the young generation go uncollected while their memory grew outside V8's heap,
 * until that forced a full collection every ~15 MiB: 72 in a 1 GiB decrypted pull, ~1.9 s of
 * marking. In 64 KiB pieces the scavenges free them: 1 full collection, 3.6 s instead of 3.9-4.0.
 * They also reach the layer's file as 64 KiB writes: 1 MiB ones cost this VM's page cache 2-3 s
 * of system time per GiB (docs/architecture.md, "Encrypted images").
 */
const DECIPHER_PIECE = 64 * 1024

/**
 * A stream that can be read once, and the outcome its producer resolves as it ends (a layer's
 * descriptor, known only when the last byte has passed). A failure rejects the outcome too; a
 * reader that stops early gets `unfinished` there. `onEnd` registers what to release however the
 * stream ends.
 */
function streamWithOutcome<T> (
  produce: (resolve: (value: T) => void, onEnd: (release: () => void) => void) => AsyncGenerator<Uint8Array>,
  unfinished: () => Error,
  again: () => Error
): { stream: AsyncIterable<Uint8Array>, outcome: () => Promise<T> } {
  const result = Promise.withResolvers<T>()
  // Nobody has to ask for the outcome after a failure: the stream already threw it.
  result.promise.catch(() => {})
  let started = false
  async function * run (): AsyncGenerator<Uint8Array> {
    let settled = false
    const releases: Array<() => void> = []
    try {
      yield * produce(value => { settled = true; result.resolve(value) }, release => { releases.push(release) })
    } catch (error) {
      settled = true
      result.reject(error)
      throw error
    } finally {
      for (const release of releases) release()
      if (!settled) result.reject(unfinished())
    }
  }
  return {
    stream: {
      [Symbol.asyncIterator] () {
        if (started) throw again()
        started = true
        return run()
      }
    },
    outcome: async () => await result.promise
  }
}
