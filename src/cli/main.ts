import { readFileSync } from 'node:fs'
import { flushCompileCache } from 'node:module'
import { Command, Option } from 'commander'
import { ConfigError, DEFAULT_CONFIG, envName, flagsFromText, loadConfig, settingFlags, type SettingName } from '../config.ts'
import type { PeersAnswer } from '../api/schemas.ts'
import { getJson } from './api-client.ts'
import { addStrategy, forgetNode, listImages, listNodes, listStrategies, removeStrategy, strategyStatus, type AddStrategyOptions } from './fleet-commands.ts'
import { inspectImage } from './inspect.ts'
import { admitPeer, initFleet, revokePeer, showTrust } from './trust-commands.ts'
import { writeContainerdConfig } from './containerd-config.ts'
import type { TransferOptions, TransferVerb } from './transfer-commands.ts'

/** The node a command asks, unless --node says otherwise. */
const DEFAULT_NODE = process.env.SHOAL_NODE ?? 'http://127.0.0.1:5000'

interface NodeOptions {
  node: string
  json?: boolean
}

function collect (value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value]
}

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

const program = new Command('shoal')
  .description('Shoal: a peer-to-peer, content-addressed OCI registry')
  .version(version, '-V, --version', 'print the version')

const serve = program.command('serve')
  .description('run a node (defaults: 127.0.0.1:5000, data in ./data)')
  .option('--config <file>', 'YAML configuration file (keys: the settings\' names) [env: SHOAL_CONFIG]')
// One flag per setting, generated from its declaration in config.ts.
const settingOptions = settingFlags().map(setting => {
  const choices = setting.choices === undefined ? '' : ` (${setting.choices.join(', ')})`
  const option = new Option(`--${setting.flag}${setting.switch ? '' : ` ${setting.arg ?? '<value>'}`}`, `${setting.help}${choices} [env: ${setting.env}]`)
  if (setting.repeatable) option.argParser(collect)
  serve.addOption(option)
  return { name: setting.name, attribute: option.attributeName() }
})
serve.action(async (options: Record<string, string | string[] | boolean | undefined>) => {
    const raw: Partial<Record<SettingName, string | string[] | boolean>> = {}
    for (const { name, attribute } of settingOptions) {
      const value = options[attribute]
      if (value !== undefined) raw[name] = value
    }
    const config = loadConfig({ file: options.config as string | undefined, flags: flagsFromText(raw) })
    // Loaded here, not at the top: the other commands are HTTP clients and start faster without it.
    const { ShoalNode } = await import('../node.ts')
    const node = await ShoalNode.create({ config })
    // Handlers go in before the node listens: a signal that arrives while it starts still
    // gets a clean stop once the start is done.
    let stopping = false
    const started = node.start()
    const shutdown = (signal: string): void => {
      if (stopping) return
      stopping = true
      node.logger.info({ signal }, 'shutting down')
      started.then(() => node.stop()).then(() => process.exit(0), (err: unknown) => {
        node.logger.error({ err }, 'shutdown failed')
        process.exit(1)
      })
    }
    process.on('SIGINT', () => shutdown('SIGINT'))
    process.on('SIGTERM', () => shutdown('SIGTERM'))
    // The node logs "listening" (at info) itself; a normal start says nothing at warn.
    await started
    // Node's compile cache (bin/shoal turns it on) is written now rather than only at exit, so
    // that a node that never exits cleanly (killed, crashed) still leaves it for the next start.
    flushCompileCache()
  })

program.command('fsck')
  .description('check every block of a stopped node\'s data directory against its CID; corrupt ones go to <data>/quarantine')
  // The data setting's variable and default, as serve has them (config.ts declares them once).
  .option('--data <dir>', `data directory [env: ${envName('data')}]`, process.env[envName('data')] ?? DEFAULT_CONFIG.data)
  .action(async (options: { data: string }) => {
    const { fsck } = await import('../content/fsck.ts')
    const result = await fsck(options.data, line => { console.log(line) })
    const problems = result.corrupt.length + result.unreadable.length
    console.log(`checked ${result.checked} blocks (${(result.bytes / 1048576).toFixed(1)} MiB) in ${(result.durationMs / 1000).toFixed(1)} s: ${result.corrupt.length} corrupt, ${result.unreadable.length} unreadable${result.unverifiable > 0 ? `, ${result.unverifiable} with a hash fsck cannot check` : ''}`)
    if (problems > 0) process.exitCode = 1
  })

