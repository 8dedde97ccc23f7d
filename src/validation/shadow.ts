/**
 * Shadow validation: trust, but verify — a sampled fraction of the verdicts the edge
 * reached without Keystone is asked again of the master, in the background.
 *
 * Owns: which verdicts are sampled, the budget of the master calls they cost, and the
 * comparison. A verdict of the in-process cache, a context, memcached, local decryption
 * (refused: forged, expired), a remembered refusal or the revocation list may be sampled
 * (`sampleRatio`); one Keystone settled, a degraded-mode answer, a `malformed` token or an
 * unavailable verdict never is. A sampled verdict is skipped, and counted so, when the
 * master is out of rotation or the region in degraded mode, when the rate ceiling
 * (`maxPerSecond`) or the calls in flight (`maxInFlight`) are spent, or when the master
 * does not answer. Otherwise the master's answer is compared with the edge's: status
 * (valid or not), user, project, domain and system scope, roles, expiry and methods.
 *
 * A difference is not called a disagreement at once: a token revoked at the master a
 * moment ago, or expired between the two looks, is refused by the edge within its
 * revocation poll interval, as designed. The edge is asked again (`recheck`, its own
 * verdict now, not sampled again) `confirmAfterMs` later; still different, it is a
 * disagreement — counted and logged as one line with the token's short hash, both
 * verdicts and the differing fields, never the token. Converged, it counts as agreement
 * (logged at info, with how it converged).
 *
 * Nothing here runs on the request path but {@link ShadowValidation.offer}: a ratio test
 * and, one time in `1 / sampleRatio`, a background task.
 */
import { silentLogger, tokenHash, type Logger } from "../log.js";
import type { KeystoneVerdict } from "../keystone/validate.js";
import type { KeystoneToken } from "../token/body.js";
import {
  DEFAULT_SHADOW_MAX_IN_FLIGHT,
  DEFAULT_SHADOW_MAX_PER_SECOND,
  DEFAULT_SHADOW_SAMPLE_RATIO,
} from "../config/defaults.js";
import { FallbackBudget } from "./fallback-budget.js";
import type { Verdict } from "./pipeline.js";

/** Default most differences waiting for their second look at once. */
export const DEFAULT_SHADOW_MAX_PENDING = 256;

/** The tier whose verdict was sampled: the `tier` label. */
export type ShadowTier =
  "l1" | "context" | "memcached" | "local_reject" | "negative" | "revocation";

/** How one sampled verdict ended: the `outcome` label. */
export type ShadowOutcome = "agree" | "disagree" | "skipped";

/** Why a sampled verdict was not compared: the `reason` label of skips. */
export type ShadowSkipReason =
  "master_degraded" | "rate" | "busy" | "master_unavailable" | "pending_full" | "edge_unavailable";

/** One field on which the edge and the master differ, as both see it. */
export interface ShadowDifference {
  readonly field:
    "status" | "user" | "project" | "domain" | "system" | "roles" | "expires_at" | "methods";
  readonly edge: string;
  readonly master: string;
}

/** Options of {@link ShadowValidation}. */
export interface ShadowValidationOptions {
  /** Asks the master alone (not the region's endpoints), without the catalog. */
  readonly master: { validate(token: string): Promise<KeystoneVerdict> };
  /**
   * Whether the master may be asked now: false while its breaker is not closed or the
   * region is in degraded mode (then sampled verdicts are skipped).
   */
  readonly masterHealthy: () => boolean;
  /** The edge's own verdict for a token now (not offered for sampling again). */
  readonly recheck: (token: string) => Promise<Verdict>;
  /** Fraction of eligible verdicts sampled, 0–1. Default {@link DEFAULT_SHADOW_SAMPLE_RATIO}. */
  readonly sampleRatio?: number;
  /** Shadow validations started per second at most. Default {@link DEFAULT_SHADOW_MAX_PER_SECOND}. */
  readonly maxPerSecond?: number;
  /** Shadow validations waiting for the master at once, at most. Default {@link DEFAULT_SHADOW_MAX_IN_FLIGHT}. */
  readonly maxInFlight?: number;
  /** Wait before the edge is asked again about a difference, ms. Default 20 000. */
  readonly confirmAfterMs?: number;
  /** Differences awaiting their second look at most. Default {@link DEFAULT_SHADOW_MAX_PENDING}. */
  readonly maxPending?: number;
  /** Default `Math.random`. */
  readonly random?: () => number;
  /** Receives every sampled verdict's end. Must not throw. */
  readonly onOutcome?: (outcome: ShadowOutcome, tier: ShadowTier, skip?: ShadowSkipReason) => void;
  readonly logger?: Logger;
}

