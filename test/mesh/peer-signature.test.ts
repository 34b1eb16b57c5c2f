// Block requests signed with a node's libp2p key (mesh/peer-signature.ts): Shoal's kept OpenSSL
// key objects must sign and check exactly as libp2p's own keys do.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { PEER_SIGNATURE_HEADER, PEER_TIME_HEADER, signRequest, verifyRequest } from '../../src/mesh/peer-signature.ts'

const TARGET = '127.0.0.1:5000/ipfs/bafkreiexample'

describe('peer request signatures', () => {
  for (const type of ['Ed25519', 'secp256k1'] as const) {
    it(`${type}: the signature is libp2p's own, checks against the peer id, and holds for that request only`, async () => {
      const key = await generateKeyPair(type)
      const peer = peerIdFromPrivateKey(key).toString()
      const now = Date.now()
      const headers = await signRequest(key, 'GET', TARGET, now)
      const time = headers[PEER_TIME_HEADER] as string
      const signature = headers[PEER_SIGNATURE_HEADER] as string
      const text = new TextEncoder().encode(`shoal block request\nGET\n${TARGET}\n${time}`)
      assert.ok(await key.publicKey.verify(text, Buffer.from(signature, 'base64url')), 'libp2p checks the signature')
      if (type === 'Ed25519') assert.equal(signature, Buffer.from(await key.sign(text)).toString('base64url'), 'the same bytes as libp2p signs')
      // Twice: the second check uses the kept key object.
      assert.equal(await verifyRequest(peer, 'GET', TARGET, time, signature, now), peer)
      assert.equal(await verifyRequest(peer, 'GET', TARGET, time, signature, now), peer)
      assert.equal(await verifyRequest(peer, 'GET', `${TARGET}x`, time, signature, now), undefined, 'another target')
      assert.equal(await verifyRequest(peer, 'HEAD', TARGET, time, signature, now), undefined, 'another method')
      assert.equal(await verifyRequest(peer, 'GET', TARGET, time, signature, now + 61_000), undefined, 'too late')
      const other = peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toString()
      assert.equal(await verifyRequest(other, 'GET', TARGET, time, signature, now), undefined, 'another peer')
    })
  }
})
