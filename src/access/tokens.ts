// Bearer tokens after the Docker Registry v2 token specification: JWTs whose `access` claim lists
// what the holder may do ({type, name, actions}), signed by the node (ES256, its key kept in the
// data directory) or by an external issuer whose public key the configuration names. Keys are
// read (or made) once, when the node is built, like its TLS certificate.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import type * as Jose from 'jose'
import { ConfigError } from '../config.ts'

const ALGORITHM = 'ES256'

let jose: Promise<typeof Jose> | undefined
/** jose, imported with the first token rather than with this module: a node without authentication never loads it. */
async function loadJose (): Promise<typeof Jose> {
  return await (jose ??= import('jose'))
}

/** One grant of a token: `repository` `team-a/app` `[pull, push]`, or `registry` `catalog` `[*]`. */
export interface ResourceAccess {
  type: string
  name: string
  actions: string[]
}

/** What a valid token says. */
export interface TokenClaims {
  /** The user it was issued to; undefined for an anonymous token. */
  subject: string | undefined
  access: ResourceAccess[]
}

export interface TokenSettings {
  issuer: string
  /** The audience: the service named in challenges. */
  service: string
  ttlSeconds: number
}

/** A P-256 public key as its JWK members (the catalogue keeps them in dag-cbor's key order, not this one: compare by field). */
export type PublicJwk = { crv: string, kty: string, x: string, y: string }

/**
 * A member's key is asked for again after this long: a member revoked since (its identity no
 * longer counts in the catalogue) stops being trusted within it.
 */
const TRUSTED_KEY_TTL_MS = 10_000

/** Other keys a verifier takes tokens from (the fleet's members'), by key id (`kid`). */
export type TrustedKeys = (keyId: string) => Promise<PublicJwk | undefined>

/** Checks tokens: signature, issuer, audience, validity. */
export class TokenVerifier {
  protected readonly key: KeyObject
  protected readonly settings: TokenSettings
  private readonly trusted: TrustedKeys | undefined
  private readonly trustedKeys = new Map<string, { key: KeyObject, at: number }>()

  /** `trusted`: keys other than `key` whose tokens count (the fleet's members'); none: only `key`. */
  constructor (key: KeyObject, settings: TokenSettings, trusted?: TrustedKeys) {
    this.key = key
    this.settings = settings
    this.trusted = trusted
  }

  /** The key a token names in its header: this verifier's own, or a trusted one. */
  private async keyFor (token: string): Promise<KeyObject | undefined> {
    const { decodeProtectedHeader } = await loadJose()
    let keyId: string | undefined
    try {
      keyId = decodeProtectedHeader(token).kid
    } catch {
      return undefined
    }
    if (keyId === undefined || this.trusted === undefined || keyId === thumbprint(this.key)) return this.key
    const known = this.trustedKeys.get(keyId)
    if (known !== undefined && performance.now() - known.at < TRUSTED_KEY_TTL_MS) return known.key
    const jwk = await this.trusted(keyId)
    // The key must be the one its id names: a record cannot slip in another key under a known id.
    if (jwk === undefined || jwkThumbprint(jwk) !== keyId) {
      this.trustedKeys.delete(keyId)
      return this.key
    }
    const key = createPublicKey({ key: { ...jwk }, format: 'jwk' })
    this.trustedKeys.set(keyId, { key, at: performance.now() })
    return key
  }

  /** An external issuer's verifier, from its PEM public key file. */
  static external (publicKeyFile: string, settings: TokenSettings): TokenVerifier {
    let pem: string
    try {
      pem = readFileSync(publicKeyFile, 'utf8')
    } catch (err) {
      throw new ConfigError(`cannot read tokenPublicKey ${publicKeyFile}: ${(err as Error).message}`)
    }
    let key: KeyObject
    try {
      key = createPublicKey(pem)
    } catch (err) {
      throw new ConfigError(`tokenPublicKey ${publicKeyFile} is not a PEM public key: ${(err as Error).message}`)
    }
    if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new ConfigError(`tokenPublicKey ${publicKeyFile} must be a P-256 (${ALGORITHM}) key, not ${key.asymmetricKeyType ?? 'unknown'} ${key.asymmetricKeyDetails?.namedCurve ?? ''}`.trim())
    return new TokenVerifier(key, settings)
  }

