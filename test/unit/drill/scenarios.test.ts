/**
 * The drills' verdicts against a fake edge: each check passes when the region behaves and
 * fails when it does not (the integration suite runs them against the real thing).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import type { EdgeStatus } from "../../../src/protocol/admin.js";
import type { AdminClient } from "../../../src/drill/admin-client.js";
import type { DrillDescription, ValidationAnswer } from "../../../src/protocol/admin.js";
import type { DrillScenario } from "../../../src/protocol/admin.js";
import { runDrill, type DrillReport } from "../../../src/drill/scenarios.js";
import type { DrillTier } from "../../../src/protocol/admin.js";
import { DrillError } from "../../../src/errors.js";

type Breaker = "closed" | "open" | "half-open";

/** A fake edge: breakers and answers as the test says, drill state as the admin API keeps it. */
class FakeEdge {
  breakers: Record<string, Breaker> = { regional: "closed", master: "closed" };
  primaryIndex = 3;
  degraded = false;
  lag: "unknown" | "in_sync" | "behind" = "in_sync";
  /** Key lag fallbacks since start, as `/status` counts them. */
  fallbacks = { valid: 0, invalid: 0, unavailable: 0, refused: 0 };
  /** memcached's breakers and failures; null: none configured. */
  memcached: { servers: Record<string, Breaker>; errors: number } | null = null;
  drill: DrillDescription | null = null;
  started = 0;
  stopped = 0;
  answer: (token: string, from: DrillTier) => ValidationAnswer = () => ({
    result: "valid",
    source: "keystone",
    latency_ms: 1,
  });
  /** Called on every status read while a drill runs (to move breakers, rotate keys…). */
  onStatus: (edge: FakeEdge) => void = () => undefined;
  /** Called when the drill's faults are released (to put the ring back in sync…). */
  onStop: (edge: FakeEdge) => void = () => undefined;

  client(): AdminClient {
    const client = {
      status: () => Promise.resolve(this.status()),
      start: (scenario: DrillScenario, _seconds: number, endpoint?: string) => {
        this.started++;
        this.drill = {
          id: "d1",
          scenario,
          fault:
            scenario === "memcached-outage"
              ? "memcached_outage"
              : scenario.endsWith("outage")
                ? "keystone_blackhole"
                : scenario === "key-lag"
                  ? "primary_key_hidden"
                  : "none",
          ...(scenario === "master-outage" ? { endpoints: [endpoint ?? "regional"] } : {}),
          started_at: "2026-11-29T00:00:00.000Z",
          expires_at: "2026-11-29T00:01:00.000Z",
        };
        return Promise.resolve(this.drill);
      },
      stop: () => {
        this.stopped++;
        this.onStop(this);
        const was = this.drill;
        this.drill = null;
        return Promise.resolve(was);
      },
      // Answered on a later turn of the loop, as over HTTP: timers keep running.
      validate: (token: string, from: DrillTier) =>
        new Promise<ValidationAnswer>((resolve, reject) => {
          setImmediate(() => {
            try {
              resolve(this.answer(token, from));
            } catch (error) {
              reject(error instanceof Error ? error : new Error(String(error)));
            }
          });
        }),
    };
    return client as unknown as AdminClient;
  }

  private status(): EdgeStatus {
    if (this.drill !== null) this.onStatus(this);
    return {
      status: "ok",
      uptime_seconds: 1,
      hit_rates: {},
      keystone_offload: {},
      keystone: {
        degraded_mode: this.degraded,
        endpoints: Object.entries(this.breakers).map(([endpoint, state]) => ({ endpoint, state })),
      },
      memcached:
        this.memcached === null
          ? null
          : {
              servers: Object.entries(this.memcached.servers).map(([server, state]) => ({
                server,
                state,
              })),
              errors: this.memcached.errors,
            },
      keys: {
        healthy: true,
        count: 3,
        primary_index: this.primaryIndex,
        primary_age_seconds: 1,
        last_reload: "",
        lag: {
          state: this.lag,
          since: this.lag === "unknown" ? null : "2026-11-29T00:00:00.000Z",
          last_agreed: null,
          last_check: null,
          fallbacks: { ...this.fallbacks },
        },
      },
      revocation_feed: { state: "fresh", lag_seconds: 1, events: 0, poll_interval_seconds: 0.2 },
      drill: this.drill,
    };
  }
}

