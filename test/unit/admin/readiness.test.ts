import { describe, expect, it } from "vitest";

import {
  keysCheck,
  keystoneCheck,
  revocationFeedCheck,
  serviceTokenCheck,
} from "../../../src/admin/readiness.js";
import type { KeyRepositoryStatus } from "../../../src/fernet/key-repository.js";
import { fixedClock } from "../../../src/units.js";

const NOW_MS = 1_900_000_000_000;
const clock = fixedClock(NOW_MS);

function keyStatus(overrides: Partial<KeyRepositoryStatus> = {}): KeyRepositoryStatus {
  return {
    directory: "/etc/keystone/fernet-keys",
    primary_index: 4,
    key_count: 3,
    keys: [],
    loaded_at: "2030-03-17T17:46:40.000Z",
    last_reload: { result: "ok", at: "2030-03-17T17:46:40.000Z" },
    reloads: 1,
    reload_failures: 0,
    watching: "events+poll",
    ...overrides,
  };
}

describe("readiness checks", () => {
  it("keys: ready with keys; degraded, still ready, while re-reads fail", () => {
    expect(keysCheck(() => keyStatus()).check()).toEqual({ ok: true, detail: "3 keys, primary 4" });
    const failing = keysCheck(() =>
      keyStatus({
        last_reload: {
          result: "failing",
          at: "t2",
          failing_since: "t1",
          error: { code: "key_repository_empty", message: "no keys" },
        },
      }),
    ).check();
    expect(failing).toMatchObject({ ok: true, degraded: true });
    expect(failing.detail).toBe(
      "re-reads failing since t1 (key_repository_empty); keeping 3 keys, primary 4",
    );
    expect(keysCheck(() => keyStatus({ key_count: 0 })).check().ok).toBe(false);
  });

  it("keys: degraded, still ready, while the ring is known to lag the master's; not while in sync or unknown", () => {
    const since = NOW_MS - 120_000;
    const behind = keysCheck(
      () => keyStatus(),
      () => ({ kind: "behind", sinceMs: since, lastAgreedAtMs: since - 60_000 }),
    ).check();
    expect(behind).toMatchObject({ ok: true, degraded: true });
    expect(behind.detail).toBe(
      `3 keys, primary 4; behind the master since ${new Date(since).toISOString()} ` +
        `(last agreed ${new Date(since - 60_000).toISOString()}): tokens Keystone issues now ` +
        "do not decrypt here and are asked of Keystone; sync the key repository",
    );
    const never = keysCheck(
      () => keyStatus(),
      () => ({ kind: "behind", sinceMs: since }),
    ).check();
    expect(never.detail).toMatch(/never agreed since start/);
    for (const state of [
      { kind: "unknown" },
      { kind: "in_sync", sinceMs: since, agreedAtMs: NOW_MS },
    ] as const) {
      expect(
        keysCheck(
          () => keyStatus(),
          () => state,
        ).check(),
      ).toEqual({ ok: true, detail: "3 keys, primary 4" });
    }
    // Both at once: re-reads failing and behind.
    const both = keysCheck(
      () =>
        keyStatus({
          last_reload: {
            result: "failing",
            at: "t2",
            failing_since: "t1",
            error: { code: "key_repository_empty", message: "no keys" },
          },
        }),
      () => ({ kind: "behind", sinceMs: since }),
    ).check();
    expect(both).toMatchObject({ ok: true, degraded: true });
    expect(both.detail).toMatch(/^re-reads failing since t1 .*; behind the master since /);
  });

  it("service token: not ready until one was obtained", () => {
    const valid = { kind: "valid", token: "t", expiresAtMs: NOW_MS, obtainedAtMs: NOW_MS } as const;
    expect(serviceTokenCheck(() => valid).check()).toEqual({ ok: true });
    expect(serviceTokenCheck(() => ({ kind: "none", lastError: "HTTP 401" })).check()).toEqual({
      ok: false,
      detail: "HTTP 401",
    });
    expect(serviceTokenCheck(() => ({ kind: "none" })).check().detail).toBe("not yet");
  });

  it("service token: one lost after it was obtained is degraded, never not-ready", () => {
    const lost = serviceTokenCheck(
      () => ({ kind: "none", lastError: "HTTP 401", lastObtainedAtMs: NOW_MS - 90_000 }),
      clock,
    ).check();
    expect(lost).toMatchObject({ ok: true, degraded: true });
    expect(lost.detail).toMatch(/^lost \(HTTP 401\); last obtained 90 s ago/);
  });

  it("keystone: open endpoints and degraded mode are degraded, never not-ready", () => {
    const closed = { kind: "closed", failures: 0 } as const;
    const healthy = keystoneCheck(
      () => [{ label: "a:5000", state: closed }],
      () => false,
      clock,
    ).check();
    expect(healthy).toEqual({ ok: true, degraded: false, detail: "a:5000 closed" });
    const down = keystoneCheck(
      () => [
        { label: "a:5000", state: { kind: "open", sinceMs: NOW_MS - 12_000, untilMs: NOW_MS } },
        { label: "b:5000", state: { kind: "half-open" } },
      ],
      () => true,
      clock,
    ).check();
    expect(down).toEqual({
      ok: true,
      degraded: true,
      detail:
        "a:5000 open since 12 s ago; b:5000 half-open; degraded mode: no Keystone answers, known scopes served",
    });
  });

  it("revocation feed: stale is degraded, with the error and the age of the last answer", () => {
    expect(revocationFeedCheck(() => ({ kind: "starting" }), clock).check()).toEqual({
      ok: true,
      detail: "first poll under way",
    });
    expect(
      revocationFeedCheck(
        () => ({ kind: "fresh", lastSuccessMs: NOW_MS - 3_000, events: 7 }),
        clock,
      ).check(),
    ).toEqual({ ok: true, detail: "last answer 3 s ago, 7 events held" });
    expect(
      revocationFeedCheck(
        () => ({ kind: "stale", lastSuccessMs: NOW_MS - 45_000, error: "timeout", events: 7 }),
        clock,
      ).check(),
    ).toEqual({ ok: true, degraded: true, detail: "stale: timeout; last answer 45 s ago" });
    expect(
      revocationFeedCheck(
        () => ({ kind: "stale", lastSuccessMs: undefined, error: "HTTP 503", events: 0 }),
        clock,
      ).check().detail,
    ).toBe("stale: HTTP 503; no answer yet");
  });
});
