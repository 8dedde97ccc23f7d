/**
 * The edge's view of its key repository, which a key-lag drill narrows.
 *
 * Owns: the ring the decoder and the key lag monitor read — the repository's own, or,
 * while a `key-lag` drill runs (faults.ts), the same ring less its primary key: what a
 * region whose copy lags the master's by two rotations holds (the master encrypts with a
 * key this region never received). Tokens issued now then fail every local key, the lag
 * monitor finds the region behind, and the pipeline's fallback serves them — the real
 * failure, made on purpose and undone at the drill's end. The key files on disk and the
 * repository's ring are never touched. The narrowed ring is built once per repository
 * ring, not per lookup: the lookup costs a clock read.
 */
import type { KeyRing, KeyRingSource } from "../fernet/key-ring.js";

/** What the edge sees of its key ring: all of it, or all but the primary key. */
export type KeyRingFault = "pass" | "primary_hidden";

/** `keys` as the edge sees it under `fault` (the drill's fault injector, read per lookup). */
export function drillKeyView(keys: KeyRingSource, fault: () => KeyRingFault): KeyRingSource {
  let base: KeyRing | undefined;
  let narrowed: KeyRing | undefined;
  return {
    current(): KeyRing {
      const ring = keys.current();
      if (fault() === "pass") return ring;
      if (ring !== base) {
        base = ring;
        // A ring of one key is refused at the drill's start; a reload could shrink it later.
        narrowed = ring.withoutPrimary() ?? ring;
      }
      return narrowed ?? ring;
    },
  };
}
