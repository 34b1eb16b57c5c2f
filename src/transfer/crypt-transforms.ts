// Encryption and decryption as the copy's layer transforms (ocicrypt's JWE scheme, crypt/):
// `shoal push --encrypt jwe:pub.pem` encrypts every plain layer for the given recipients,
// `shoal pull --decrypt priv.pem` decrypts every encrypted one it has a key for.
import { decryptLayer, encryptLayer, isEncrypted, loadDecryptionKeys, loadEncryptionKeys } from '../crypt/ocicrypt.ts'
import type { LayerTransform } from './image-copy.ts'

export async function encryptingTransform (specs: readonly string[], signal?: AbortSignal): Promise<LayerTransform> {
  const recipients = await loadEncryptionKeys(specs, { ...(signal === undefined ? {} : { signal }) })
  return {
    applies: layer => !isEncrypted(layer),
    apply: async (layer, bytes, signal) => {
      const encrypted = await encryptLayer(bytes, layer, recipients, { ...(signal === undefined ? {} : { signal }) })
      return { bytes: encrypted.ciphertext, descriptor: async () => await encrypted.descriptor() }
    }
  }
}

export async function decryptingTransform (specs: readonly string[], signal?: AbortSignal): Promise<LayerTransform> {
  const keys = await loadDecryptionKeys(specs, { ...(signal === undefined ? {} : { signal }) })
  return {
    applies: layer => isEncrypted(layer),
    apply: async (layer, bytes, signal) => {
      const decrypted = await decryptLayer(bytes, layer, keys, { ...(signal === undefined ? {} : { signal }) })
      return { bytes: decrypted.plaintext, descriptor: async () => await decrypted.descriptor() }
    }
  }
}
