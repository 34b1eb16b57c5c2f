// Encryption and decryption as the copy's layer transforms (ocicrypt's JWE scheme, crypt/):
// `shoal push --encrypt jwe:pub.pem` encrypts every plain layer for the given recipients,
// `shoal pull --decrypt priv.pem` decrypts every encrypted one it has a key for; and the same for
// a whole OCI layout, for tests and scripts.
import { decryptLayer, encryptLayer, isEncrypted, loadDecryptionKeys, loadEncryptionKeys, type DecryptionKey, type EncryptionKey } from '../crypt/ocicrypt.ts'
import { copyImage, type LayerTransform } from './image-copy.ts'
import { LayoutDestination, LayoutSource } from './layout-endpoint.ts'

/** A transform that encrypts every plain layer for `recipients`, counting them. */
export function encrypting (recipients: readonly EncryptionKey[], counted = { layers: 0 }): LayerTransform {
  return {
    applies: layer => !isEncrypted(layer),
    apply: async (layer, bytes, signal) => {
      const encrypted = await encryptLayer(bytes, layer, recipients, { ...(signal === undefined ? {} : { signal }) })
      counted.layers++
      return { bytes: encrypted.ciphertext, descriptor: async () => await encrypted.descriptor() }
    }
  }
}

/** A transform that decrypts every encrypted layer with the first of `keys` that can, counting them. */
export function decrypting (keys: readonly DecryptionKey[], counted = { layers: 0 }): LayerTransform {
  return {
    applies: layer => isEncrypted(layer),
    apply: async (layer, bytes, signal) => {
      const decrypted = await decryptLayer(bytes, layer, keys, { ...(signal === undefined ? {} : { signal }) })
      counted.layers++
      return { bytes: decrypted.plaintext, descriptor: async () => await decrypted.descriptor() }
    }
  }
}

export async function encryptingTransform (specs: readonly string[], signal?: AbortSignal): Promise<LayerTransform> {
  return encrypting(await loadEncryptionKeys(specs, { ...(signal === undefined ? {} : { signal }) }))
}

export async function decryptingTransform (specs: readonly string[], signal?: AbortSignal): Promise<LayerTransform> {
  return decrypting(await loadDecryptionKeys(specs, { ...(signal === undefined ? {} : { signal }) }))
}

/** What a layout rewrite did: the top manifest written and how many layers it rewrote. */
export interface LayoutResult { digest: string, layers: number }

/** The image of the layout `srcDir` (its only one, or `tag`'s) written to `dstDir` with its layers encrypted for `recipients`, every platform. */
export async function encryptLayout (srcDir: string, dstDir: string, recipients: readonly EncryptionKey[], options: { tag?: string, signal?: AbortSignal } = {}): Promise<LayoutResult> {
  const counted = { layers: 0 }
  const { digest } = await copyImage(new LayoutSource(srcDir, options.tag), new LayoutDestination(dstDir, options.tag), { all: true, transform: encrypting(recipients, counted), ...(options.signal === undefined ? {} : { signal: options.signal }) })
  return { digest, layers: counted.layers }
}

/** The same, with every encrypted layer decrypted by one of `keys`; nothing is written when none can. */
export async function decryptLayout (srcDir: string, dstDir: string, keys: readonly DecryptionKey[], options: { tag?: string, signal?: AbortSignal } = {}): Promise<LayoutResult> {
  const counted = { layers: 0 }
  const { digest } = await copyImage(new LayoutSource(srcDir, options.tag), new LayoutDestination(dstDir, options.tag), { all: true, transform: decrypting(keys, counted), ...(options.signal === undefined ? {} : { signal: options.signal }) })
  return { digest, layers: counted.layers }
}
