/**
 * Degraded mode against real Keystone processes: the edge's only endpoint (a replica of the
 * harness Keystone) stops; new tokens of users and scopes the edge already knows keep
 * working from their contexts even past context_cache_time, unknown ones get 503, and the
 * mode shows in metrics; the replica comes back and everything is normal again, without
 * restarting the edge.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startTestEdge } from "../harness/test-edge.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startKeystoneReplica, type KeystoneReplica } from "../harness/keystone-replica.js";

const keystone = inject("keystone");
let replica: KeystoneReplica;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";

beforeAll(async () => {
  replica = await startKeystoneReplica(keystone);
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      timeoutMs: 5_000,
      cache: { context_cache_time: 1, stale_if_error: 900 },
      keystone: {
        endpoints: [replica.url],
        failure_threshold: 1,
        open_duration_ms: 300,
        probe_interval_ms: 200,
      },
    }),
  ));
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await replica.close();
});

/** A status through the edge for a token the master issues now (never seen by the edge). */
async function freshStatus(kind: "project" | "system"): Promise<number> {
  const { token } =
    kind === "project"
      ? await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
      : await issueToken(keystone, { kind: "system" });
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

async function degradedGauge(): Promise<number> {
  return (await edge.metrics.degraded.get()).values[0]?.value ?? 0;
}

describe("degraded mode", () => {
  it("serves known users and scopes while no Keystone answers, refuses the rest with 503, and recovers", async () => {
    expect(await freshStatus("project")).toBe(200); // the context becomes known
    await replica.stop();
    await new Promise((r) => setTimeout(r, 1_500)); // past context_cache_time (1 s)
    expect(await freshStatus("project")).toBe(200);
    expect(await freshStatus("project")).toBe(200);
    expect(await degradedGauge()).toBe(1);
    expect(await freshStatus("system")).toBe(503); // a scope the edge never saw
    const text = await edge.metrics.registry.metrics();
    expect(text).toMatch(
      /keystone_edge_validations_total\{source="degraded",result="valid"\} [2-9]/,
    );

    await replica.start();
    const deadline = Date.now() + 20_000;
    while ((await freshStatus("system")) !== 200) {
      if (Date.now() > deadline) throw new Error("no recovery");
      await new Promise((r) => setTimeout(r, 300));
    }
    expect(await degradedGauge()).toBe(0);
  });
});
