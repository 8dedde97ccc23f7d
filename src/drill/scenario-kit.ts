/**
 * What every drill scenario shares: the options of a run, a check and an outcome, polling
 * `/status`, driving validations, and the checks and readings more than one scenario makes.
 */
import { setTimeout as sleep } from "node:timers/promises";

import { DrillError } from "../errors.js";
import { type AdminClient } from "./admin-client.js";
import type {
  DrillDescription,
  DrillScenario,
  EdgeStatus,
  MemcachedStatus,
  ValidationAnswer,
} from "../protocol/admin.js";
import { drive, Tally, type Shot } from "./traffic.js";

/** One judged property of the region. */
export interface Check {
  readonly name: string;
  readonly passed: boolean;
  readonly detail: string;
}

/** What a drill is run with. */
export interface DrillOptions {
  readonly client: AdminClient;
  readonly scenario: DrillScenario;
  /** How long the fault is injected (and traffic driven), ms. */
  readonly durationMs: number;
  /** Tokens to drive traffic with (`--token-file`). */
  readonly tokens: readonly string[];
  /** Validations in flight at once. Default 4. */
  readonly concurrency?: number;
  /** `master-outage`: the endpoint to blackhole. Default the first configured. */
  readonly endpoint?: string;
  /** `revocation`: the token the drill revokes (with itself) at `keystoneUrl` (Identity v3). */
  readonly revoke?: { readonly token: string; readonly keystoneUrl: string };
  /** `master-outage`: longest acceptable time until the endpoint leaves rotation, ms. Default 30 000. */
  readonly maxFailoverMs?: number;
  /** `key-lag`: longest acceptable time until the edge knows its ring is behind, ms. Default 15 000. */
  readonly maxDetectionMs?: number;
  /**
   * `key-lag`: validations per second of tokens as just issued (each a Keystone fallback
   * while the ring is behind). Keep it under `fernet.lag_fallback_per_second` with room
   * for the region's own new tokens. Default 2.
   */
  readonly freshPerSecond?: number;
  /** Longest wait for the region to recover after the release, ms. Default 30 000. */
  readonly recoveryTimeoutMs?: number;
  /** Aborts the run (SIGINT): faults are released and the report says `interrupted`. */
  readonly signal: AbortSignal;
  /** Progress lines for people (stderr). */
  readonly progress?: (line: string) => void;
}

export const WATCH_INTERVAL_MS = 200;

export const isValid = (a: ValidationAnswer): boolean => a.result === "valid";

export const seconds = (ms: number): number => Math.round(ms / 100) / 10;

export interface Context {
  readonly drill: DrillDescription;
  readonly known: readonly string[];
  readonly before: EdgeStatus;
  readonly t0: number;
}

export type Outcome = { checks: Check[]; figures: Record<string, unknown> };

/** Polls `/status` every 200 ms until `untilMs` or an abort. */
export async function watch(
  options: DrillOptions,
  untilMs: number,
  onStatus: (status: EdgeStatus, atMs: number) => void,
): Promise<void> {
  while (performance.now() < untilMs && !options.signal.aborted) {
    onStatus(await options.client.status(), performance.now());
    await sleep(WATCH_INTERVAL_MS);
  }
}

/** The scenario's traffic: `--concurrency` loops until `untilMs` or Ctrl-C. */
export function driveFor(
  options: DrillOptions,
  untilMs: number,
  plan: { readonly next: (i: number) => Shot } & Partial<{ readonly concurrency: number }>,
): Promise<void> {
  return drive({
    client: options.client,
    concurrency: plan.concurrency ?? options.concurrency ?? 4,
    untilMs,
    signal: options.signal,
    next: plan.next,
  });
}

export function noFailures(tally: Tally, name: string): Check {
  return {
    name,
    passed: tally.total > 0 && tally.unexpected === 0,
    detail:
      tally.total === 0
        ? "no validation was made"
        : tally.unexpected === 0
          ? `${String(tally.total)} validations, none failed (p99 ${String(tally.quantileMs(0.99))} ms)`
          : `${String(tally.unexpected)} of ${String(tally.total)} failed: ${tally.samples.join("; ")}`,
  };
}

export function pick(tokens: readonly string[], i: number): string {
  return tokens[i % tokens.length] ?? "";
}

/** memcached's part of `/status`; an edge without one cannot run a memcached drill. */
export function memcachedOf(status: EdgeStatus): MemcachedStatus {
  if (status.memcached === undefined || status.memcached === null) {
    throw new DrillError(
      "admin_refused",
      "/status shows no memcached: none is configured, or this edge predates the memcached part of /status",
    );
  }
  return status.memcached;
}

/** The key lag fallbacks by result and the budget refusals, as `/status` counts them. */
export async function fallbackCounts(client: AdminClient): Promise<Record<string, number>> {
  const fallbacks = (await client.status()).keys.lag?.fallbacks;
  if (fallbacks === undefined) {
    throw new DrillError(
      "admin_refused",
      "/status has no key lag fallbacks: this edge predates the key-lag drill",
    );
  }
  return { ...fallbacks };
}