/** The tier of a verdict the edge reached without Keystone, or undefined (never sampled). */
export function shadowTier(verdict: Verdict): ShadowTier | undefined {
  if (verdict.kind === "valid") {
    return verdict.source === "keystone" || verdict.source === "degraded"
      ? undefined
      : verdict.source;
  }
  if (verdict.kind === "invalid") {
    if (verdict.source === "keystone") return undefined;
    // Garbage is garbage to Keystone too: not worth a master call.
    if (verdict.source === "local_reject" && verdict.code === "malformed") return undefined;
    return verdict.source;
  }
  return undefined;
}

function scopeOf(token: KeystoneToken): { project: string; domain: string; system: string } {
  return {
    project: token.project?.id ?? "",
    domain: token.domain?.id ?? "",
    system: token.system === undefined ? "" : token.system.all === true ? "all" : "other",
  };
}

function names(list: readonly { readonly name: string }[] | readonly string[] | undefined): string {
  return (list ?? [])
    .map((r) => (typeof r === "string" ? r : r.name))
    .sort()
    .join(",");
}

/** Expiry to the second (Keystone renders microseconds, the token holds whole seconds). */
function expirySeconds(expiresAt: string): string {
  const ms = Date.parse(expiresAt);
  return Number.isFinite(ms) ? new Date(Math.floor(ms / 1000) * 1000).toISOString() : expiresAt;
}

function statusOf(verdict: Verdict): string {
  return verdict.kind === "invalid" ? `invalid (${verdict.code})` : verdict.kind;
}

/**
 * The fields on which the edge's verdict and the master's answer differ; empty when they
 * agree. The master's `unavailable` is not an answer: never compare it.
 */
export function differences(
  edge: Verdict,
  master: Exclude<KeystoneVerdict, { kind: "unavailable" }>,
): ShadowDifference[] {
  if (edge.kind === "unavailable") return [];
  if (edge.kind !== master.kind) {
    return [{ field: "status", edge: statusOf(edge), master: master.kind }];
  }
  if (edge.kind !== "valid" || master.kind !== "valid") return [];
  const a = edge.token;
  const b = master.token;
  const sa = scopeOf(a);
  const sb = scopeOf(b);
  const pairs: [ShadowDifference["field"], string, string][] = [
    ["user", a.user.id, b.user.id],
    ["project", sa.project, sb.project],
    ["domain", sa.domain, sb.domain],
    ["system", sa.system, sb.system],
    ["roles", names(a.roles), names(b.roles)],
    ["expires_at", expirySeconds(a.expires_at), expirySeconds(b.expires_at)],
    ["methods", names(a.methods), names(b.methods)],
  ];
  return pairs
    .filter(([, x, y]) => x !== y)
    .map(([field, x, y]) => ({ field, edge: x, master: y }));
}

/** What the edge said, for a log line: status, tier and (valid) who and what scope. */
function summary(verdict: Verdict): Record<string, string> {
  if (verdict.kind === "valid") {
    const s = scopeOf(verdict.token);
    return {
      status: "valid",
      tier: verdict.source,
      user: verdict.token.user.id,
      ...(s.project === "" ? {} : { project: s.project }),
      ...(s.domain === "" ? {} : { domain: s.domain }),
      ...(s.system === "" ? {} : { system: s.system }),
    };
  }
  if (verdict.kind === "invalid")
    return { status: "invalid", tier: verdict.source, reason: verdict.code };
  return { status: "unavailable", reason: verdict.reason };
}

/** How a sampled verdict ended. */
interface End {
  readonly outcome: ShadowOutcome;
  readonly skip?: ShadowSkipReason;
}

function skipped(skip: ShadowSkipReason): End {
  return { outcome: "skipped", skip };
}

export class ShadowValidation {
  private readonly sampleRatio: number;
  private readonly maxInFlight: number;
  private readonly maxPending: number;
  private readonly confirmAfterMs: number;
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly budget: FallbackBudget;
  private inFlight = 0;
  private readonly timers = new Set<NodeJS.Timeout>();
  private stopped = false;

