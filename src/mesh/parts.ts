// The classes a node builds only when its configuration puts it in a mesh, loaded together by
// `ShoalNode.create` (node.ts) then: a node on its own never loads them (~2 MiB of heap).
export { BitswapSource } from './bitswap-source.ts'
export { BlockFetcher } from './block-fetcher.ts'
export { Fleet } from './fleet.ts'
export { RemoteContent } from './remote-content.ts'
export { Reconciler } from '../replication/reconciler.ts'