program.command('swarm-key')
  .description('print a new pre-shared key (swarm.key format) for a private mesh')
  .action(async () => {
    const { newSwarmKey } = await import('../mesh/swarm-key.ts')
    process.stdout.write(newSwarmKey())
  })

program.command('peers')
  .description('list the peers a node is connected to')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (options: { node: string, json?: boolean }) => {
    const answer = await getJson<PeersAnswer>(options.node, '/peers')
    if (options.json === true) {
      console.log(JSON.stringify(answer, null, 2))
      return
    }
    if (answer.self === null) {
      console.log(answer.mesh === 'joining'
        ? 'this node is joining the mesh: not ready yet (see /readyz)'
        : answer.mesh === 'left'
          ? 'this node is stopping: it has left the mesh'
          : 'this node is not in a mesh (start it with --peer, --mdns or --mesh)')
      return
    }
    const self = answer.self
    console.log(`self: ${self.id}`)
    // The addresses others join through, each with /p2p/<id> as --peer wants it.
    for (const address of self.addresses) console.log(`  ${address.includes('/p2p/') ? address : `${address}/p2p/${self.id}`}`)
    if (answer.peers.length === 0) console.log('no peers connected')
    for (const peer of answer.peers) {
      console.log(`${peer.id}  ${peer.latencyMs === undefined ? '-' : `${peer.latencyMs} ms`}  ${peer.addresses.join(' ')}`)
    }
  })

const strategy = program.command('strategy')
  .description('replication strategies: where images must live')

strategy.command('add')
  .description('place an image on nodes: --percentage, --target, --replicas, --all or --labels')
  .argument('<image>', 'repository:tag, repository@digest or an image CID')
  .option('--percentage <n>', 'this share of the nodes (1-100, rounded up)')
  .option('--target <node>', 'one node, by id or name')
  .option('--replicas <k>', 'k nodes')
  .option('--all', 'every node')
  .option('--labels <k=v,...>', 'the nodes with all these labels')
  .option('--count <n>', 'with --labels: at most n of those nodes')
  .option('--dry-run', 'show where it would go; store nothing')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (image: string, options: AddStrategyOptions & NodeOptions) => {
    console.log(await addStrategy(options.node, image, options, options.json === true))
  })

strategy.command('ls')
  .description('list the strategies with how many of their nodes hold the image')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (options: NodeOptions) => {
    console.log(await listStrategies(options.node, options.json === true))
  })

strategy.command('rm')
  .description('remove a strategy: its nodes drop the image')
  .argument('<id>', 'strategy id (see shoal strategy ls)')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .action(async (id: string, options: NodeOptions) => {
    console.log(await removeStrategy(options.node, id))
  })

strategy.command('status')
  .description('per node of a strategy (or of each): pending, fetching, held, failed or dropping')
  .argument('[id]', 'strategy id; all strategies when left out')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (id: string | undefined, options: NodeOptions) => {
    console.log(await strategyStatus(options.node, id, options.json === true))
  })

const nodes = program.command('nodes')
  .description('list the fleet\'s nodes: labels, disk, images held, last presence, standing (live, silent, gone)')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (options: NodeOptions) => {
    console.log(await listNodes(options.node, options.json === true))
  })

nodes.command('forget')
  .description('forget a node that left for good, on the whole fleet, now (--node: the node to ask)')
  .argument('<id>', 'peer id (see shoal nodes)')
  .action(async (id: string, _options: unknown, command: Command) => {
    // --node belongs to `nodes` and reaches this subcommand as a global option.
    console.log(await forgetNode((command.optsWithGlobals() as NodeOptions).node, id))
  })

const fleet = program.command('fleet')
  .description('trust inside a fleet: the operator key, and which nodes may write the fleet\'s catalogue')

