/**
 * The revocation events known so far: what the feed fills and the request path asks.
 *
 * Owns: applying polls, pruning, the cap, and the verdict per token (matching.ts's rules,
 * looked up through event-index.ts). Costs (hostile input: the list may hold a million
 * events, on the loop serving the region):
 * - applying a poll is incremental: each new event is one map insert, one index insert and
 *   one heap push; nothing is rebuilt. Events with the same fields (a user disabled twice,
 *   Keystone's second-truncated duplicates) are held once, with the latest times: an event
 *   revokes a superset of what an earlier one with the same fields revokes.
 * - a token's check reads only the events filed under one of its own values; the verdict
 *   is remembered per token object until the list changes (`generation`): a cache hit costs
 *   one WeakMap read.
 * - pruning by age and dropping at the cap pop the oldest events off a heap: O(k log n) for
 *   the k removed.
 */
import type { KeystoneToken } from "../token/body.js";
import { MinHeap } from "../min-heap.js";
import { tokenValues, type RevocationEvent } from "./event.js";
import {
  anyFiled,
  compact,
  contextFiling,
  CONTEXT_KINDS,
  file,
  Held,
  keyOf,
  newIndex,
  shapeOf,
  tokenFiling,
  TOKEN_KINDS,
  type Bucket,
  type FieldKind,
  type Index,
} from "./event-index.js";
import { CONTEXT_CHANGE_MARGIN_MS, matches } from "./matching.js";

/**
 * Whether events were ever dropped at the cap, and the newest times among them: a token
 * issued at or before `issuedBeforeMicros` may have been revoked by one, so it is treated as
 * revoked (see {@link RevocationList.capAt}).
 */
export type OverflowState =
  | { readonly kind: "within_cap" }
  | {
      readonly kind: "overflowed";
      /** Events dropped since the list last was within its cap. */
      readonly droppedEvents: number;
      /** The latest `issued_before` dropped, epoch µs. */
      readonly issuedBeforeMicros: number;
      /** The latest `revoked_at` dropped, epoch µs. */
      readonly revokedAtMicros: number;
    };

const WITHIN_CAP: OverflowState = Object.freeze({ kind: "within_cap" });

/** The events known so far, indexed, with a memo of verdicts per token object. */
export class RevocationList {
  private generationCount = 0;
  /** Every held event by its fields (duplicates and repeats fold into one). */
  private readonly shapes = new Map<string, Held>();
  /** Every held event, filed once under its most selective field. */
  private readonly byToken = newIndex();
  /** Events bearing on contexts whose token filing a context does not look up. */
  private readonly byContext = newIndex();
  /** Events that set no field (Keystone writes none): they revoke every older token. */
  private unfiled: Held[] = [];
  /** Oldest `issued_before` first (keys as pushed; a held event's may since have grown). */
  private readonly oldest = new MinHeap<Held>();
  private latestRevokedAt: number | undefined;
  /** Events issued before this were pruned: a late copy of one is not taken back. */
  private prunedBeforeMicros = -Infinity;
  private overflowState: OverflowState = WITHIN_CAP;
  /** `generation * 2 + revoked`, per token object: no allocation per verdict. */
  private readonly memo = new WeakMap<KeystoneToken, number>();

  /** Changes whenever the verdicts may have: an event added, pruned or dropped. */
  get generation(): number {
    return this.generationCount;
  }

  /** Events held (events with the same fields count once). */
  get size(): number {
    return this.shapes.size;
  }

  /** Whether events were dropped at the cap (and which tokens are refused for it). */
  overflow(): OverflowState {
    return this.overflowState;
  }

  /**
   * The latest `revoked_at` ever added, epoch µs (the feed's next `since`); undefined
   * before any. Pruning does not lower it: what came before was fetched already.
   */
  latestRevokedAtMicros(): number | undefined {
    return this.latestRevokedAt;
  }

