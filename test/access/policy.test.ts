// The access rules and the requirement of each /v2 request: logic only (the real clients go
// through them in auth.test.ts).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AccessPolicy, parseAccessRules } from '../../src/access/policy.ts'
import { parseScopes, requirementOf } from '../../src/access/requirement.ts'

describe('AccessPolicy', () => {
  const rules = parseAccessRules([
    { repositories: ['team-a/*'], users: ['alice', 'bob'], allow: ['pull', 'push', 'delete'] },
    { repositories: ['secret/*', 'team-a/secret'], users: ['alice'], allow: ['pull'] },
    { repositories: ['*'], users: ['*'], allow: ['pull'] }
  ])
  const policy = new AccessPolicy({ rules, anonymousPull: false, admins: ['root'] })
  const actions = (user: string | undefined, repository: string): string[] => [...policy.actionsOn(user, repository)].sort()

  it('takes the first rule that matches both the repository and the user', () => {
    assert.deepEqual(actions('alice', 'team-a/app'), ['delete', 'pull', 'push'])
    assert.deepEqual(actions('alice', 'team-a/deep/app'), ['delete', 'pull', 'push'], '* crosses slashes')
    assert.deepEqual(actions('carol', 'team-a/app'), ['pull'], 'carol falls through to the last rule')
    assert.deepEqual(actions('carol', 'secret/x'), ['pull'])
    assert.deepEqual(actions('alice', 'secret/x'), ['pull'])
    assert.deepEqual(actions('bob', 'team-ab/app'), ['pull'], 'team-a/* does not match team-ab/app')
  })

  it('matches images by CID only with patterns that name ipfs/', () => {
    assert.deepEqual(actions('carol', 'ipfs/bafyimage'), [], 'the catch-all * does not open images by CID')
    const byCid = new AccessPolicy({ rules: parseAccessRules([{ repositories: ['ipfs/*'], users: ['carol'], allow: ['pull'] }, { repositories: ['*'], users: ['*'], allow: ['pull'] }]), anonymousPull: false, admins: [] })
    assert.deepEqual([...byCid.actionsOn('carol', 'ipfs/bafyimage')], ['pull'])
    assert.deepEqual([...byCid.actionsOn('bob', 'ipfs/bafyimage')], [])
    assert.deepEqual([...byCid.actionsOn('bob', 'x/y')], ['pull'])
  })

  it('gives admins everything and anonymous callers nothing unless anonymousPull', () => {
    assert.deepEqual(actions('root', 'secret/x'), ['delete', 'pull', 'push'])
    assert.ok(policy.isAdmin('root'))
    assert.ok(!policy.isAdmin('alice'))
    assert.ok(!policy.isAdmin(undefined))
    assert.deepEqual(actions(undefined, 'team-a/app'), [])
    const open = new AccessPolicy({ rules, anonymousPull: true, admins: [] })
    assert.deepEqual([...open.actionsOn(undefined, 'secret/x')], ['pull'])
  })

  it('with no rules, lets every signed-in user do everything (Distribution with htpasswd)', () => {
    const plain = new AccessPolicy({ rules: [], anonymousPull: false, admins: [] })
    assert.deepEqual([...plain.actionsOn('anyone', 'x/y')].sort(), ['delete', 'pull', 'push'])
    assert.deepEqual([...plain.actionsOn(undefined, 'x/y')], [])
  })

  it('refuses malformed rules naming the rule and the field', () => {
    assert.throws(() => parseAccessRules({}), /must be a list of rules/)
    assert.throws(() => parseAccessRules([{ repositories: ['a'], users: [], allow: ['pull'] }]), /must give users in rule 1 as a non-empty list of text/)
    assert.throws(() => parseAccessRules([{ repositories: ['a'], users: ['b'], allow: ['pull'] }, { repositories: ['a'], users: ['b'], allow: ['pull'], colour: 1 }]), /rule 2 has colour/)
  })
})

describe('requirementOf', () => {
  it('names the repository and the action of each /v2 endpoint', () => {
    assert.deepEqual(requirementOf('GET', '/v2/'), { kind: 'base' })
    assert.deepEqual(requirementOf('GET', '/v2'), { kind: 'base' })
    assert.deepEqual(requirementOf('GET', '/v2/_catalog?n=10'), { kind: 'catalog' })
    assert.deepEqual(requirementOf('HEAD', '/v2/a/b/manifests/1.0'), { kind: 'repository', name: 'a/b', action: 'pull' })
    assert.deepEqual(requirementOf('PUT', '/v2/a/b/manifests/1.0'), { kind: 'repository', name: 'a/b', action: 'push' })
    assert.deepEqual(requirementOf('DELETE', '/v2/a/manifests/sha256:00'), { kind: 'repository', name: 'a', action: 'delete' })
    assert.deepEqual(requirementOf('GET', '/v2/a/tags/list?n=1'), { kind: 'repository', name: 'a', action: 'pull' })
    assert.deepEqual(requirementOf('GET', '/v2/a/referrers/sha256:00'), { kind: 'repository', name: 'a', action: 'pull' })
    assert.deepEqual(requirementOf('PATCH', '/v2/x/blobs/uploads/abc'), { kind: 'repository', name: 'x', action: 'push' })
    assert.deepEqual(requirementOf('POST', '/v2/x/blobs/uploads/?mount=sha256:00&from=y/z'), { kind: 'repository', name: 'x', action: 'push' })
    // A repository whose name ends in a resource word is still itself.
    assert.deepEqual(requirementOf('GET', '/v2/x/blobs/blobs/sha256:00'), { kind: 'repository', name: 'x/blobs', action: 'pull' })
    assert.deepEqual(requirementOf('GET', '/v2/%61/manifests/1'), { kind: 'repository', name: 'a', action: 'pull' })
    assert.deepEqual(requirementOf('DELETE', '/v2/x/blobs/uploads/abc'), { kind: 'repository', name: 'x', action: 'push' }, 'cancelling an upload is part of a push')
    assert.deepEqual(requirementOf('GET', '/v2/%5Fcatalog'), { kind: 'catalog' })
    // What no endpoint serves needs what the base endpoint needs: the guard fails closed.
    assert.deepEqual(requirementOf('GET', '/v2/nothing-here'), { kind: 'base' })
    assert.deepEqual(requirementOf('GET', '/v2/%zz/manifests/1'), { kind: 'base' })
  })

  it('parses scopes as clients send them, several per parameter in the OAuth2 form', () => {
    assert.deepEqual(parseScopes(['repository:a/b:pull,push', 'registry:catalog:* repository:c:pull']), [
      { type: 'repository', name: 'a/b', actions: ['pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
      { type: 'repository', name: 'c', actions: ['pull'] }
    ])
    assert.deepEqual(parseScopes(['nonsense', '']), [])
  })
})
