// `shoal push`, `pull`, `import` and `export`: an image between a registry (a node) and files
// (docker and OCI archives, OCI layouts) or an image CID. Ctrl-C stops the copy and leaves no
// half-written file; a push run again resumes its unfinished uploads.
import { copyImage, type CopyResult, type Platform } from '../transfer/image-copy.ts'
import { describeRef, parseImageRef, type ImageRef } from '../transfer/image-ref.ts'
import { openDestination, openSource } from '../transfer/endpoints.ts'
import { createReporter, progressMode } from '../transfer/progress.ts'
import { UploadJournal } from '../transfer/upload-journal.ts'
import { formatBytes } from '../web/format.ts'
import { CliError } from './api-client.ts'

export type TransferVerb = 'push' | 'pull' | 'import' | 'export'

export interface TransferOptions {
  node: string
  all?: boolean
  platform?: string
  quiet?: boolean
  json?: boolean
  /** Recipients to encrypt the layers for (push, import). */
  encrypt?: string[]
  /** Keys to decrypt encrypted layers with (pull, export). */
  decrypt?: string[]
}

const FILE_KINDS = new Set(['oci', 'oci-archive', 'docker-archive'])

/** The references each verb takes: push and import write to a node, pull and export read from one. */
function refsFor (verb: TransferVerb, source: string, destination: string, node: string): { from: ImageRef, to: ImageRef } {
  const local = verb === 'import' || verb === 'export' ? { node } : {}
  const from = parseImageRef(source, verb === 'export' || verb === 'pull' ? { node } : local)
  const to = parseImageRef(destination, verb === 'import' ? { node } : {})
  if ((verb === 'push' || verb === 'import') && !FILE_KINDS.has(from.kind)) throw new CliError(`${verb}: the source is a file (docker-archive:, oci-archive:, oci:), not ${source}`)
  if ((verb === 'push' || verb === 'import') && to.kind !== 'registry') throw new CliError(`${verb}: the destination is ${verb === 'push' ? '<node>/<repo>:<tag>' : '<repo>:<tag>'}, not ${destination}`)
  if ((verb === 'pull' || verb === 'export') && from.kind !== 'registry' && from.kind !== 'ipfs') throw new CliError(`${verb}: the source is ${verb === 'pull' ? '<node>/<repo>:<tag>' : '<repo>:<tag>'} or ipfs:<cid>, not ${source}`)
  if ((verb === 'pull' || verb === 'export') && !FILE_KINDS.has(to.kind)) throw new CliError(`${verb}: the destination is a file (docker-archive:, oci-archive:, oci:), not ${destination}`)
  return { from, to }
}

function parsePlatform (text: string): Platform {
  const [os = '', architecture = '', variant] = text.split('/')
  if (os === '' || architecture === '') throw new CliError(`--platform: ${text} is not os/arch[/variant]`)
  return { os, architecture, ...(variant === undefined ? {} : { variant }) }
}

export async function transfer (verb: TransferVerb, source: string, destination: string, options: TransferOptions): Promise<void> {
  const { from, to } = refsFor(verb, source, destination, options.node)
  const mode = progressMode(options, process.stderr)
  // JSON lines go where the summary goes (stdout); bars and lines beside the summary, on stderr.
  const reporter = createReporter(mode, mode === 'json' ? process.stdout : process.stderr)
  // Ctrl-C: the copy stops, its destination removes what it half wrote, the command says so.
  const interrupt = new AbortController()
  const onSignal = (): void => { interrupt.abort(new CliError('interrupted')) }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  const started = performance.now()
  let result: CopyResult
  try {
    // Loaded only when asked for: the keys' parsing and the ciphers.
    const crypt = options.encrypt !== undefined || options.decrypt !== undefined ? await import('../transfer/crypt-transforms.ts') : undefined
    const transform = options.encrypt !== undefined
      ? await crypt?.encryptingTransform(options.encrypt, interrupt.signal)
      : options.decrypt !== undefined ? await crypt?.decryptingTransform(options.decrypt, interrupt.signal) : undefined
    result = await copyImage(openSource(from, { node: options.node, signal: interrupt.signal }), openDestination(to, from, { journal: new UploadJournal() }), {
      ...(options.all === true ? { all: true } : {}),
      ...(options.platform === undefined ? {} : { platform: parsePlatform(options.platform) }),
      progress: reporter,
      ...(transform === undefined ? {} : { transform }),
      signal: interrupt.signal
    })
  } catch (err) {
    if (interrupt.signal.aborted) {
      process.exitCode = 130
      throw new CliError(`${verb} interrupted: nothing half-written was left${to.kind === 'registry' ? ' (a push run again resumes its uploads)' : ''}`)
    }
    throw err
  } finally {
    reporter.stop()
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
  }
  const seconds = (performance.now() - started) / 1000
  if (mode === 'json') {
    console.log(JSON.stringify({ event: 'done', source: describeRef(from), destination: describeRef(to), digest: result.digest, mediaType: result.mediaType, blobs: result.blobs, bytes: result.bytes, existing: result.skipped, seconds }))
  } else if (mode !== 'quiet') {
    console.log(`${describeRef(to)} ${result.digest}: ${result.blobs} blobs (${formatBytes(result.bytes)}) copied, ${result.skipped} already there, in ${seconds.toFixed(1)} s`)
  }
}