  /**
   * Applies `events`: each is one insert, nothing is rebuilt. Returns those that changed
   * something (new fields, or later times for fields held); duplicates and events older
   * than the last prune are ignored. `local`: events the edge made itself (a token revoked
   * through its Identity face, ahead of Keystone's own event): their `revoked_at` is the
   * edge's clock, not Keystone's, so it does not move where the feed asks from.
   */
  add(events: readonly RevocationEvent[], { local = false } = {}): RevocationEvent[] {
    const added: RevocationEvent[] = [];
    for (const e of events) {
      if (!(e.issuedBeforeMicros >= this.prunedBeforeMicros)) continue;
      if (
        !local &&
        (this.latestRevokedAt === undefined || e.revokedAtMicros > this.latestRevokedAt)
      ) {
        this.latestRevokedAt = e.revokedAtMicros;
      }
      const shape = shapeOf(e);
      const held = this.shapes.get(shape);
      if (held !== undefined) {
        // Same fields: the later issued_before revokes every token the earlier did. The
        // heap keeps the old key; pruning and the cap re-key it when they reach it.
        let changed = false;
        if (e.issuedBeforeMicros > held.issuedBeforeMicros) {
          held.issuedBeforeMicros = e.issuedBeforeMicros;
          changed = true;
        }
        if (e.revokedAtMicros > held.revokedAtMicros) {
          held.revokedAtMicros = e.revokedAtMicros;
          changed = true;
        }
        if (changed) added.push(e);
        continue;
      }
      const fresh = new Held(e);
      this.shapes.set(shape, fresh);
      const kind = tokenFiling(fresh);
      const key = kind === undefined ? undefined : keyOf(fresh, kind);
      if (kind === undefined || key === undefined) this.unfiled.push(fresh);
      else file(this.byToken[kind], key, fresh);
      const contextKind = contextFiling(fresh);
      const contextKey = contextKind === undefined ? undefined : keyOf(fresh, contextKind);
      if (contextKind !== undefined && contextKey !== undefined) {
        file(this.byContext[contextKind], contextKey, fresh);
      }
      this.oldest.push(fresh.issuedBeforeMicros, fresh);
      added.push(e);
    }
    if (added.length > 0) this.generationCount++;
    return added;
  }

  /**
   * Drops events issued before `cutoffMicros` (no token they could revoke is still alive:
   * see revocation/retention); returns how many. O(k log n) for the k dropped.
   */
  prune(cutoffMicros: number): number {
    if (cutoffMicros > this.prunedBeforeMicros) this.prunedBeforeMicros = cutoffMicros;
    const gone: Held[] = [];
    for (;;) {
      const key = this.oldest.peekKey();
      if (key === undefined || !(key < cutoffMicros)) break;
      const held = this.oldest.pop() as Held;
      if (held.issuedBeforeMicros >= cutoffMicros) this.oldest.push(held.issuedBeforeMicros, held);
      else gone.push(held);
    }
    this.remove(gone);
    let changed = gone.length > 0;
    const overflow = this.overflowState;
    if (overflow.kind === "overflowed" && overflow.issuedBeforeMicros < cutoffMicros) {
      // every token the dropped events could have revoked is past retention too
      this.overflowState = WITHIN_CAP;
      changed = true;
    }
    if (changed) this.generationCount++;
    return gone.length;
  }

  /**
   * Holds at most `maxEvents`, dropping the oldest beyond it; returns how many were dropped.
   *
   * Dropping an event would un-revoke the tokens it revokes, so the list fails closed
   * instead: every token issued at or before the latest `issued_before` dropped is treated
   * as revoked (and every context learnt before the latest `revoked_at` dropped as
   * superseded), until pruning passes that time. Keeping every event instead would let a
   * flood of revocations (any user can revoke their own tokens, one event each) grow the
   * heap until the process dies, taking the region's validation with it; dropping
   * silently would let a revoked token back in. Failing closed touches only the oldest
   * tokens: with the default cap of a million events, a flood must outpace ~280 events/s
   * for an hour before a token of the usual hour's lifetime is refused (the caller logs
   * and counts every drop: alert on it).
   */
  capAt(maxEvents: number): number {
    const gone: Held[] = [];
    let issuedBefore = -Infinity;
    let revokedAt = -Infinity;
    while (this.shapes.size - gone.length > maxEvents) {
      const key = this.oldest.peekKey();
      if (key === undefined) break;
      const held = this.oldest.pop() as Held;
      if (held.issuedBeforeMicros > key) {
        this.oldest.push(held.issuedBeforeMicros, held); // grew since pushed: not the oldest
        continue;
      }
      gone.push(held);
      issuedBefore = Math.max(issuedBefore, held.issuedBeforeMicros);
      revokedAt = Math.max(revokedAt, held.revokedAtMicros);
    }
    if (gone.length === 0) return 0;
    this.remove(gone);
    const before = this.overflowState;
    this.overflowState =
      before.kind === "overflowed"
        ? {
            kind: "overflowed",
            droppedEvents: before.droppedEvents + gone.length,
            issuedBeforeMicros: Math.max(before.issuedBeforeMicros, issuedBefore),
            revokedAtMicros: Math.max(before.revokedAtMicros, revokedAt),
          }
        : {
            kind: "overflowed",
            droppedEvents: gone.length,
            issuedBeforeMicros: issuedBefore,
            revokedAtMicros: revokedAt,
          };
    this.generationCount++;
    return gone.length;
  }

