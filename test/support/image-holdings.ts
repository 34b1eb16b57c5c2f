import type { ImageHoldings, ResolvedImage } from '../../src/registry/image-holdings.ts'
import { eventually, type TestNode } from './in-process-node.ts'

/** The ImageHoldings node.ts built over the test node's own parts. */
export function holdingsOf (test: TestNode): ImageHoldings {
  return test.node.holdings
}

/** An image as the catalogue names it, once `test` has the tag. */
export async function resolve (test: TestNode, repository: string, tag: string): Promise<ResolvedImage> {
  const record = await eventually(async () => (await test.node.fleet?.catalogue.getTag(repository, tag)) ?? undefined, 10_000, `${repository}:${tag} in the catalogue`)
  return { repository, digest: record.digest, imageCid: record.imageCid }
}
