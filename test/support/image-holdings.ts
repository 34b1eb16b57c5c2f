import { ImageHoldings, type ResolvedImage } from '../../src/registry/image-holdings.ts'
import { eventually, type TestNode } from './in-process-node.ts'

/** An ImageHoldings over a test node's own parts, as node.ts builds it. */
export function holdingsOf (test: TestNode): ImageHoldings {
  const { metadata, manifests, blobs } = test.node
  return new ImageHoldings({ metadata, manifests, blobs, remote: () => blobs.remoteBlocks() })
}

/** An image as the catalogue names it, once `test` has the tag. */
export async function resolve (test: TestNode, repository: string, tag: string): Promise<ResolvedImage> {
  const record = await eventually(async () => (await test.node.fleet?.catalogue.getTag(repository, tag)) ?? undefined, 10_000, `${repository}:${tag} in the catalogue`)
  return { repository, digest: record.digest, imageCid: record.imageCid }
}
