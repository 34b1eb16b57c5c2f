// What the management API is given by the composition root (node.ts): this node's own images, and
// its place in a mesh with the services a joined mesh gives. The API builds none of them.
import type { Signed, Statement } from '../access/certificates.ts'
import type { CatalogueDatabase, TagRecord, TrustStatus } from '../catalogue/catalogue.ts'
import type { MeshPhase } from '../lifecycle.ts'
import type { TagChanges } from './event-routes.ts'
import type { NamesApi } from './name-routes.ts'
import type { PeerStatus } from '../mesh/mesh.ts'
import type { LocalManifests, LocalTags } from '../replication/images.ts'
import type { ListedNode, StrategyService } from '../replication/strategy-service.ts'
import { NotReadyError } from '../lifecycle.ts'
import { NotInMeshError } from './errors.ts'

/** What the API reads of a joined mesh: node.ts builds it once the node has joined. */
export interface FleetView {
  /** This node's libp2p identity and listen addresses. */
  self(): { id: string, addresses: string[] }
  peers(signal?: AbortSignal): Promise<PeerStatus[]>
  nodes(): Promise<ListedNode[]>
  /** Forgets a departed node fleet-wide at once. */
  forget(id: string): Promise<void>
  allTags(): Promise<TagRecord[]>
  databases(): Promise<CatalogueDatabase[]>
  /** The operator key, this node's certificate and the operator's statements. */
  trust(): TrustStatus
  /** Hands the fleet an operator's statement; refuses one the operator key did not sign. */
  addStatement(value: unknown): Promise<Signed<Statement>>
}

/** The services a joined mesh gives the API. */
export interface MeshApi {
  fleet: FleetView
  strategies: StrategyService
}

/** This node's own images, for a node outside a mesh, and image checks. */
export type LocalImages = LocalTags & LocalManifests & {
  /** CIDs of the images this node holds whole. */
  listImages(): Promise<string[]>
}

export interface ApiRoutesOptions {
  /** Where the node is with its mesh (read on every request: it changes once, at the join). */
  membership: { readonly mesh: MeshPhase<MeshApi> }
  local: LocalImages
  /** Tag changes as this node's registry answers them (the catalogue's in a mesh). */
  tagChanges: TagChanges
  /** The upstream registries this node mirrors (their credentials left out). */
  mirrors: ReadonlyArray<{ registry: string, url: string }>
  /** IPNS keys, publishing and resolving (names/names.ts). */
  names: NamesApi
}

/** The joined mesh's services, or the refusal that says why there are none. */
export function joinedMesh (membership: ApiRoutesOptions['membership'], notInMesh = 'this node is not in a mesh'): MeshApi {
  const phase = membership.mesh
  switch (phase.state) {
    case 'joined': return phase.parts
    case 'off': throw new NotInMeshError(notInMesh)
    case 'joining': throw new NotReadyError('this node is joining its mesh: try again in a moment')
    case 'left': throw new NotReadyError('this node is stopping')
  }
}

