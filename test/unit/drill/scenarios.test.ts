/**
 * The drills' verdicts against a fake edge: each check passes when the region behaves and
 * fails when it does not (the integration suite runs them against the real thing).
 */
import { describe, expect, it } from "vitest";

import type { EdgeStatus } from "../../../src/admin/status.js";
import type {
  AdminClient,
  DrillDescription,
  ValidationAnswer,
} from "../../../src/drill/admin-client.js";
import type { DrillScenario } from "../../../src/drill/faults.js";
import { runDrill, type DrillReport } from "../../../src/drill/scenarios.js";
import type { DrillTier } from "../../../src/validation/pipeline.js";
import { DrillError } from "../../../src/errors.js";

type Breaker = "closed" | "open" | "half-open";

/** A fake edge: breakers and answers as the test says, drill state as the admin API keeps it. */
class FakeEdge {
  breakers: Record<string, Breaker> = { regional: "closed", master: "closed" };
  primaryIndex = 3;
  degraded = false;
  lag: "unknown" | "in_sync" | "behind" = "in_sync";
  /** Counters by name and label values (`name` or `name|value`), as `/metrics` would sum them. */
  counters: Record<string, number> = {};
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
      metric: (name: string, labels: Record<string, string> = {}) => {
        const key = [name, ...Object.values(labels)].join("|");
        return Promise.resolve(
          Object.entries(this.counters)
            .filter(([k]) => k === key || (Object.keys(labels).length === 0 && k.startsWith(name)))
            .reduce((sum, [, v]) => sum + v, 0),
        );
      },
      start: (scenario: DrillScenario, _seconds: number, endpoint?: string) => {
        this.started++;
        this.drill = {
          id: "d1",
          scenario,
          fault: scenario.endsWith("outage")
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

const FALLBACKS = "keystone_edge_key_lag_fallbacks_total";

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
      edge.counters["keystone_edge_key_lag_fallback_refusals_total"] =
        (edge.counters["keystone_edge_key_lag_fallback_refusals_total"] ?? 0) + 1;
      return { result: "invalid", source: "local_reject", code: "bad_signature", latency_ms: 1 };
    }
    edge.counters[`${FALLBACKS}|valid`] = (edge.counters[`${FALLBACKS}|valid`] ?? 0) + 1;
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
});
