// A plain helia node in a process of its own, for bench/bitswap.ts: it imports a directory (an
// OCI image layout) as UnixFS, prints one JSON line `{ "address", "root" }` on stdout, and serves
// it over bitswap until it is sent SIGTERM.
//
//   node bench/helia-holder.ts --dir <layout> [--swarm-key <file>]
import { parseArgs } from 'node:util'
import { readSwarmKey } from '../src/mesh/swarm-key.ts'
import { addDirectory, startPlainHelia } from '../test/support/plain-helia.ts'

const { values } = parseArgs({ options: { dir: { type: 'string' }, 'swarm-key': { type: 'string' } } })
if (values.dir === undefined) throw new Error('--dir is required')
const helia = await startPlainHelia({ swarmKey: values['swarm-key'] === undefined ? undefined : await readSwarmKey(values['swarm-key']) })
const root = await addDirectory(helia, values.dir)
process.stdout.write(`${JSON.stringify({ address: helia.libp2p.getMultiaddrs()[0]?.toString(), root: root.toString() })}\n`)
process.once('SIGTERM', () => { void helia.stop().then(() => process.exit(0)) })
