// Who may do what to which repository (issue 12): the access rules of the configuration, first
// match wins, as Distribution's token servers (docker_auth) read their ACLs. The rules' shape is
// the configuration's (config.ts: a setting's value is parsed where the setting is declared).
import { ACTIONS, type AccessRule, type Action } from '../config.ts'

import { IPFS_REPOSITORY_PREFIX } from '../registry/ipfs-images.ts'

export { ACTIONS, parseAccessRules, type AccessRule, type Action } from '../config.ts'

export interface AccessPolicyOptions {
  rules: AccessRule[]
  /** Anyone, signed in or not, may pull every repository. */
  anonymousPull: boolean
  /** Users who may do everything, and manage strategies and the fleet. */
  admins: string[]
}

/**
 * Rights per user and repository. With no rules every signed-in user may do everything, as a
 * Distribution registry with an htpasswd file allows; with rules, the first whose repositories
 * and users match decides, and none matching allows nothing. Admins may always do everything.
 */
export class AccessPolicy {
  private readonly rules: Array<AccessRule & { patterns: RegExp[] }>
  private readonly options: AccessPolicyOptions

  constructor (options: AccessPolicyOptions) {
    this.options = options
    this.rules = options.rules.map(rule => ({ ...rule, patterns: rule.repositories.map(globToRegExp) }))
  }

  isAdmin (user: string | undefined): boolean {
    return user !== undefined && this.options.admins.includes(user)
  }

  /** What `user` (undefined: not signed in) may do to `repository`. */
  actionsOn (user: string | undefined, repository: string): Set<Action> {
    const allowed = new Set<Action>(this.options.anonymousPull ? ['pull'] : [])
    if (user === undefined) return allowed
    if (this.isAdmin(user) || this.rules.length === 0) return new Set(ACTIONS)
    const byCid = repository.startsWith(IPFS_REPOSITORY_PREFIX)
    const rule = this.rules.find(candidate => candidate.patterns.some((pattern, index) => (candidate.repositories[index] ?? '').startsWith(IPFS_REPOSITORY_PREFIX) === byCid && pattern.test(repository)) && (candidate.users.includes('*') || candidate.users.includes(user)))
    for (const action of rule?.allow ?? []) allowed.add(action)
    return allowed
  }
}

function globToRegExp (pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map(part => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
}
