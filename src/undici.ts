// undici (the HTTP client of block fetches and of registry reads), loaded where the first
// connection pool or registry client is made rather than imported with the modules that use it:
// every node imports them, and a node with no mesh and no mirror need not load undici's 109
// modules (about 4 MiB of RSS).
import { createRequire } from 'node:module'
import type * as Undici from 'undici'

export function undici (): typeof Undici {
  return createRequire(import.meta.url)('undici') as typeof Undici
}
