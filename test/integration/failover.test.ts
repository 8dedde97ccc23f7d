/**
 * Two real Keystone processes on one database and one key repository — a region-local
 * replica listed first, the harness Keystone as the master — in front of which keystone-edge
 * fails over: the replica stops, traffic goes on through the master with no failed request
 * and the replica's breaker opens (in metrics); the replica comes back, the background probe
 * closes its breaker and validations go to it again, without restarting the edge.
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
      // every fresh token must reach a Keystone here: no per-scope context answers it
      cache: { context_cache_time: 0 },
      keystone: {
        endpoints: [replica.url, keystone.url],
        request_timeout_ms: 15_000,
        failure_threshold: 2,
        open_duration_ms: 500,
        probe_interval_ms: 200,
        // the feed walks the endpoints too: one poll at start only, so that the failures
        // counted below are the validations' own
        revocation_poll_interval_ms: 3_600_000,
      },
    }),
  ));
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await replica.close();
});

const host = (url: string): string => new URL(url).host;

/** Keystone validation calls so far, per endpoint host. */
async function callsByEndpoint(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const v of (await edge.metrics.keystoneCalls.get()).values) {
    if (v.metricName?.endsWith("_count") !== true) continue;
    const endpoint = String(v.labels["endpoint"]);
    out[endpoint] = (out[endpoint] ?? 0) + v.value;
  }
  return out;
}

async function breakerState(url: string): Promise<string | undefined> {
  const values = (await edge.metrics.keystoneBreaker.get()).values;
  return values.find((v) => v.labels["endpoint"] === host(url) && v.value === 1)?.labels[
    "state"
  ] as string | undefined;
}

/** A request with a token never seen before: it must be validated by a Keystone. */
async function freshRequest(): Promise<number> {
  const { token } = await issueToken(keystone, {
    kind: "project",
    name: "admin",
    domainId: "default",
  });
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

/** Polls `check` every 100 ms until it holds; fails after `ms` naming `what`. */
function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  return waitUntil(check, ms, what, 100);
}

describe("failover between two real Keystones", () => {
  it("asks the region-local replica first while it answers", async () => {
    const before = await callsByEndpoint();
    for (let i = 0; i < 3; i++) expect(await freshRequest()).toBe(200);
    const after = await callsByEndpoint();
    expect((after[host(replica.url)] ?? 0) - (before[host(replica.url)] ?? 0)).toBe(3);
    expect((after[host(keystone.url)] ?? 0) - (before[host(keystone.url)] ?? 0)).toBe(0);
    expect(await breakerState(replica.url)).toBe("closed");
  });

  it("replica stopped: no failed request, its breaker opens, the master answers", async () => {
    await replica.stop();
    const before = await callsByEndpoint();
    for (let i = 0; i < 5; i++) expect(await freshRequest()).toBe(200);
    const after = await callsByEndpoint();
    expect(await breakerState(replica.url)).toBe("open");
    expect((after[host(keystone.url)] ?? 0) - (before[host(keystone.url)] ?? 0)).toBe(5);
    // Two failures opened it; after that no request tried it (probes are not validations).
    expect((after[host(replica.url)] ?? 0) - (before[host(replica.url)] ?? 0)).toBe(2);
  });

  it("replica back: the background probe closes its breaker and validations return to it", async () => {
    await replica.start();
    await until(
      "the replica's breaker to close",
      async () => (await breakerState(replica.url)) === "closed",
      20_000,
    );
    const before = await callsByEndpoint();
    for (let i = 0; i < 2; i++) expect(await freshRequest()).toBe(200);
    const after = await callsByEndpoint();
    expect((after[host(replica.url)] ?? 0) - (before[host(replica.url)] ?? 0)).toBe(2);
    const text = await edge.metrics.registry.metrics();
    expect(text).toContain(
      `keystone_edge_keystone_breaker_state{endpoint="${host(replica.url)}",state="closed"} 1`,
    );
  });
});
