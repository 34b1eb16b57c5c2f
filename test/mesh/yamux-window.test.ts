// The yamux window rule: a receiver sends a WINDOW_UPDATE once half its window is used, not after
// every data frame (hashicorp/yamux's rule; js-libp2p-yamux sent one per frame).
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { defaultLogger } from '@libp2p/logger'
import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'
import { Uint8ArrayList } from 'uint8arraylist'
import { sendWindowUpdatesAtHalf } from '../../src/mesh/yamux-window.ts'

const WINDOW = 256 * 1024
const DATA = 0
const WINDOW_UPDATE = 1

interface SentFrame { type: number, flag: number, length: number }

function stream (state: StreamState): { stream: YamuxStream, sent: SentFrame[] } {
  const sent: SentFrame[] = []
  const created = new YamuxStream({
    id: '1',
    streamId: 1,
    state,
    direction: 'inbound',
    log: defaultLogger().forComponent('test:yamux'),
    getRTT: () => -1,
    sendFrame: header => { sent.push({ type: header.type, flag: header.flag, length: header.length }); return true }
  })
  return { stream: created, sent }
}

function receive (target: YamuxStream, bytes: number): void {
  target.handleData({ header: { type: DATA, flag: 0, streamID: 1, length: bytes, version: 0 }, data: new Uint8ArrayList(new Uint8Array(bytes)) } as unknown as Parameters<YamuxStream['handleData']>[0])
}

describe('yamux window updates', () => {
  sendWindowUpdatesAtHalf()

  it('waits until half the window is used, then restores all of it', () => {
    const { stream: established, sent } = stream(StreamState.Established)
    for (let i = 0; i < 100; i++) receive(established, 1000)
    assert.equal(sent.filter(frame => frame.type === WINDOW_UPDATE).length, 0, '100 kB of a 256 KiB window: no update yet')
    let received = 100_000
    while (sent.length === 0 && received < WINDOW) {
      receive(established, 1000)
      received += 1000
    }
    const updates = sent.filter(frame => frame.type === WINDOW_UPDATE)
    assert.equal(updates.length, 1, 'one update')
    assert.ok(received > WINDOW / 2 && received - 1000 <= WINDOW / 2, `the update came once half was used (after ${received} bytes)`)
    assert.equal(updates[0]?.length, received, 'and gives back everything used')
    for (let i = 0; i < 100; i++) receive(established, 1000)
    assert.equal(sent.length, 1, 'the window is whole again: no update for the next 100 kB')
  })

  it('still acknowledges a new inbound stream at its first frame', () => {
    const { stream: inbound, sent } = stream(StreamState.SYNReceived)
    receive(inbound, 10)
    assert.deepEqual(sent.filter(frame => frame.type === WINDOW_UPDATE).map(frame => frame.flag), [2], 'ACK flag')
  })
})