fleet.command('init')
  .description('make the fleet\'s operator key: DIR/operator.key (keep it off the nodes) and DIR/operator.pub (every node\'s --operator-key); no node needed')
  .requiredOption('--dir <dir>', 'where to write the two files')
  .action(async (options: { dir: string }) => {
    console.log(await initFleet(options.dir))
  })

fleet.command('admit')
  .description('certify a node: its catalogue writes (tags, its identity; strategies for an admin) reach the whole fleet, without a restart')
  .argument('<peer-id>', 'the node\'s peer id (see shoal nodes)')
  .requiredOption('--key <file>', 'the operator\'s private key (operator.key)')
  .option('--role <role>', 'member, or admin (also sets strategies)', 'member')
  .option('--node <url>', 'node that hands the certificate to the fleet', DEFAULT_NODE)
  .action(async (peer: string, options: { key: string, role: string, node: string }) => {
    console.log(await admitPeer(options.node, peer, options))
  })

fleet.command('revoke')
  .description('revoke a node\'s certificate: the fleet stops counting its catalogue writes, without a restart')
  .argument('<peer-id>', 'the node\'s peer id')
  .requiredOption('--key <file>', 'the operator\'s private key (operator.key)')
  .option('--node <url>', 'node that hands the revocation to the fleet', DEFAULT_NODE)
  .action(async (peer: string, options: { key: string, node: string }) => {
    console.log(await revokePeer(options.node, peer, options))
  })

fleet.command('trust')
  .description('the operator key a node trusts, its own certificate, and every certificate and revocation it holds')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (options: NodeOptions) => {
    console.log(await showTrust(options.node, options.json === true))
  })

program.command('containerd-config')
  .description('write containerd hosts.toml files that pull each registry\'s images through a Shoal node first, the registry itself as fallback')
  .option('--registry <host>', 'a registry to route through the node (repeatable): docker.io, ghcr.io, …', collect)
  .option('--dir <dir>', 'containerd\'s hosts directory (config_path)', '/etc/containerd/certs.d')
  .option('--node <url>', 'the Shoal node (this machine\'s, usually)', DEFAULT_NODE)
  .option('--ca <file>', 'a CA certificate containerd checks the node\'s HTTPS certificate against')
  .action(async (options: { registry?: string[], dir: string, node: string, ca?: string }) => {
    console.log(await writeContainerdConfig({ registries: options.registry ?? [], dir: options.dir, node: options.node, ...(options.ca === undefined ? {} : { ca: options.ca }) }))
  })

program.command('images')
  .description('list the fleet\'s tagged images and the nodes holding them')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (options: NodeOptions) => {
    console.log(await listImages(options.node, options.json === true))
  })

program.command('inspect')
  .description('show tag, digest, image CID and size of an image')
  .argument('<image>', 'repository:tag, repository@digest or an image CID')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (image: string, options: { node: string, json?: boolean }) => {
    const info = await inspectImage(options.node, image)
    if (options.json === true) {
      console.log(JSON.stringify(info, null, 2))
      return
    }
    console.log(`image:     ${info.repository}${info.tag === undefined ? '' : `:${info.tag}`}`)
    console.log(`digest:    ${info.digest}`)
    console.log(`media:     ${info.mediaType}`)
    console.log(`image CID: ${info.imageCid}`)
    console.log(`size:      ${info.size} bytes`)
    console.log(`pull:      ${new URL(options.node).host}/ipfs/${info.imageCid}:latest`)
  })

// IPNS names and DNSLink (issue 14).
const nameGroup = program.command('name')
  .description('IPNS names: keys, publishing an image under a name, resolving names and DNSLink domains')
const nameKey = nameGroup.command('key')
  .description('the keys a node publishes names with (self: its peer id)')

nameKey.command('create')
  .description('make a named key (Ed25519, kept in the node\'s data directory)')
  .argument('<name>', 'the key\'s name: letters, digits, ., _ and -')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (key: string, options: NodeOptions) => {
    const { createKey } = await import('./name-commands.ts')
    console.log(await createKey(options.node, key, options.json === true))
  })

nameKey.command('ls')
  .description('list the node\'s keys with their IPNS names')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (options: NodeOptions) => {
    const { listKeys } = await import('./name-commands.ts')
    console.log(await listKeys(options.node, options.json === true))
  })

