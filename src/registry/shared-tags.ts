/** A tag as the whole fleet sees it. */
export interface SharedTag {
  repository: string
  tag: string
  digest: string
  mediaType: string
  imageCid: string
  /** The signed-in user who pushed it (with authentication on). */
  pushedBy?: string
}

/** A tag set or removed (read the tag for what it points at now). */
export interface TagChange {
  repository: string
  tag: string
  deleted: boolean
}

/**
 * The fleet's tags, when the node is in a mesh: the one authority for what a tag points at.
 * Owned here, implemented by the catalogue.
 */
export interface SharedTags {
  get(repository: string, tag: string): Promise<SharedTag | undefined>
  put(tag: SharedTag): Promise<void>
  delete(repository: string, tag: string): Promise<void>
  /** Every shared tag (the catalogue is small: one record per tag). */
  all(): Promise<SharedTag[]>
}
