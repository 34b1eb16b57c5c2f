import assert from 'node:assert/strict'
import { test } from 'node:test'
import pino from 'pino'
import { PULLS_TOPIC, PullNotices } from '../../src/mesh/pull-notices.ts'

/** Two nodes' notices over an in-memory topic (the logic only: the mesh tests use gossipsub). */
function pair (): { a: PullNotices, b: PullNotices, sent: string[] } {
  const listeners = new Map<string, (bytes: Uint8Array) => void>()
  const sent: string[] = []
  const transport = (self: string) => ({
    publish: async (topic: string, bytes: Uint8Array) => {
      sent.push(self)
      for (const [peer, listener] of listeners) if (peer !== self && topic === PULLS_TOPIC) listener(bytes)
    },
    subscribe: (_topic: string, onMessage: (bytes: Uint8Array) => void) => {
      listeners.set(self, onMessage)
      return () => { listeners.delete(self) }
    }
  })
  const a = new PullNotices(transport('a'), { peer: 'a', url: () => 'http://a' }, pino({ level: 'silent' }))
  const b = new PullNotices(transport('b'), { peer: 'b', url: () => 'http://b' }, pino({ level: 'silent' }))
  a.start()
  b.start()
  return { a, b, sent }
}

const settle = async (): Promise<void> => { await new Promise(resolve => setTimeout(resolve, 120)) }

test('a root held after a push, which nobody pulls, sends no notice', async () => {
  const { a, b, sent } = pair()
  try {
    a.announce('pushed', true)
    await settle()
    assert.deepEqual(sent, [])
    assert.deepEqual(b.pullersOf('pushed'), [])
  } finally {
    a.stop()
    b.stop()
  }
})

test('a pull this node told of, and its end, reach the other node', async () => {
  const { a, b, sent } = pair()
  try {
    const before = b.version
    a.announce('root', false)
    await settle()
    assert.deepEqual(b.pullersOf('root').map(([peer, pull]) => [peer, pull.done]), [['a', false]])
    const heard = b.version
    assert.notEqual(heard, before, 'a new puller changes the version (relay trees kept on it are built again)')
    a.announce('root', true)
    await settle()
    assert.deepEqual(b.pullersOf('root').map(([peer, pull]) => [peer, pull.done]), [['a', true]])
    assert.notEqual(b.version, heard, 'so does a pull that ends')
    assert.equal(sent.length, 2)
  } finally {
    a.stop()
    b.stop()
  }
})

test('a root held while another node pulls it is told as done, so that puller may fetch from here', async () => {
  const { a, b } = pair()
  try {
    b.announce('root', false)
    await settle()
    a.announce('root', true)
    await settle()
    assert.deepEqual(b.pullersOf('root').map(([peer, pull]) => [peer, pull.done]), [['a', true]])
  } finally {
    a.stop()
    b.stop()
  }
})
