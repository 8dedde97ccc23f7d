/**
 * Degraded mode against real Keystone processes: both of the edge's endpoints (two replicas
 * of the harness Keystone, a region-local one and a stand-in for the master) stop; new
 * tokens of users and scopes the edge already knows keep working from their contexts even
 * past context_cache_time, unknown ones get 503 with Retry-After, and the mode shows in
 * metrics and /readyz; the replicas come back and everything is normal again, without
 * restarting the edge.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startTestEdge } from "../harness/test-edge.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startKeystoneReplica, type KeystoneReplica } from "../harness/keystone-replica.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
let replica: KeystoneReplica;
let master: KeystoneReplica;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";

beforeAll(async () => {
  [replica, master] = await Promise.all([
    startKeystoneReplica(keystone),
    startKeystoneReplica(keystone),
  ]);
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      timeoutMs: 5_000,
      cache: { context_cache_time: 1, stale_if_error: 900 },
      keystone: {
        endpoints: [replica.url, master.url],
        failure_threshold: 1,
        open_duration_ms: 300,
        probe_interval_ms: 200,
        revocation_poll_interval_ms: 500,
      },
    }),
  ));
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await Promise.all([replica.close(), master.close()]);
});

/** A response through the edge for a token the master issues now (never seen by the edge). */
async function fresh(kind: "project" | "system"): Promise<Response> {
  const { token } =
    kind === "project"
      ? await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
      : await issueToken(keystone, { kind: "system" });
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res;
}

async function freshStatus(kind: "project" | "system"): Promise<number> {
  return (await fresh(kind)).status;
}

async function readyz(): Promise<{
  ready: boolean;
  degraded: boolean;
  checks: { name: string; degraded?: boolean; detail?: string }[];
}> {
  const a = edge.adminAddress;
  const res = await fetch(`http://${a.host}:${String(a.port)}/readyz`);
  return (await res.json()) as Awaited<ReturnType<typeof readyz>>;
}

async function degradedGauge(): Promise<number> {
  return (await edge.metrics.degraded.get()).values[0]?.value ?? 0;
}

/** Validations answered valid in degraded mode so far. */
async function degradedValid(): Promise<number> {
  const text = await edge.metrics.registry.metrics();
  const m = /^keystone_edge_validations_total\{source="degraded",result="valid"\} (\d+)$/m.exec(
    text,
  );
  return Number(m?.[1] ?? 0);
}

describe("degraded mode", () => {
  it("serves known users and scopes while no Keystone answers, refuses the rest with 503, and recovers", async () => {
    expect(await freshStatus("project")).toBe(200); // the context becomes known
    expect((await readyz()).degraded).toBe(false);
    await Promise.all([replica.stop(), master.stop()]);
    // Fresh tokens of the known scope are answered from the context cache until its entry
    // is past context_cache_time (1 s), then in degraded mode: wait for the first of those.
    await waitUntil(
      async () => {
        expect(await freshStatus("project")).toBe(200);
        return (await degradedValid()) > 0;
      },
      10_000,
      "a fresh token answered in degraded mode",
      100,
    );
    expect(await freshStatus("project")).toBe(200);
    expect(await freshStatus("project")).toBe(200);
    expect(await degradedGauge()).toBe(1);
    const refused = await fresh("system"); // a scope the edge never saw
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("1"); // open_duration_ms 300
    const report = await readyz();
    expect(report).toMatchObject({ ready: true, degraded: true });
    const detail = report.checks.find((c) => c.name === "keystone")?.detail ?? "";
    expect(detail).toMatch(/degraded mode/);
    expect(detail).toMatch(/open since|half-open/);
    // the revocation feed cannot be polled either: reported stale
    const deadlineFeed = Date.now() + 10_000;
    let feed = report.checks.find((c) => c.name === "revocation_feed");
    while (feed?.degraded !== true && Date.now() < deadlineFeed) {
      await new Promise((r) => setTimeout(r, 200));
      feed = (await readyz()).checks.find((c) => c.name === "revocation_feed");
    }
    expect(feed).toMatchObject({
      degraded: true,
      detail: expect.stringMatching(/^stale: /) as unknown,
    });
    expect(await degradedValid()).toBeGreaterThanOrEqual(3);

    await Promise.all([replica.start(), master.start()]);
    const deadline = Date.now() + 20_000;
    while ((await freshStatus("system")) !== 200) {
      if (Date.now() > deadline) throw new Error("no recovery");
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await degradedGauge()).toBe(0);
    // The feed answers again at its next poll: /readyz stops saying degraded then.
    await waitUntil(async () => !(await readyz()).degraded, 10_000, "/readyz not degraded");
    expect((await readyz()).checks.find((c) => c.name === "keystone")?.detail).not.toMatch(
      /degraded mode/,
    );
  });
});
