/**
 * A loaded key repository: the keys in the order Keystone tries them.
 *
 * Owns: the ordering rule (highest index = primary and tried first, then descending, the
 * staged key `0` last) and each key's role. Immutable: a reload builds a new ring and swaps
 * it in whole, so a request never sees half a rotation.
 */
import type { FernetKey } from "./envelope.js";

/** What a key does in the ring. */
export type KeyRole = "primary" | "secondary" | "staged";

export interface KeyRingEntry {
  /** The key file's integer name. */
  readonly index: number;
  readonly role: KeyRole;
  readonly key: FernetKey;
  /** The key file's modification time (ms since epoch), for key-age reporting. */
  readonly modifiedAtMs: number;
}

/** Input to {@link KeyRing.from}: one parsed key file. */
export interface KeyFile {
  readonly index: number;
  readonly key: FernetKey;
  /** Default 0 (unknown). */
  readonly modifiedAtMs?: number;
}

export class KeyRing {
  /** Entries in Keystone's order: primary, then descending indexes, staged `0` last. */
  readonly entries: readonly KeyRingEntry[];
  /** The keys alone, same order, for the hot path. */
  readonly keys: readonly FernetKey[];

  private constructor(entries: readonly KeyRingEntry[]) {
    this.entries = entries;
    this.keys = entries.map((e) => e.key);
  }

  /**
   * Orders `files` as Keystone does. Throws `RangeError` when there are none, or when two
   * files share an index; callers turn that into a {@link KeyRepositoryError}.
   */
  static from(files: readonly KeyFile[]): KeyRing {
    if (files.length === 0) throw new RangeError("a key ring needs at least one key");
    const sorted = [...files].sort((a, b) => b.index - a.index);
    for (let i = 1; i < sorted.length; i++) {
      if (sorted[i]?.index === sorted[i - 1]?.index) {
        throw new RangeError(`two keys share index ${sorted[i]?.index ?? "?"}`);
      }
    }
    const entries = sorted.map((f, position): KeyRingEntry => ({
      index: f.index,
      // A lone key `0` is the primary: Keystone encrypts with the first key it loads.
      role: position === 0 ? "primary" : f.index === 0 ? "staged" : "secondary",
      key: f.key,
      modifiedAtMs: f.modifiedAtMs ?? 0,
    }));
    return new KeyRing(entries);
  }

  /** The key Keystone encrypts new tokens with. */
  get primary(): KeyRingEntry {
    return this.entries[0] as KeyRingEntry;
  }

  get size(): number {
    return this.entries.length;
  }

  /** Fingerprints in order: equal rings have equal signatures. */
  get signature(): string {
    return this.entries.map((e) => `${e.index}:${e.key.fingerprint}`).join(",");
  }

  /**
   * This ring less its primary key — the ring of a region one key behind the master, which
   * encrypts with a key this region never received; the next key takes the primary's role.
   * Undefined for a ring of one key (nothing would be left). A failover drill's view
   * (drill/key-view.ts); the repository's own ring is never changed.
   */
  withoutPrimary(): KeyRing | undefined {
    const rest = this.entries.slice(1);
    if (rest.length === 0) return undefined;
    return KeyRing.from(rest.map(({ index, key, modifiedAtMs }) => ({ index, key, modifiedAtMs })));
  }

  /** The entry whose key sits at `position` in {@link keys}. */
  entryAt(position: number): KeyRingEntry | undefined {
    return this.entries[position];
  }
}

/** Where the decoder reads the current ring from; a repository swaps it on reload. */
export interface KeyRingSource {
  current(): KeyRing;
}

/** A source that always answers the same ring. */
export function staticKeyRing(ring: KeyRing): KeyRingSource {
  return { current: () => ring };
}
