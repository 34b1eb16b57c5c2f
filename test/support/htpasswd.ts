// htpasswd files for tests and benchmarks, as `htpasswd -B` writes them: bcrypt of cost 5 in the
// $2y$ form, every other entry in the $2b$ form other tools write (a node takes both).
import { hashSync } from '@node-rs/bcrypt'

export function htpasswdText (passwords: Readonly<Record<string, string>>): string {
  return Object.entries(passwords).map(([user, password], index) => {
    const hash = hashSync(password, 5)
    return `${user}:${index % 2 === 0 ? hash.replace(/^\$2b\$/, '$2y$') : hash}`
  }).join('\n') + '\n'
}
