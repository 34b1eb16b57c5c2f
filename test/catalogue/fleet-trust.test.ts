// Who may write the catalogue under an operator key: which entries enter a log, and which count.
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { newOperatorKeys, operatorPublicKey, signStatement, type Certificate } from '../../src/access/certificates.ts'
import { FleetTrust, statementKey } from '../../src/catalogue/fleet-trust.ts'

const operator = newOperatorKeys()
const certificate = (peer: string, role: Certificate['role'], issuedAt = '2026-12-07T08:00:00.000Z'): Certificate => ({ kind: 'certificate', peer, writer: `w-${peer}`, role, issuedAt })
const put = (key: string) => ({ op: 'PUT', key, value: {} })

describe('FleetTrust', () => {
  it('counts its own writes always, a member\'s tags and own identity, an admin\'s strategies', () => {
    const trust = new FleetTrust(operatorPublicKey(operator.publicPem), 'w-self')
    trust.update([signStatement(certificate('m', 'member'), operator.privatePem), signStatement(certificate('a', 'admin'), operator.privatePem)])
    assert.equal(trust.admits('strategy', 'w-self', 's1', false), true, 'its own')
    assert.equal(trust.admits('tag', 'w-m', 'repo:1', false), true)
    assert.equal(trust.admits('strategy', 'w-m', 's1', false), false, 'a member\'s strategy')
    assert.equal(trust.admits('strategy', 'w-a', 's1', false), true)
    assert.equal(trust.admits('node', 'w-m', 'm', false), true, 'its own identity')
    assert.equal(trust.admits('node', 'w-m', 'a', false), false, 'another\'s identity')
    assert.equal(trust.admits('node', 'w-m', 'gone-node', true), true, 'forgetting a departed node')
    assert.equal(trust.admits('tag', 'w-stranger', 'repo:1', false), false)
    assert.equal(trust.admits('tag', 'w-m', undefined, false), true, 'a member\'s snapshot entry')
  })

  it('lets a revoked writer\'s entries into logs (later entries point at them) but counts none of them', async () => {
    const trust = new FleetTrust(operatorPublicKey(operator.publicPem), 'w-self')
    let changes = 0
    trust.onChange(() => { changes++ })
    trust.update([signStatement(certificate('m', 'member'), operator.privatePem)])
    trust.update([signStatement(certificate('m', 'member'), operator.privatePem), signStatement({ kind: 'revocation', peer: 'm', revokedAt: '2026-12-07T09:00:00.000Z' }, operator.privatePem)])
    assert.equal(changes, 2)
    assert.equal(trust.certified('w-m'), undefined)
    assert.equal(trust.admits('tag', 'w-m', 'repo:1', false), false)
    assert.equal(await trust.mayAppend('tag', 'w-m', put('repo:1')), true)
  })

  it('takes certificate entries only when each carries a statement the operator signed, under its own key', async () => {
    const trust = new FleetTrust(operatorPublicKey(operator.publicPem), 'w-self')
    const signed = signStatement(certificate('m', 'member'), operator.privatePem)
    const forged = signStatement(certificate('m', 'admin'), newOperatorKeys().privatePem)
    assert.equal(await trust.mayAppend('certificate', 'anyone', { op: 'PUT', key: statementKey(signed), value: signed }), true)
    assert.equal(await trust.mayAppend('certificate', 'anyone', { op: 'PUT', key: 'other', value: signed }), false, 'under another key')
    assert.equal(await trust.mayAppend('certificate', 'anyone', { op: 'PUT', key: statementKey(forged), value: forged }), false, 'another key signed it')
    assert.equal(await trust.mayAppend('certificate', 'anyone', { op: 'DEL', key: statementKey(signed) }), false, 'a delete')
    const item = (statement: typeof signed) => ({ key: statementKey(statement), deleted: false, value: statement, hash: 'h', generation: 0, time: 1, id: 'x' })
    assert.equal(await trust.mayAppend('certificate', 'anyone', { op: 'BASE', value: { items: [item(signed)] } }), true)
    assert.equal(await trust.mayAppend('certificate', 'anyone', { op: 'BASE', value: { items: [item(signed), item(forged)] } }), false, 'a snapshot with one forged item')
  })

  it('waits a little for the certificate of an unknown writer, then refuses it at once until the certificates change', async () => {
    const trust = new FleetTrust(operatorPublicKey(operator.publicPem), 'w-self')
    const waiting = trust.mayAppend('tag', 'w-late', put('repo:1'))
    setTimeout(() => { trust.update([signStatement(certificate('late', 'member'), operator.privatePem)]) }, 100)
    assert.equal(await waiting, true, 'its certificate arrived while it waited')
    let started = performance.now()
    assert.equal(await trust.mayAppend('tag', 'w-stranger', put('repo:1')), false)
    assert.ok(performance.now() - started >= 4_500, 'it waited')
    started = performance.now()
    assert.equal(await trust.mayAppend('tag', 'w-stranger', put('repo:2')), false)
    assert.ok(performance.now() - started < 100, 'refused at once the second time')
    trust.update([signStatement(certificate('late', 'member'), operator.privatePem), signStatement(certificate('stranger', 'member'), operator.privatePem)])
    assert.equal(await trust.mayAppend('tag', 'w-stranger', put('repo:3')), true, 'certified since')
  })
})