  /** Whether any held event revokes `token`; remembered per token object until the list changes. */
  isRevoked(token: KeystoneToken): boolean {
    if (this.shapes.size === 0 && this.overflowState.kind === "within_cap") return false;
    const base = this.generationCount * 2;
    const m = this.memo.get(token);
    if (m === base) return false;
    if (m === base + 1) return true;
    const revoked = this.check(token);
    this.memo.set(token, base + (revoked ? 1 : 0));
    return revoked;
  }

  /**
   * Whether a held event bears on `context` (matching.ts's `concernsContext`) and was revoked
   * at or after `learntAtMs` − {@link CONTEXT_CHANGE_MARGIN_MS}: Keystone's answer the
   * context was learnt from may predate the change (a role removed, a user disabled), so it
   * must not answer new tokens. Checked when a context is stored and when one comes back
   * from memcached (another node may have learnt it before the change); contexts already
   * held in-process are purged when the event arrives.
   */
  supersedes(context: KeystoneToken, learntAtMs: number): boolean {
    const overflow = this.overflowState;
    if (this.shapes.size === 0 && overflow.kind === "within_cap") return false;
    const sinceMicros = (learntAtMs - CONTEXT_CHANGE_MARGIN_MS) * 1000;
    if (overflow.kind === "overflowed" && overflow.revokedAtMicros >= sinceMicros) return true;
    const values = tokenValues(context);
    // audit-, chain- and expiry-filed events bearing on contexts are in byContext too
    for (const kind of CONTEXT_KINDS) {
      if (anyFiled(this.byToken, kind, values, sinceMicros)) return true;
      if (anyFiled(this.byContext, kind, values, sinceMicros)) return true;
    }
    return false;
  }

  /** Whether a held event revokes `token`, or it is older than an event dropped at the cap (no memo). */
  check(token: KeystoneToken): boolean {
    const values = tokenValues(token);
    const overflow = this.overflowState;
    if (overflow.kind === "overflowed" && values.issuedAtMicros <= overflow.issuedBeforeMicros) {
      return true;
    }
    for (const kind of TOKEN_KINDS)
      if (anyFiled(this.byToken, kind, values, undefined)) return true;
    for (const held of this.unfiled) if (matches(held, values)) return true;
    return false;
  }

  /** Forgets `gone` (already off the heap): its fields' entry and its index buckets. */
  private remove(gone: readonly Held[]): void {
    if (gone.length === 0) return;
    // each bucket touched is compacted once, however many of its events went
    const touched = new Map<Map<string | number, Bucket>, Set<string | number>>();
    const touch = (index: Index, kind: FieldKind | undefined, held: Held): void => {
      const key = kind === undefined ? undefined : keyOf(held, kind);
      if (kind === undefined || key === undefined) return;
      const map = index[kind];
      const keys = touched.get(map);
      if (keys === undefined) touched.set(map, new Set([key]));
      else keys.add(key);
    };
    let unfiled = false;
    for (const held of gone) {
      held.removed = true;
      this.shapes.delete(shapeOf(held));
      const kind = tokenFiling(held);
      if (kind === undefined) unfiled = true;
      touch(this.byToken, kind, held);
      touch(this.byContext, contextFiling(held), held);
    }
    for (const [map, keys] of touched) for (const key of keys) compact(map, key);
    if (unfiled) this.unfiled = this.unfiled.filter((h) => !h.removed);
  }
}
