import { StreamState, YamuxStream } from '@chainsafe/libp2p-yamux/stream'

/** The fields of a yamux stream that the window rule reads (private in the library's types). */
interface ReceiveWindow {
  state: StreamState
  recvWindow: number
  recvWindowCapacity: number
}

/**
 * js-libp2p-yamux (8.0.1) answers every data frame it receives with a WINDOW_UPDATE frame: one
 * more encrypted write for every gossipsub message, more than half of an idle fleet's socket
 * writes (bench/RESULTS.md, 30 nodes). The yamux spec leaves the moment to the receiver;
 * hashicorp/yamux and rust-yamux send an update once half the window is used, and so does this
 * rule for established streams. Streams that still owe a SYN or ACK flag, and paused streams, go
 * through the library's own code. Applied once, when the mesh's libp2p module loads.
 */
export function sendWindowUpdatesAtHalf (): void {
  const prototype = YamuxStream.prototype as YamuxStream & { shoalWindowRule?: true }
  if (prototype.shoalWindowRule === true) return
  const original = prototype.sendWindowUpdate
  prototype.sendWindowUpdate = function (this: YamuxStream) {
    const window = this as unknown as ReceiveWindow
    if (window.state === StreamState.Established && window.recvWindowCapacity > window.recvWindow / 2) return
    original.call(this)
  }
  prototype.shoalWindowRule = true
}