  /** The token's claims, or undefined when it is not one this node accepts (forged, expired, another issuer's or service's). */
  async verify (token: string): Promise<TokenClaims | undefined> {
    const key = await this.keyFor(token)
    if (key === undefined) return undefined
    const { jwtVerify } = await loadJose()
    let payload: Jose.JWTPayload
    try {
      ({ payload } = await jwtVerify(token, key, { issuer: this.settings.issuer, audience: this.settings.service, algorithms: [ALGORITHM], clockTolerance: 5 }))
    } catch {
      return undefined
    }
    const access = Array.isArray(payload.access) ? (payload.access as unknown[]).filter(isResourceAccess) : []
    return { subject: typeof payload.sub === 'string' && payload.sub !== '' ? payload.sub : undefined, access }
  }
}

/** Issues tokens with the node's own key and checks them. */
export class TokenIssuer extends TokenVerifier {
  private readonly keyId: string
  private readonly privateKey: KeyObject

  private constructor (privateKey: KeyObject, settings: TokenSettings, trusted?: TrustedKeys) {
    const publicKey = createPublicKey(privateKey)
    super(publicKey, settings, trusted)
    this.privateKey = privateKey
    this.keyId = thumbprint(publicKey)
  }

  /** The public key its tokens are checked with, for the fleet's members. */
  get publicJwk (): PublicJwk {
    return publicJwkOf(this.key)
  }

  /** The node's signing key from `keyFile` (PKCS#8 PEM, mode 0600), made on first use. `trusted`: other keys whose tokens count. */
  static open (keyFile: string, settings: TokenSettings, trusted?: TrustedKeys): TokenIssuer {
    let pem: string
    try {
      pem = readFileSync(keyFile, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()
      mkdirSync(dirname(keyFile), { recursive: true, mode: 0o700 })
      writeFileSync(keyFile, pem, { mode: 0o600 })
    }
    return new TokenIssuer(createPrivateKey(pem), settings, trusted)
  }

  /** A token for `subject` (undefined: anonymous) granting `access`, and how long it lasts. */
  async issue (subject: string | undefined, access: ResourceAccess[]): Promise<{ token: string, expiresIn: number, issuedAt: Date }> {
    const { SignJWT } = await loadJose()
    const issuedAt = new Date()
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: ALGORITHM, kid: this.keyId, typ: 'JWT' })
      .setIssuer(this.settings.issuer)
      .setSubject(subject ?? '')
      .setAudience(this.settings.service)
      .setIssuedAt(issuedAt)
      .setNotBefore(issuedAt)
      .setExpirationTime(Math.floor(issuedAt.getTime() / 1000) + this.settings.ttlSeconds)
      .setJti(randomUUID())
      .sign(this.privateKey)
    return { token, expiresIn: this.settings.ttlSeconds, issuedAt }
  }
}

/** The RFC 7638 thumbprint of an EC public key: the `kid` its tokens carry. */
function thumbprint (key: KeyObject): string {
  return jwkThumbprint(publicJwkOf(key))
}

export function jwkThumbprint ({ crv, kty, x, y }: PublicJwk): string {
  return createHash('sha256').update(JSON.stringify({ crv, kty, x, y })).digest('base64url')
}

function publicJwkOf (key: KeyObject): PublicJwk {
  const { crv, kty, x, y } = key.export({ format: 'jwk' })
  return { crv: String(crv), kty: String(kty), x: String(x), y: String(y) }
}

function isResourceAccess (value: unknown): value is ResourceAccess {
  const candidate = value as Partial<ResourceAccess> | null
  return typeof candidate?.type === 'string' && typeof candidate.name === 'string' && Array.isArray(candidate.actions) && candidate.actions.every(action => typeof action === 'string')
}