nameGroup.command('publish')
  .description('point an IPNS name at an image (pullable as <node>/ipns/<name>:latest); republished before it expires')
  .argument('<image>', 'repository:tag, repository@digest or an image CID')
  .option('--key <name>', 'the key to publish with (default self: the node\'s peer id)')
  .option('--lifetime <duration>', 'how long the record is valid, e.g. 24h (the default)')
  .option('--ttl <duration>', 'how long resolvers may keep it, e.g. 5m (the default)')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (image: string, options: NodeOptions & { key?: string, lifetime?: string, ttl?: string }) => {
    const { publishName } = await import('./name-commands.ts')
    console.log(await publishName(options.node, image, options, options.json === true))
  })

nameGroup.command('resolve')
  .description('what a name points at now: an IPNS name (k51…, a peer id) or a domain with a DNSLink')
  .argument('<name>', 'IPNS name or domain')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON, with every hop')
  .action(async (text: string, options: NodeOptions) => {
    const { resolveName } = await import('./name-commands.ts')
    console.log(await resolveName(options.node, text, options.json === true))
  })

nameGroup.command('inspect')
  .description('an IPNS name\'s record: value, sequence, validity, TTL and the key that signed it')
  .argument('<name>', 'IPNS name (k51…, a peer id)')
  .option('--node <url>', 'node to ask', DEFAULT_NODE)
  .option('--json', 'print JSON')
  .action(async (text: string, options: NodeOptions) => {
    const { inspectName } = await import('./name-commands.ts')
    console.log(await inspectName(options.node, text, options.json === true))
  })

// Transfers: an image between a node and files (issue 14), loaded only when asked for.
const TRANSFERS: Array<{ verb: TransferVerb, source: string, destination: string, description: string }> = [
  { verb: 'push', source: 'a file: docker-archive:FILE, oci-archive:FILE[:tag] or oci:DIR[:tag]', destination: '<node>/<repo>:<tag>', description: 'push an image from a file to a node' },
  { verb: 'pull', source: '<node>/<repo>:<tag> (or @digest), or ipfs:<cid> (read through --node)', destination: 'a file: docker-archive:FILE[:name:tag], oci-archive:FILE[:tag] or oci:DIR[:tag]', description: 'pull an image from a node into a file' },
  { verb: 'import', source: 'a file: docker-archive:FILE, oci-archive:FILE[:tag] or oci:DIR[:tag]', destination: '<repo>:<tag> on the node', description: 'import an image from a file into the local node' },
  { verb: 'export', source: '<repo>:<tag> on the node, or ipfs:<cid>', destination: 'a file: docker-archive:FILE[:name:tag], oci-archive:FILE[:tag] or oci:DIR[:tag]', description: 'export an image of the local node into a file' }
]
for (const { verb, source, destination, description } of TRANSFERS) {
  const command = program.command(verb)
    .description(description)
    .argument('<source>', source)
    .argument('<destination>', destination)
    .option('--node <url>', 'the node for <repo>:<tag> and ipfs:<cid>', DEFAULT_NODE)
    .option('--all', 'every platform of a multi-platform image (default: this machine\'s)')
    .option('--platform <os/arch[/variant]>', 'the platform to copy from a multi-platform image')
    .option('--quiet', 'no progress, no summary')
    .option('--json', 'progress and the summary as JSON lines')
  if (verb === 'push' || verb === 'import') command.option('--encrypt <key>', 'encrypt the layers for this recipient (jwe:pub.pem, repeatable; ocicrypt, as skopeo --encryption-key)', collect)
  else command.option('--decrypt <key>', 'decrypt encrypted layers with this private key ([jwe:]priv.pem, repeatable; as skopeo --decryption-key)', collect)
  command.action(async (from: string, to: string, options: TransferOptions) => {
    const { transfer } = await import('./transfer-commands.ts')
    await transfer(verb, from, to, options)
  })
}

program.parseAsync().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err)
  console.error(`shoal: ${err instanceof ConfigError ? 'config: ' : ''}${message}`)
  // A command that set its own code (130: interrupted) keeps it.
  process.exit(typeof process.exitCode === 'number' && process.exitCode !== 0 ? process.exitCode : 1)
})
