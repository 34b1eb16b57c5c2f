// The deployment files (issue 13): every Kubernetes object checked offline against the Kubernetes
// schemas (kubernetes-models validates each kind without a cluster), the node configuration they
// carry loaded by Shoal's own configuration loader, and the parts tied to each other (probes on
// the health endpoints, ports, mounts, the kustomization listing every file).
import assert from 'node:assert/strict'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { parseAllDocuments } from 'yaml'
import { DaemonSet } from 'kubernetes-models/apps/v1'
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1'
import { loadConfig } from '../../src/config.ts'
import { REPO_ROOT } from '../support/node-process.ts'

const DIR = join(REPO_ROOT, 'deploy', 'kubernetes')

/** The model class that validates each kind. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace as never,
  'v1/ConfigMap': ConfigMap as never,
  'v1/Secret': Secret as never,
  'v1/Service': Service as never,
  'apps/v1/DaemonSet': DaemonSet as never
}

/** What the checks below read of the objects (the schemas check the rest). */
interface Container {
  args: string[]
  volumeMounts: Array<{ name: string, mountPath: string }>
  livenessProbe: { httpGet: { path: string } }
  readinessProbe: { httpGet: { path: string } }
  ports: Array<{ name: string, containerPort: number }>
  resources: { requests: { cpu?: string }, limits: { memory?: string } }
}
interface KubeObject {
  __file: string
  apiVersion: string
  kind: string
  metadata: { namespace?: string }
  data: Record<string, string>
  spec: { template: { spec: { containers: Container[], securityContext: { runAsNonRoot?: boolean } } } } & Record<string, unknown>
}

async function objects (): Promise<KubeObject[]> {
  const files = (await readdir(DIR)).filter(file => file.endsWith('.yaml') && file !== 'kustomization.yaml')
  const all: KubeObject[] = []
  for (const file of files) {
    for (const document of parseAllDocuments(await readFile(join(DIR, file), 'utf8'))) {
      assert.equal(document.errors.length, 0, `${file}: ${document.errors.join('; ')}`)
      all.push({ ...document.toJS() as KubeObject, __file: file })
    }
  }
  return all
}

describe('deploy/kubernetes', () => {
  it('holds only objects that validate against the Kubernetes schemas', async () => {
    const found = await objects()
    assert.deepEqual(found.map(object => `${object.apiVersion}/${object.kind}`).sort(), Object.keys(MODELS).sort())
    for (const { __file: file, ...object } of found) {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`]
      assert.ok(Model !== undefined, `${file}: no model for ${object.kind}`)
      assert.doesNotThrow(() => { new Model(object as never).validate() }, `${file} validates`)
    }
    // The check can fail: a DaemonSet without its selector does not validate.
    const { __file: _file, ...daemonSet } = found.find(object => object.kind === 'DaemonSet')!
    const { selector: _selector, ...specWithoutSelector } = daemonSet.spec
    assert.throws(() => { new DaemonSet({ ...daemonSet, spec: specWithoutSelector } as never).validate() })
  })

  it('lists every file in the kustomization, and puts everything in one namespace', async () => {
    const kustomization = parseAllDocuments(await readFile(join(DIR, 'kustomization.yaml'), 'utf8'))[0]?.toJS() as { namespace: string, resources: string[] }
    const files = (await readdir(DIR)).filter(file => file.endsWith('.yaml') && file !== 'kustomization.yaml')
    assert.deepEqual([...kustomization.resources].sort(), files.sort())
    for (const object of await objects()) {
      if (object.kind !== 'Namespace') assert.equal(object.metadata.namespace, kustomization.namespace, object.__file)
    }
  })

  it('runs the node with the configuration Shoal itself loads, probed on its health endpoints', async () => {
    const found = await objects()
    const configMap = found.find(object => object.kind === 'ConfigMap')!
    const daemonSet = found.find(object => object.kind === 'DaemonSet')!
    const container = daemonSet.spec.template.spec.containers[0]!
    const dir = await mkdtemp(join(tmpdir(), 'shoal-deploy-'))
    try {
      await writeFile(join(dir, 'shoal.yaml'), configMap.data['shoal.yaml'] ?? '')
      const config = loadConfig({ file: join(dir, 'shoal.yaml'), env: {} })
      assert.equal(config.listen, '0.0.0.0:5000')
      assert.deepEqual(config.mirrors.map(mirror => mirror.registry), ['docker.io', 'ghcr.io'])
      // Where the files are mounted is where the configuration and the command look for them.
      const mounts = new Map(container.volumeMounts.map(mount => [mount.name, mount.mountPath]))
      assert.equal(container.args.at(-1), `${mounts.get('config') ?? ''}/shoal.yaml`)
      assert.ok(config.swarmKeyFile?.startsWith(`${mounts.get('swarm-key') ?? '-'}/`), 'the swarm key from the Secret')
      assert.equal(config.data, mounts.get('data'))
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
    assert.equal(container.livenessProbe.httpGet.path, '/healthz')
    assert.equal(container.readinessProbe.httpGet.path, '/readyz')
    assert.equal(container.ports.find(port => port.name === 'registry')?.containerPort, 5000)
    assert.ok(container.resources.requests.cpu !== undefined && container.resources.limits.memory !== undefined)
    assert.equal(daemonSet.spec.template.spec.securityContext.runAsNonRoot, true)
  })

  it('ships a Containerfile that runs as a non-root user, and a systemd unit', async () => {
    const containerfile = await readFile(join(REPO_ROOT, 'Containerfile'), 'utf8')
    assert.equal(containerfile.match(/^FROM /gm)?.length, 2, 'multi-stage')
    assert.match(containerfile, /^USER 10001:10001$/m)
    const unit = await readFile(join(REPO_ROOT, 'deploy', 'systemd', 'shoal.service'), 'utf8')
    assert.match(unit, /^ExecStart=\/opt\/shoal\/bin\/shoal serve /m)
    assert.match(unit, /^User=shoal$/m)
  })
})
