// Who may do what to which repository (issue 12): the access rules of the configuration, first
// match wins, as Distribution's token servers (docker_auth) read their ACLs.

export const ACTIONS = ['pull', 'push', 'delete'] as const
const IPFS_PREFIX = 'ipfs/'
export type Action = typeof ACTIONS[number]

export interface AccessRule {
  /**
   * Repository patterns: `*` matches any run of characters, slashes included (`team-a/*`). Images
   * by CID (`ipfs/<cid>`) are matched only by patterns that start with `ipfs/`: a catch-all `*`
   * must not open by CID what a rule above it closes by name.
   */
  repositories: string[]
  /** User names; `*` is any signed-in user. */
  users: string[]
  allow: Action[]
}

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
    const byCid = repository.startsWith(IPFS_PREFIX)
    const rule = this.rules.find(candidate => candidate.patterns.some((pattern, index) => (candidate.repositories[index] ?? '').startsWith(IPFS_PREFIX) === byCid && pattern.test(repository)) && (candidate.users.includes('*') || candidate.users.includes(user)))
    for (const action of rule?.allow ?? []) allowed.add(action)
    return allowed
  }
}

function globToRegExp (pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map(part => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
}

/** The rules as the configuration gives them, checked; throws `must be …` naming what is wrong. */
export function parseAccessRules (value: unknown): AccessRule[] {
  if (!Array.isArray(value)) throw new Error('must be a list of rules, each {repositories, users, allow}')
  return value.map((rule: unknown, index) => {
    const where = `rule ${index + 1}`
    if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) throw new Error(`must be a list of rules: ${where} is not a mapping`)
    const unknown = Object.keys(rule).filter(key => !['repositories', 'users', 'allow'].includes(key))
    if (unknown.length > 0) throw new Error(`must have only repositories, users and allow in each rule: ${where} has ${unknown.join(', ')}`)
    const { repositories, users, allow } = rule as Record<string, unknown>
    const texts = (field: string, list: unknown): string[] => {
      if (!Array.isArray(list) || list.length === 0 || !list.every(item => typeof item === 'string' && item !== '')) throw new Error(`must give ${field} in ${where} as a non-empty list of text`)
      return list as string[]
    }
    const actions = texts('allow', allow)
    const wrong = actions.filter(action => !(ACTIONS as readonly string[]).includes(action))
    if (wrong.length > 0) throw new Error(`must allow only ${ACTIONS.join(', ')}: ${where} allows ${wrong.join(', ')}`)
    return { repositories: texts('repositories', repositories), users: texts('users', users), allow: actions as Action[] }
  })
}