  constructor(private readonly options: ShadowValidationOptions) {
    const ratio = options.sampleRatio ?? DEFAULT_SHADOW_SAMPLE_RATIO;
    if (!(ratio >= 0 && ratio <= 1)) throw new RangeError("sampleRatio must be within 0–1");
    this.sampleRatio = ratio;
    const perSecond = options.maxPerSecond ?? DEFAULT_SHADOW_MAX_PER_SECOND;
    // A bucket of one second's worth: a burst of samples cannot spend a minute's budget.
    this.budget = new FallbackBudget({ perSecond, burst: Math.max(1, perSecond) });
    this.maxInFlight = options.maxInFlight ?? DEFAULT_SHADOW_MAX_IN_FLIGHT;
    this.maxPending = options.maxPending ?? DEFAULT_SHADOW_MAX_PENDING;
    this.confirmAfterMs = options.confirmAfterMs ?? 20_000;
    this.random = options.random ?? Math.random;
    this.logger = options.logger ?? silentLogger;
  }

  /** Differences waiting for their second look now. */
  get pending(): number {
    return this.timers.size;
  }

  /** Shadow validations waiting for the master now. */
  get active(): number {
    return this.inFlight;
  }

  /**
   * One verdict of the request path (synchronous, cheap): sampled at `sampleRatio` when
   * the edge reached it without Keystone; a sampled one is checked in the background.
   */
  offer(token: string, verdict: Verdict): void {
    if (this.sampleRatio === 0 || this.stopped) return;
    if (this.sampleRatio < 1 && this.random() >= this.sampleRatio) return;
    const tier = shadowTier(verdict);
    if (tier === undefined) return;
    void this.check(token, verdict, tier).catch((error: unknown) => {
      this.logger.error("shadow validation failed", { error: String(error) });
    });
  }

  /** No more samples; differences awaiting their second look are dropped. */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  private report(outcome: ShadowOutcome, tier: ShadowTier, skip?: ShadowSkipReason): void {
    try {
      this.options.onOutcome?.(outcome, tier, skip);
    } catch (error) {
      this.logger.error("shadow onOutcome hook threw", { error: String(error) });
    }
  }

  private async check(token: string, edge: Verdict, tier: ShadowTier): Promise<void> {
    const end = await this.compare(token, edge, tier);
    if (end !== undefined) this.report(end.outcome, tier, end.skip);
  }

  /**
   * Asks the master and compares; a difference is scheduled for its second look (and ends
   * there). How the sampled verdict ended, or undefined when it ends later (or not at all:
   * stopped).
   */
  private async compare(token: string, edge: Verdict, tier: ShadowTier): Promise<End | undefined> {
    if (!this.options.masterHealthy()) return skipped("master_degraded");
    if (this.inFlight >= this.maxInFlight) return skipped("busy");
    if (!this.budget.take()) return skipped("rate");
    this.inFlight++;
    let master: KeystoneVerdict;
    try {
      master = await this.options.master.validate(token);
    } finally {
      this.inFlight--;
    }
    if (master.kind === "unavailable") return skipped("master_unavailable");
    const first = differences(edge, master);
    if (first.length === 0) return { outcome: "agree" };
    if (this.stopped) return undefined;
    if (this.timers.size >= this.maxPending) return skipped("pending_full");
    // A second look, once the edge has had the time its design gives it to converge.
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      void this.confirm(token, edge, master, first)
        .then((end) => {
          if (end !== undefined) this.report(end.outcome, tier, end.skip);
        })
        .catch((error: unknown) => {
          this.logger.error("shadow validation failed", { error: String(error) });
        });
    }, this.confirmAfterMs);
    timer.unref();
    this.timers.add(timer);
    return undefined;
  }

  private async confirm(
    token: string,
    edge: Verdict,
    master: Exclude<KeystoneVerdict, { kind: "unavailable" }>,
    first: readonly ShadowDifference[],
  ): Promise<End | undefined> {
    if (this.stopped) return undefined;
    const now = await this.options.recheck(token);
    // No verdict of the edge's to compare (it cannot reach a tier it needs now): no evidence.
    if (now.kind === "unavailable") return skipped("edge_unavailable");
    const tier = shadowTier(edge);
    const still = differences(now, master);
    const fields = {
      token: tokenHash(token),
      tier,
      edge: summary(edge),
      edge_now: summary(now),
      master:
        master.kind === "valid"
          ? { status: "valid", endpoint: master.endpoint }
          : { status: "invalid", endpoint: master.endpoint },
    };
    if (still.length === 0) {
      this.logger.info("shadow validation: the edge converged on the master's answer", {
        ...fields,
        differences: first,
        after_ms: this.confirmAfterMs,
      });
      return { outcome: "agree" };
    }
    this.logger.error("shadow validation: the edge disagrees with the master", {
      ...fields,
      differences: still,
      after_ms: this.confirmAfterMs,
    });
    return { outcome: "disagree" };
  }
}
