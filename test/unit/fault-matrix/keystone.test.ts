/**
 * The fault matrix, Keystone's side (docs/security.md, "Fault matrix"), for the faults a
 * real Keystone cannot be made to produce on demand: an endpoint flapping up and down many
 * times a second, and Keystone refusing the edge's own service token and credentials —
 * through a whole in-process edge (region.ts) in front of a fake Keystone. Keystone slow
 * and down run against the real one (test/integration/fault-matrix.test.ts, degraded,
 * failover).
 */
import { afterEach, describe, expect, it } from "vitest";
import { startEchoUpstream, type EchoUpstream } from "../../harness/echo-upstream.js";
import { waitUntil } from "../helpers.js";
import { startRegion, type Region } from "./region.js";

let region: Region | undefined;
let echo: EchoUpstream | undefined;

afterEach(async () => {
  await region?.close();
  await echo?.stop();
  region = undefined;
  echo = undefined;
});

async function start(keystone: Record<string, unknown> = {}): Promise<Region> {
  echo = await startEchoUpstream();
  // Contexts off: every new token must be put to Keystone.
  region = await startRegion({
    upstream: echo.url,
    keystone,
    cache: { context_cache_time: 0 },
  });
  return region;
}

describe("fault matrix: Keystone refuses the edge's service token (401)", () => {
  it("re-authenticates once, answers 503 for what it cannot settle, caches no verdict, leaks no token, and recovers", async () => {
    const r = await start();
    const known = r.mint(1, 1);
    expect((await r.request(known)).status).toBe(200);

    // The service user's password changed: its token is dead, its credentials refused.
    r.keystone.revokeServiceTokens();
    r.keystone.credentials = "refused";
    const authenticationsBefore = r.keystone.counts.authentications;
    const fresh = r.mint(2, 2);
    const refused = await r.request(fresh);
    expect(refused.status).toBe(503);
    expect(refused.retryAfter).not.toBeNull();
    expect(r.keystone.counts.unauthorized).toBe(1);
    expect(r.keystone.counts.authentications - authenticationsBefore).toBe(1); // once

    // What the edge settled before stands; what it cannot settle is 503, never 401.
    expect((await r.request(known)).status).toBe(200);
    const others = Array.from({ length: 20 }, (_, i) => r.mint(10 + i, 10 + i));
    for (const token of others) {
      const answer = await r.request(token);
      expect(answer.status).toBe(503);
      expect(answer.ms).toBeLessThan(500);
    }
    expect((await r.request(r.forged())).status).toBe(401); // refused locally, as ever
    // No login attempt per request: a locked-out service user would take the region down.
    expect(r.keystone.counts.authentications - authenticationsBefore).toBeLessThanOrEqual(3);
    expect(
      await r.metric("keystone_edge_validations_total", {
        source: "keystone",
        result: "unavailable",
      }),
    ).toBeGreaterThanOrEqual(21);

    const warnings = r.logger.at("warn").filter((l) => l.message.includes("service token"));
    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(JSON.stringify(warnings)).toContain("HTTP 401");
    const logged = r.logger.text();
    for (const secret of [known, fresh, ...others, "service-user-password", "svc-1"]) {
      expect(logged).not.toContain(secret);
    }
    // A token lost after one was obtained: still ready (known tokens are served), degraded.
    const ready = await r.readyz();
    const check = ready.checks.find((c) => c.name === "service_token");
    expect(check).toMatchObject({ ok: true, degraded: true });
    expect(check?.detail).toMatch(/HTTP 401/);
    expect(ready).toMatchObject({ ready: true, degraded: true });

    // Credentials fixed: the background retry gets a token; the refused token was not
    // remembered as invalid.
    r.keystone.credentials = "accepted";
    await waitUntil(
      () => r.edge.serviceToken.snapshot().kind === "valid",
      15_000,
      "a new service token",
    );
    expect((await r.request(fresh)).status).toBe(200);
    for (const token of others.slice(0, 3)) expect((await r.request(token)).status).toBe(200);
    expect((await r.readyz()).checks.find((c) => c.name === "service_token")?.ok).toBe(true);
  });
});

describe("fault matrix: Keystone flapping", () => {
  it("up and down every ~100 ms, 20 times, under load: no wrong verdict, breakers open and close, all well after", async () => {
    const r = await start({
      timeout_ms: 300,
      request_timeout_ms: 600,
      failure_threshold: 1,
      open_duration_ms: 50,
      probe_interval_ms: 50,
    });
    const known = r.mint(1, 1);
    expect((await r.request(known)).status).toBe(200);
    const revoked = r.mint(3, 3);
    r.keystone.revoke(revoked);

    const run = { flapping: true };
    let flips = 0;
    const flapper = (async () => {
      while (run.flapping) {
        await new Promise((res) => setTimeout(res, 60 + Math.random() * 80));
        if (r.keystone.running) await r.keystone.stop();
        else await r.keystone.start();
        flips++;
      }
      await r.keystone.start();
    })();

    const wrong: string[] = [];
    const statuses = { fresh: new Map<number, number>(), revoked: new Map<number, number>() };
    const tally = (m: Map<number, number>, s: number): void => {
      m.set(s, (m.get(s) ?? 0) + 1);
    };
    const worker = async (n: number): Promise<void> => {
      for (let i = 0; flips < 20; i++) {
        const kind = (n + i) % 4;
        if (kind === 0) {
          const s = (await r.request(r.mint(100 + n, 100 + i))).status; // valid, new
          tally(statuses.fresh, s);
          if (s !== 200 && s !== 503) wrong.push(`fresh valid token: ${String(s)}`);
        } else if (kind === 1) {
          const s = (await r.request(revoked)).status; // Keystone says 404
          tally(statuses.revoked, s);
          if (s !== 401 && s !== 503) wrong.push(`revoked token: ${String(s)}`);
        } else if (kind === 2) {
          const s = (await r.request(r.forged())).status;
          if (s !== 401) wrong.push(`forged token: ${String(s)}`);
        } else {
          const s = (await r.request(known)).status;
          if (s !== 200) wrong.push(`known token: ${String(s)}`);
        }
      }
    };
    try {
      await Promise.all([0, 1, 2, 3].map(worker));
    } finally {
      run.flapping = false;
      await flapper;
    }
    expect(wrong).toEqual([]);
    expect(flips).toBeGreaterThanOrEqual(20);
    // The flapping did bite: some new tokens were settled, some could not be.
    expect(statuses.fresh.get(200) ?? 0).toBeGreaterThan(0);
    expect(statuses.fresh.get(503) ?? 0).toBeGreaterThan(0);
    const lost = r.logger.lines.filter((l) => l.message.includes("taken out of rotation"));
    const back = r.logger.lines.filter((l) => l.message.includes("back in rotation"));
    expect(lost.length).toBeGreaterThanOrEqual(2);
    expect(back.length).toBeGreaterThanOrEqual(1);

    // Up for good: the probe closes the breaker and everything is answered again.
    await waitUntil(
      async () => (await r.request(r.mint(200, 200))).status === 200,
      5_000,
      "a new token to be answered again",
    );
    expect(await r.metric("keystone_edge_keystone_breaker_state", { state: "closed" })).toBe(1);
    expect((await r.request(revoked)).status).toBe(401);
    expect((await r.readyz()).ready).toBe(true);
  });
});