function run(
  edge: FakeEdge,
  scenario: DrillScenario,
  extra: { signal?: AbortSignal; revoke?: { token: string; keystoneUrl: string } } = {},
): Promise<DrillReport> {
  return runDrill({
    client: edge.client(),
    scenario,
    durationMs: 300,
    tokens: ["t1", "t2"],
    concurrency: 2,
    recoveryTimeoutMs: 300,
    maxFailoverMs: 1_000,
    signal: extra.signal ?? new AbortController().signal,
    ...(extra.revoke ? { revoke: extra.revoke } : {}),
  });
}

const failed = (r: DrillReport): string[] => r.checks.filter((c) => !c.passed).map((c) => c.name);

/** Breakers of blackholed endpoints open at the first status read of the drill. */
function opensOnDrill(edge: FakeEdge): void {
  edge.onStatus = (e) => {
    for (const name of e.drill?.endpoints ?? []) e.breakers[name] = "open";
  };
}

/**
 * A region as the key-lag drill should find it: the first token no local key decrypts
 * makes the edge find its ring behind; while behind, such tokens go to Keystone (counted);
 * the release puts the ring back in sync. `fallback` says what Keystone's answer comes to.
 */
function lagging(fallback: "valid" | "refused" | "none" = "valid"): FakeEdge {
  const edge = new FakeEdge();
  edge.answer = (_token, from) => {
    if (from !== "unseen" || edge.drill === null) {
      return { result: "valid", source: from === "cache" ? "l1" : "context", latency_ms: 1 };
    }
    edge.lag = "behind";
    if (fallback === "none") return { result: "valid", source: "context", latency_ms: 1 };
    if (fallback === "refused") {
      edge.fallbacks.refused++;
      return { result: "invalid", source: "local_reject", code: "bad_signature", latency_ms: 1 };
    }
    edge.fallbacks.valid++;
    return { result: "valid", source: "keystone", latency_ms: 1 };
  };
  edge.onStop = (e) => {
    e.lag = "in_sync";
  };
  return edge;
}

function runKeyLag(edge: FakeEdge): Promise<DrillReport> {
  return runDrill({
    client: edge.client(),
    scenario: "key-lag",
    durationMs: 600,
    tokens: ["t1", "t2"],
    concurrency: 1,
    freshPerSecond: 20,
    maxDetectionMs: 1_000,
    recoveryTimeoutMs: 300,
    signal: new AbortController().signal,
  });
}

