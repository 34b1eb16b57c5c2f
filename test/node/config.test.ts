import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { ConfigError, DEFAULT_CONFIG, loadConfig, meshEnabled, type Config } from '../../src/config.ts'

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
    assert.throws(() => loadConfig({ env: { SHOAL_MDNS: 'maybe' } }), /SHOAL_MDNS must be true or false/)
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
})
