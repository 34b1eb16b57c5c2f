import { Command, Option } from 'commander'
import { ConfigError, loadConfig, type Config } from '../config.ts'
import { ShoalNode } from '../node.ts'
import { inspectImage } from './inspect.ts'

const program = new Command('shoal')
  .description('Shoal: a peer-to-peer, content-addressed OCI registry')
  .showHelpAfterError()

program.command('serve')
  .description('run a node (defaults: 127.0.0.1:5000, data in ./data)')
  .option('--listen <host:port>', 'address to listen on')
  .option('--data <dir>', 'data directory')
  .option('--config <file>', 'YAML configuration file')
  .addOption(new Option('--log-level <level>', 'log level').choices(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']))
  .action(async (options: { listen?: string, data?: string, config?: string, logLevel?: Config['logLevel'] }) => {
    const config = loadConfig({ file: options.config, flags: { listen: options.listen, data: options.data, logLevel: options.logLevel } })
    const node = new ShoalNode({ config })
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
    await started
    // Log at warn so the default (quiet) level still says where the node is.
    node.logger.warn({ url: node.url, data: config.data }, 'listening')
  })

program.command('inspect')
  .description('show tag, digest, image CID and size of an image')
  .argument('<image>', 'repository:tag or repository@digest')
  .option('--node <url>', 'node to ask', process.env.SHOAL_NODE ?? 'http://127.0.0.1:5000')
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

program.parseAsync().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err)
  console.error(`shoal: ${err instanceof ConfigError ? 'config: ' : ''}${message}`)
  process.exit(1)
})