describe("drill verdicts", () => {
  it("key-lag: detection, fallback and recovery pass when the region finds its lag, serves new tokens through Keystone and syncs", async () => {
    const report = await runKeyLag(lagging());
    expect(failed(report), JSON.stringify(report.checks)).toEqual([]);
    expect(report.figures["detection_seconds"]).toEqual(expect.any(Number));
    expect((report.figures["fallbacks"] as Record<string, number>)["valid"]).toBeGreaterThan(0);
  });

  it("key-lag fails each check the region misses: lag never found, new tokens refused, no recovery, lagging before", async () => {
    const blind = lagging("none");
    blind.answer = (_t, from) => ({
      result: "valid",
      source: from === "cache" ? "l1" : "context",
      latency_ms: 1,
    });
    expect(failed(await runKeyLag(blind))).toEqual([
      "lag detected in time",
      "new tokens served through Keystone while behind",
    ]);

    expect(failed(await runKeyLag(lagging("refused")))).toEqual([
      "new tokens served through Keystone while behind",
    ]);
    expect(failed(await runKeyLag(lagging("none")))).toEqual([
      "new tokens served through Keystone while behind",
    ]);

    // The release does not bring the ring back in sync.
    const stuck = lagging();
    stuck.onStop = () => undefined;
    expect(failed(await runKeyLag(stuck))).toEqual(["recovered after release"]);

    const behindAlready = lagging();
    behindAlready.lag = "behind";
    expect(failed(await runKeyLag(behindAlready))).toContain("region in sync before the drill");
  });

  it("master-outage fails its recovery check when the endpoint never rejoins rotation", async () => {
    const edge = new FakeEdge();
    opensOnDrill(edge);
    const report = await run(edge, "master-outage");
    expect(failed(report)).toEqual(["recovered after release"]);
    expect(report.passed).toBe(false);
  });

  it("master-outage: every check passes when the region fails over and recovers", async () => {
    const edge = new FakeEdge();
    opensOnDrill(edge);
    const client = edge.client();
    const stop = client.stop.bind(client);
    client.stop = (id: string) => {
      edge.breakers.regional = "closed";
      return stop(id);
    };
    const report = await runDrill({
      client,
      scenario: "master-outage",
      durationMs: 300,
      tokens: ["t1"],
      recoveryTimeoutMs: 300,
      signal: new AbortController().signal,
    });
    expect(failed(report)).toEqual([]);
    expect(report.passed).toBe(true);
    expect(report.figures["failover_seconds"]).toEqual(expect.any(Number));
    expect(edge.started).toBe(1);
    expect(edge.stopped).toBe(1);
  });

  it("master-outage fails when known tokens are only served in degraded mode while another endpoint exists", async () => {
    const edge = new FakeEdge();
    opensOnDrill(edge);
    edge.answer = () => ({ result: "valid", source: "degraded", latency_ms: 1 });
    const report = await run(edge, "master-outage");
    expect(failed(report)).toEqual(
      expect.arrayContaining([
        "known tokens validated while Keystone answers come from elsewhere",
        "validated by another endpoint",
      ]),
    );
  });

  it("master-outage fails when the target was out of rotation before the drill, or never leaves it", async () => {
    const already = new FakeEdge();
    already.breakers.regional = "open";
    expect(failed(await run(already, "master-outage"))).toContain(
      "blackholed endpoint taken out of rotation in time",
    );
    const never = new FakeEdge();
    expect(failed(await run(never, "master-outage"))).toContain(
      "blackholed endpoint taken out of rotation in time",
    );
  });

  it("keystone-outage: unavailable answers are right only for Keystone-only validations; degraded mode must show", async () => {
    const edge = new FakeEdge();
    edge.answer = (_t, from) =>
      from === "keystone_only"
        ? { result: "unavailable", reason: "timeout", latency_ms: 1 }
        : { result: "valid", source: "degraded", latency_ms: 1 };
    const report = await run(edge, "keystone-outage");
    expect(failed(report)).toContain("degraded mode reported");
    expect(failed(report)).not.toContain("known users and scopes served with no Keystone");

    const leaky = new FakeEdge();
    leaky.onStatus = (e) => {
      e.degraded = true;
    };
    leaky.answer = () => ({ result: "valid", source: "keystone", latency_ms: 1 });
    expect(failed(await run(leaky, "keystone-outage"))).toContain(
      "validations that need Keystone refused as unavailable (503)",
    );
  });

  it("key-rotation fails without a rotation and passes with one", async () => {
    const idle = new FakeEdge();
    expect(failed(await run(idle, "key-rotation"))).toEqual(["rotation seen"]);
    const rotating = new FakeEdge();
    rotating.onStatus = (e) => {
      e.primaryIndex = 4;
    };
    expect(failed(await run(rotating, "key-rotation"))).toEqual([]);
  });

  it("an edge that stops answering mid-drill is a failed drill, and the fault is still released", async () => {
    const edge = new FakeEdge();
    let calls = 0;
    edge.answer = () => {
      if (++calls > 6) throw new DrillError("admin_unreachable", "connection refused");
      return { result: "valid", source: "keystone", latency_ms: 1 };
    };
    const report = await run(edge, "key-rotation");
    expect(report.passed).toBe(false);
    expect(failed(report)).toEqual(["edge answered throughout the drill"]);
    expect(edge.stopped).toBe(1);
  });

  it("interrupted before the fault: nothing is injected", async () => {
    const edge = new FakeEdge();
    const controller = new AbortController();
    controller.abort();
    const report = await run(edge, "keystone-outage", { signal: controller.signal });
    expect(report.interrupted).toBe(true);
    expect(report.passed).toBe(false);
    expect(edge.started).toBe(0);
  });

  it("no valid token: the drill cannot run (a typed error, nothing injected)", async () => {
    const edge = new FakeEdge();
    edge.answer = () => ({
      result: "invalid",
      source: "local_reject",
      code: "expired",
      latency_ms: 1,
    });
    await expect(run(edge, "master-outage")).rejects.toMatchObject({ code: "no_known_tokens" });
    expect(edge.started).toBe(0);
  });

  it("memcached-outage passes when validations carry on, the failures are counted and the breaker opens, then closes after the release", async () => {
    const edge = withMemcached();
    const report = await run(edge, "memcached-outage");
    expect(failed(report), JSON.stringify(report.checks)).toEqual([]);
    expect(report.passed).toBe(true);
    expect(edge.stopped).toBe(1);
  });

  it("memcached-outage fails each check the region misses: failures not contained, validations failing, no recovery", async () => {
    const uncontained = withMemcached();
    uncontained.onStatus = () => undefined;
    expect(failed(await run(uncontained, "memcached-outage"))).toEqual([
      "memcached failures contained",
    ]);

    const failing = withMemcached();
    failing.answer = (_t, from) =>
      from === "shared"
        ? { result: "unavailable", reason: "memcached", latency_ms: 1 }
        : { result: "valid", source: "keystone", latency_ms: 1 };
    expect(failed(await run(failing, "memcached-outage"))).toEqual([
      "validations unaffected by memcached's absence",
    ]);

    const stuck = withMemcached();
    stuck.onStop = () => undefined;
    expect(failed(await run(stuck, "memcached-outage"))).toEqual(["recovered after release"]);
  });

  it("memcached-outage against an edge whose status shows no memcached: a typed error, the fault released", async () => {
    const edge = new FakeEdge();
    await expect(run(edge, "memcached-outage")).rejects.toMatchObject({ code: "admin_refused" });
    expect(edge.stopped).toBe(1);
  });

  it("revocation passes when the edge refuses the revoked token within the poll interval and others stay valid", async () => {
    const keystone = await fakeKeystone(204);
    const edge = revoking(keystone, true);
    const report = await run(edge, "revocation", {
      revoke: { token: "victim", keystoneUrl: keystone.url },
    });
    expect(failed(report), JSON.stringify(report.checks)).toEqual([]);
    expect(keystone.deleted).toEqual(["victim"]);
    expect(report.figures["refusal"]).toBe("revoked");
  });

  it("revocation fails when the edge keeps accepting the revoked token, or when bystanders are refused", async () => {
    const keystone = await fakeKeystone(204);
    const blind = revoking(keystone, false);
    expect(
      failed(
        await run(blind, "revocation", { revoke: { token: "victim", keystoneUrl: keystone.url } }),
      ),
    ).toEqual(["revoked token refused in time"]);

    const keystone2 = await fakeKeystone(204);
    const collateral = revoking(keystone2, true);
    const answer = collateral.answer;
    collateral.answer = (token, from) =>
      token !== "victim" && keystone2.deleted.length > 0
        ? { result: "invalid", source: "revocation", code: "revoked", latency_ms: 1 }
        : answer(token, from);
    expect(
      failed(
        await run(collateral, "revocation", {
          revoke: { token: "victim", keystoneUrl: keystone2.url },
        }),
      ),
    ).toEqual(["other tokens unaffected"]);
  });

  it("revocation cannot run when Keystone refuses the revocation: a typed error", async () => {
    const keystone = await fakeKeystone(404);
    const edge = revoking(keystone, true);
    await expect(
      run(edge, "revocation", { revoke: { token: "victim", keystoneUrl: keystone.url } }),
    ).rejects.toMatchObject({ code: "keystone_refused" });
    expect(edge.stopped).toBe(1);
  });
});

