// How the catalogue keys a tag record. Apart from catalogue.ts so that the fleet can read keys
// without loading OrbitDB.

export function tagKey (repository: string, tag: string): string {
  return `${repository}:${tag}`
}

/** The repository and tag a tag record's key names (a repository name has no colon). */
export function parseTagKey (key: string): { repository: string, tag: string } {
  const at = key.indexOf(':')
  return { repository: key.slice(0, at), tag: key.slice(at + 1) }
}
