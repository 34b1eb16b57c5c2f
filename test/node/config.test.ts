import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { stringify as stringifyYaml } from 'yaml'
import { ConfigError, DEFAULT_CONFIG, SETTINGS, envName, flagName, flagsFromText, loadConfig, meshEnabled, settingFlags, type Config } from '../../src/config.ts'
import { shoal } from '../support/cli.ts'

describe('configuration: defaults, then file, then SHOAL_* variables, then flags', () => {
  it('runs with no configuration at all on 127.0.0.1:5000 with ./data', () => {
    assert.deepEqual(loadConfig({ env: {} }), DEFAULT_CONFIG)
    assert.equal(DEFAULT_CONFIG.listen, '127.0.0.1:5000')
    assert.equal(DEFAULT_CONFIG.data, './data')
  })

  it('layers the sources in order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    try {
      const file = join(dir, 'shoal.yaml')
      await writeFile(file, 'listen: 127.0.0.1:6000\ndata: /from/file\nlogLevel: info\nuploadExpiryHours: 24\n')
      const pick = (config: Config) => ({ listen: config.listen, data: config.data, logLevel: config.logLevel, uploadExpiryHours: config.uploadExpiryHours })
      assert.deepEqual(pick(loadConfig({ file, env: {} })), { listen: '127.0.0.1:6000', data: '/from/file', logLevel: 'info', uploadExpiryHours: 24 })
      const env = { SHOAL_CONFIG: file, SHOAL_DATA: '/from/env', SHOAL_UPLOAD_EXPIRY_HOURS: '2' }
      assert.deepEqual(pick(loadConfig({ env })), { listen: '127.0.0.1:6000', data: '/from/env', logLevel: 'info', uploadExpiryHours: 2 })
      assert.deepEqual(pick(loadConfig({ env, flags: { data: '/from/flag', listen: undefined } })), { listen: '127.0.0.1:6000', data: '/from/flag', logLevel: 'info', uploadExpiryHours: 2 })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('reads mesh settings: lists, booleans and labels from variables and flags', () => {
    const env = { SHOAL_PEERS: '/ip4/127.0.0.1/tcp/4001/p2p/a, /ip4/127.0.0.1/tcp/4002/p2p/b', SHOAL_MDNS: 'true', SHOAL_LABELS: 'zone=eu,tier=edge' }
    const config = loadConfig({ env })
    assert.deepEqual(config.peers, ['/ip4/127.0.0.1/tcp/4001/p2p/a', '/ip4/127.0.0.1/tcp/4002/p2p/b'])
    assert.equal(config.mdns, true)
    assert.deepEqual(config.labels, { zone: 'eu', tier: 'edge' })
    assert.equal(meshEnabled(config), true)
    assert.equal(meshEnabled(loadConfig({ env: {} })), false, 'a plain node loads no mesh')
    assert.deepEqual(loadConfig({ env, flags: { labels: { zone: 'us' } } }).labels, { zone: 'us' })
    assert.throws(() => loadConfig({ env: { SHOAL_MDNS: 'maybe' } }), /mdns must be true or false, not "maybe" \(from SHOAL_MDNS\)/)
    assert.throws(() => loadConfig({ env: { SHOAL_LABELS: 'zone' } }), /is not key=value/)
  })

  it('refuses bad values with a clear message', async () => {
    assert.throws(() => loadConfig({ env: { SHOAL_LISTEN: 'nowhere' } }), ConfigError)
    assert.throws(() => loadConfig({ env: { SHOAL_LOG_LEVEL: 'loud' } }), /logLevel must be one of/)
    assert.throws(() => loadConfig({ env: { SHOAL_UPLOAD_EXPIRY_HOURS: 'soon' } }), /uploadExpiryHours must be a positive number/)
    assert.throws(() => loadConfig({ file: '/nonexistent/shoal.yaml', env: {} }), /cannot read config file/)
    const dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    try {
      await writeFile(join(dir, 'bad.yaml'), 'listn: 1\n')
      assert.throws(() => loadConfig({ file: join(dir, 'bad.yaml'), env: {} }), /unknown keys: listn/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('declares each setting once: every one has a default, a flag, a SHOAL_* variable and a YAML key', async () => {
    const names = Object.keys(SETTINGS)
    assert.deepEqual(Object.keys(DEFAULT_CONFIG).sort(), [...names].sort())
    assert.equal(envName('uploadExpiryHours'), 'SHOAL_UPLOAD_EXPIRY_HOURS')
    assert.equal(envName('p2pListen'), 'SHOAL_P2P_LISTEN')
    assert.equal(flagName('uploadExpiryHours'), 'upload-expiry-hours')
    assert.equal(flagName('peers'), 'peer', 'a repeatable flag is named for one item')
    const help = (await shoal('serve', '--help')).stdout
    for (const { flag, env } of settingFlags()) {
      assert.match(help, new RegExp(`--${flag}\\b`), `--${flag} is offered`)
      assert.match(help.replace(/\s+/g, ' '), new RegExp(`env: ${env}\\]`), `${env} is named in the help`)
    }
    const dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    try {
      // One value per setting, different from its default, through each of the three sources.
      const samples: Config = {
        listen: '127.0.0.1:6001', data: '/d', logLevel: 'debug', uploadExpiryHours: 3, bodyIdleSeconds: 9, bodyMinBytesPerSecond: 512, bodyRateWindowSeconds: 8, gcIntervalMinutes: 4, gcGraceSeconds: 5,
        mesh: true, p2pListen: ['/ip4/127.0.0.1/tcp/4009'], peers: ['/ip4/127.0.0.1/tcp/4001/p2p/a'], mdns: true,
        swarmKeyFile: '/k', operatorKey: '/op.pub', mirrors: [{ registry: 'docker.io', url: 'https://registry-1.docker.io' }], mirrorTagTtlSeconds: 30, advertiseUrl: 'http://x:1', name: 'n', labels: { zone: 'eu' }, uploadLimitMbps: 7, gatewayFetch: true,
        heartbeatSeconds: 2, goneAfterSeconds: 61, forgetAfterHours: 3, maxUploadSessions: 9, scrubIntervalHours: 6, scrubMbps: 80,
        catalogueCompactEntries: 700, catalogueGraceSeconds: 7, tlsCert: '/c.pem', tlsKey: '/k.pem', tlsCa: '/ca.pem',
        htpasswd: '/h', anonymousPull: true, admins: ['alice', 'root'], accessRules: [{ repositories: ['team-a/*'], users: ['bob'], allow: ['pull', 'push'] }],
        tokenTtlSeconds: 60, tokenService: 'reg', tokenIssuer: 'iss', tokenRealm: 'https://auth.example/token', tokenPublicKey: '/pub.pem', allowedHosts: ['registry.example', 'localhost'], dnsServers: ['127.0.0.1:5353', '[::1]:53']
      }
      assert.deepEqual(Object.keys(samples).sort(), [...names].sort(), 'the sample covers every setting')
      const file = join(dir, 'all.yaml')
      // Each at its place in the file: `auth.rules` under `auth:`.
      const nested: Record<string, unknown> = {}
      for (const [key, value] of Object.entries(samples)) {
        const path = (SETTINGS[key as keyof Config] as { yaml?: string }).yaml?.split('.') ?? [key]
        let at = nested
        for (const part of path.slice(0, -1)) at = (at[part] ??= {}) as Record<string, unknown>
        at[path.at(-1) as string] = value
      }
      await writeFile(file, stringifyYaml(nested))
      assert.deepEqual(loadConfig({ file, env: {} }), samples)
      const asText = (value: unknown): string => Array.isArray(value) && value.some(item => typeof item === 'object')
        ? JSON.stringify(value)
        : Array.isArray(value)
        ? value.join(',')
        : typeof value === 'object' && value !== null ? Object.entries(value).map(([k, v]) => `${k}=${String(v)}`).join(',') : String(value)
      const env = Object.fromEntries(Object.entries(samples).map(([key, value]) => [envName(key as keyof Config), asText(value)]))
      assert.deepEqual(loadConfig({ env }), samples)
      const raw = Object.fromEntries(settingFlags().map(({ name, repeatable, switch: isSwitch }) => {
        const value = samples[name]
        return [name, isSwitch ? value : repeatable ? asText(value).split(',') : asText(value)]
      }))
      assert.deepEqual(loadConfig({ env: {}, flags: flagsFromText(raw) }), samples)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })

  it('names the flag, the variable or the file a bad value came from', async () => {
    assert.throws(() => flagsFromText({ uploadExpiryHours: 'soon' }), /uploadExpiryHours must be a positive number of hours, not "soon" \(from --upload-expiry-hours\)/)
    assert.throws(() => flagsFromText({ labels: ['zone'] }), /is not key=value.*\(from --label\)/)
    assert.deepEqual(flagsFromText({ uploadExpiryHours: '2', peers: ['/a', '/b'], mesh: true }), { uploadExpiryHours: 2, peers: ['/a', '/b'], mesh: true })
    assert.throws(() => loadConfig({ env: { SHOAL_HEARTBEAT_SECONDS: '0' } }), /heartbeatSeconds must be a positive number of seconds, not "0" \(from SHOAL_HEARTBEAT_SECONDS\)/)
    assert.throws(() => loadConfig({ env: { SHOAL_TLS_CERT: '/c.pem' } }), /tlsCert and tlsKey go together: tlsCert is set, tlsKey is not/)
    assert.throws(() => loadConfig({ env: { SHOAL_ACCESS_RULES: '[{"repositories": ["a/*"], "users": ["bob"], "allow": ["pull", "own"]}]' } }), /accessRules must allow only pull, push, delete: rule 1 allows own, not .* \(from SHOAL_ACCESS_RULES\)/)
    assert.throws(() => flagsFromText({ accessRules: '[{"repositories": ["a/*"]' }), /accessRules must be JSON, not .* \(from --access-rules\)/)
    const dir = await mkdtemp(join(tmpdir(), 'shoal-config-'))
    try {
      const broken = join(dir, 'broken.yaml')
      await writeFile(broken, 'listen: [127.0.0.1:5000\ndata: x\n')
      assert.throws(() => loadConfig({ file: broken, env: {} }), (err: unknown) =>
        err instanceof ConfigError && err.message.startsWith(`config file ${broken}: `) && !err.message.includes('\n'))
      const wrongType = join(dir, 'wrong.yaml')
      await writeFile(wrongType, 'uploadExpiryHours: "24"\npeers: /ip4/1.2.3.4/tcp/1\n')
      assert.throws(() => loadConfig({ file: wrongType, env: {} }), new RegExp(`uploadExpiryHours must be a positive number of hours, not "24" \\(from config file ${wrongType}\\)`))
      // Sections: a key unknown there is named with its section, a value in its place is read.
      const sections = join(dir, 'sections.yaml')
      await writeFile(sections, 'auth:\n  htpasswd: /etc/shoal/htpasswd\n  anonymouspull: true\n')
      assert.throws(() => loadConfig({ file: sections, env: {} }), /has unknown keys in auth: anonymouspull \(known: htpasswd, anonymousPull, admins, rules, tokenTtlSeconds, token\)/)
      await writeFile(sections, 'auth:\n  rules:\n    - repositories: ["team-a/*"]\n      users: [alice]\n      allow: [pull]\n  token:\n    service: reg\n')
      assert.deepEqual(loadConfig({ file: sections, env: {} }).accessRules, [{ repositories: ['team-a/*'], users: ['alice'], allow: ['pull'] }])
      assert.equal(loadConfig({ file: sections, env: {} }).tokenService, 'reg')
      await writeFile(sections, 'auth:\n  rules:\n    - repositories: "team-a/*"\n      users: [alice]\n      allow: [pull]\n')
      assert.throws(() => loadConfig({ file: sections, env: {} }), /accessRules must give repositories in rule 1 as a non-empty list of text/)
      // The CLI says it in one line.
      const cli = await shoal('serve', '--config', broken)
      assert.notEqual(cli.code, 0)
      assert.equal(cli.stderr.trim().split('\n').length, 1)
      assert.match(cli.stderr, new RegExp(`^shoal: config: config file ${broken}: `))
      const flag = await shoal('serve', '--upload-expiry-hours', '-1')
      assert.match(flag.stderr, /^shoal: config: uploadExpiryHours must be a positive number of hours, not "-1" \(from --upload-expiry-hours\)\n$/)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