/** An edge with one memcached server whose breaker opens under the drill and closes after it. */
function withMemcached(): FakeEdge {
  const edge = new FakeEdge();
  const server = "127.0.0.1:11211";
  edge.memcached = { servers: { [server]: "closed" }, errors: 0 };
  edge.onStatus = (e) => {
    if (e.memcached === null) return;
    e.memcached.errors += 3;
    e.memcached.servers[server] = "open";
  };
  edge.onStop = (e) => {
    if (e.memcached !== null) e.memcached.servers[server] = "closed";
  };
  return edge;
}

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(
    servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))),
  );
});

/** Keystone's `DELETE /v3/auth/tokens`, answering `status` and remembering what it revoked. */
async function fakeKeystone(status: number): Promise<{ url: string; deleted: string[] }> {
  const deleted: string[] = [];
  const server = createServer((req, res) => {
    const subject = req.headers["x-subject-token"];
    if (req.method === "DELETE" && req.url === "/v3/auth/tokens" && typeof subject === "string") {
      if (status === 204) deleted.push(subject);
      res.writeHead(status).end();
    } else {
      res.writeHead(400).end();
    }
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${String(port)}/v3`, deleted };
}

/** An edge that refuses the revoked token once Keystone revoked it (when it `notices`). */
function revoking(keystone: { deleted: string[] }, notices: boolean): FakeEdge {
  const edge = new FakeEdge();
  edge.answer = (token) =>
    notices && keystone.deleted.includes(token)
      ? { result: "invalid", source: "revocation", code: "revoked", latency_ms: 1 }
      : { result: "valid", source: "l1", latency_ms: 1 };
  return edge;
}
