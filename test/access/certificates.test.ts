// Member certificates and revocations signed by the operator key: logic only (the fleet that
// applies them is the next part of issue 12).
import assert from 'node:assert/strict'
import { generateKeyPairSync } from 'node:crypto'
import { describe, it } from 'node:test'
import { certifiedWriters, newOperatorKeys, operatorPublicKey, signStatement, verifyStatement, type Certificate } from '../../src/access/certificates.ts'

const operator = newOperatorKeys()
const stranger = newOperatorKeys()
const key = operatorPublicKey(operator.publicPem)
const certificate = (peer: string, issuedAt: string, role: Certificate['role'] = 'member'): Certificate => ({ kind: 'certificate', peer, writer: `writer-of-${peer}`, role, issuedAt })

describe('member certificates', () => {
  it('verify when the operator signed them, and not when anything was changed or someone else signed', () => {
    const signed = signStatement(certificate('peer-a', '2026-12-07T08:00:00.000Z'), operator.privatePem)
    assert.deepEqual(verifyStatement(signed, key), signed)
    assert.equal(verifyStatement({ ...signed, role: 'admin' }, key), undefined, 'role raised')
    assert.equal(verifyStatement({ ...signed, writer: 'writer-of-mallory' }, key), undefined, 'writer swapped')
    assert.equal(verifyStatement(signStatement(certificate('peer-a', '2026-12-07T08:00:00.000Z'), stranger.privatePem), key), undefined, 'another key')
    assert.equal(verifyStatement({ ...signed, signature: undefined }, key), undefined)
    assert.equal(verifyStatement('nonsense', key), undefined)
    assert.equal(verifyStatement({ ...signed, issuedAt: 'yesterday' }, key), undefined)
    // Field order does not matter: the signature is over a fixed order.
    const reordered = Object.fromEntries(Object.entries(signed).reverse())
    assert.deepEqual(verifyStatement(reordered, key), signed)
  })

  it('refuses keys that are not Ed25519', () => {
    const p256 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
    assert.throws(() => operatorPublicKey(p256.publicKey.export({ format: 'pem', type: 'spki' }).toString()), /must be Ed25519, not ec/)
    assert.throws(() => signStatement(certificate('peer-a', '2026-12-07T08:00:00.000Z'), p256.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString()), /must be Ed25519, not ec/)
  })

  it('certify the newest certificate per peer until a revocation signed at or after it', () => {
    const statements = [
      signStatement(certificate('peer-a', '2026-12-07T08:00:00.000Z'), operator.privatePem),
      signStatement(certificate('peer-a', '2026-12-07T09:00:00.000Z', 'admin'), operator.privatePem),
      signStatement(certificate('peer-b', '2026-12-07T08:00:00.000Z'), operator.privatePem),
      signStatement({ kind: 'revocation', peer: 'peer-b', revokedAt: '2026-12-07T08:30:00.000Z' }, operator.privatePem),
      signStatement(certificate('peer-c', '2026-12-07T10:00:00.000Z'), operator.privatePem),
      signStatement({ kind: 'revocation', peer: 'peer-c', revokedAt: '2026-12-07T09:00:00.000Z' }, operator.privatePem)
    ]
    const writers = certifiedWriters(statements)
    assert.deepEqual(writers.get('writer-of-peer-a'), { peer: 'peer-a', role: 'admin' })
    assert.equal(writers.has('writer-of-peer-b'), false, 'revoked after its certificate')
    assert.deepEqual(writers.get('writer-of-peer-c'), { peer: 'peer-c', role: 'member' }, 'admitted again after an older revocation')
  })
})
