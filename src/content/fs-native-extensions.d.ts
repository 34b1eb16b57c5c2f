// The part of fs-native-extensions (which ships no types) that Shoal uses: OS-level file locks.
declare module 'fs-native-extensions' {
  /** An exclusive (or shared) lock on an open file; false when another holds it. Never waits. */
  export function tryLock (fd: number, options?: { shared?: boolean }): boolean
  export function unlock (fd: number): void
}
