/**
 * `workers: 2` with the real binary and the real Keystone (issue 17, item 1): two worker
 * processes share the proxy's port and answer requests; one scrape of the supervisor's
 * admin listener shows both workers' series summed and the supervisor's own; `/status`
 * lists each worker; a worker killed with SIGKILL is replaced (counted) while requests on
 * new connections keep succeeding; a token deleted at Keystone is refused by both workers
 * within the poll interval (one feed polls, its events are shared); SIGHUP reaches every
 * worker; SIGTERM drains them all
 * and the supervisor exits 0. And a configuration a worker cannot start with stops the
 * whole edge with exit 2, as one process would.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import type { EdgeStatus } from "../../src/protocol/admin.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startEdgeProcess, type EdgeProcess } from "../harness/edge-process.js";
import { api, createFixtures } from "../harness/fixtures.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
let echo: EchoUpstream;
let edge: EdgeProcess;
let token = "";
const ADMIN_SECRET = "workers-test-admin-secret";

beforeAll(async () => {
  const fixtures = await createFixtures(keystone);
  echo = await startEchoUpstream();
  edge = await startEdgeProcess({
    keystone,
    upstream: echo.url,
    serviceUser: fixtures.serviceUser,
    extraYaml: ["workers: 2", `admin_secret: "${ADMIN_SECRET}"`],
    dieWithParent: true,
  });
  token = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}, 120_000);

afterAll(async () => {
  await edge.stop();
  await echo.stop();
});

/**
 * One request on a connection of its own (the cluster hands each to a live worker); -1 on
 * a connection error, -2 when no answer came within 5 s.
 */
function fresh(): Promise<number> {
  return new Promise((resolve) => {
    const req = request(
      `${edge.url}/v2.1/servers`,
      { agent: false, headers: { "X-Auth-Token": token }, timeout: 5_000 },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("timeout", () => {
      req.destroy();
      resolve(-2);
    });
    req.on("error", () => resolve(-1));
    req.end();
  });
}

async function metrics(): Promise<string> {
  return (await fetch(`${edge.adminUrl}/metrics`)).text();
}

function sample(text: string, series: string): number {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? Number.NaN : Number(line.slice(series.length + 1));
}

async function status(): Promise<EdgeStatus> {
  return (await (await fetch(`${edge.adminUrl}/status`)).json()) as EdgeStatus;
}

/** Log lines of the edge (supervisor and workers) since `from`, parsed. */
function lines(from = 0): { msg?: string; worker?: number }[] {
  return edge
    .output()
    .slice(from)
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as { msg?: string; worker?: number });
}

describe("workers: 2", () => {
  it("both workers serve; one scrape sums their series; /status lists each", async () => {
    const answers = await Promise.all(Array.from({ length: 40 }, () => fresh()));
    expect(answers.every((s) => s === 200)).toBe(true);
    const workers = (await status()).workers ?? [];
    expect(workers.map((w) => w.state)).toEqual(["serving", "serving"]);
    const pids = workers.map((w) => w.pid);
    expect(new Set(pids).size).toBe(2);
    expect(pids).not.toContain(edge.pid);
    const text = await metrics();
    expect(sample(text, 'keystone_edge_workers{state="serving"}')).toBe(2);
    expect(sample(text, 'keystone_edge_requests_total{outcome="valid",status_class="2xx"}')).toBe(
      40,
    );
    // Each worker validated through its own tiers; both did some of the 40.
    const served = lines().filter((l) => l.msg === "keystone-edge listening");
    expect(new Set(served.map((l) => l.worker))).toEqual(new Set([1, 2]));
    // The edge's series aggregated; a few per worker from the supervisor, to see balance.
    const perWorker = [1, 2].map((w) =>
      sample(text, `keystone_edge_worker_requests_total{worker="${String(w)}"}`),
    );
    expect(perWorker.every((n) => n > 0)).toBe(true);
    expect(perWorker.reduce((a, b) => a + b, 0)).toBe(40);
    expect(text).not.toMatch(/^keystone_edge_requests_total\{[^}]*worker=/m);
    expect(sample(text, 'keystone_edge_cache_entries{tier="l1"}')).toBe(2); // one per worker

    // The admin API reaches every worker: both in-process caches are flushed.
    const flush = await fetch(`${edge.adminUrl}/cache/flush`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_SECRET}` },
    });
    expect(flush.status).toBe(200);
    expect(((await flush.json()) as { flushed: Record<string, number> }).flushed["l1"]).toBe(2);
    expect(sample(await metrics(), 'keystone_edge_cache_entries{tier="l1"}')).toBe(0);
    const refused = await fetch(`${edge.adminUrl}/cache/flush`, { method: "POST" });
    expect(refused.status).toBe(401);
  });

  it("a worker killed with SIGKILL is replaced and counted; requests on new connections keep succeeding", async () => {
    const before = (await status()).workers ?? [];
    const victim = before[0]?.pid;
    if (typeof victim !== "number") throw new Error("no worker pid");
    /** Read across awaits by the loop, hence a field. */
    const load = { running: true, sent: 0, started: 0 };
    /** Each failed request: its answer and when it was sent (the count sent before it). */
    const failures: { status: number; sentAfter: number }[] = [];
    const loop = (async () => {
      while (load.running) {
        const sentAfter = load.sent;
        load.started++;
        const s = await fresh();
        load.sent++;
        if (s !== 200) failures.push({ status: s, sentAfter });
      }
    })();
    await waitUntil(() => load.sent >= 10, 10_000, "traffic before the kill");
    process.kill(victim, "SIGKILL");
    await waitUntil(
      async () => {
        const w = (await status()).workers ?? [];
        return (
          w.length === 2 &&
          w.every((x) => x.state === "serving") &&
          !w.some((x) => x.pid === victim)
        );
      },
      30_000,
      "the killed worker replaced",
      100,
    );
    // Requests sent from here on were sent once the replacement served.
    const replacedAt = load.started;
    await waitUntil(() => load.sent >= replacedAt + 20, 20_000, "20 more requests");
    load.running = false;
    await loop;
    // The one request that may have been on the killed worker's connection is lost (the
    // loop sends one at a time); every request sent after the replacement is answered.
    expect(failures.filter((f) => f.sentAfter < replacedAt).length).toBeLessThanOrEqual(1);
    expect(failures.filter((f) => f.sentAfter >= replacedAt)).toEqual([]);
    const text = await metrics();
    expect(sample(text, 'keystone_edge_worker_restarts_total{reason="signal"}')).toBe(1);
    expect(sample(text, 'keystone_edge_workers{state="serving"}')).toBe(2);
    const now = (await status()).workers ?? [];
    expect(now.find((w) => w.worker === before[0]?.worker)?.restarts).toBe(1);
  }, 60_000);

  it("a token deleted at Keystone is refused by every worker within the poll interval: the leader's feed, shared", async () => {
    const victim = (
      await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
    ).token;
    const on = (t: string): Promise<number> =>
      new Promise((resolve) => {
        const req = request(
          `${edge.url}/v2.1/servers`,
          { agent: false, headers: { "X-Auth-Token": t } },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", () => resolve(-1));
        req.end();
      });
    // Known to both workers (each connection goes to the next worker in turn).
    for (let i = 0; i < 6; i++) expect(await on(victim)).toBe(200);
    const admin = (
      await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
    ).token;
    expect((await api(keystone, admin, "DELETE", "/auth/tokens", undefined, victim)).status).toBe(
      204,
    );
    // Default poll interval 10 s: refused everywhere (10 in a row) well within 20 s.
    let refusedInARow = 0;
    await waitUntil(
      async () => {
        refusedInARow = (await on(victim)) === 401 ? refusedInARow + 1 : 0;
        return refusedInARow >= 10;
      },
      20_000,
      "every worker to refuse the deleted token",
      50,
    );
    expect(await fresh()).toBe(200);
    const text = await metrics();
    expect(
      sample(text, 'keystone_edge_validations_total{source="revocation",result="invalid"}'),
    ).toBeGreaterThanOrEqual(10);
  }, 60_000);

  it("SIGHUP reaches every worker; SIGTERM drains them all and the supervisor exits 0", async () => {
    const from = edge.output().length;
    edge.child.kill("SIGHUP");
    await waitUntil(
      () =>
        new Set(
          lines(from)
            .filter((l) => l.msg === "configuration reloaded")
            .map((l) => l.worker),
        ).size === 2,
      30_000,
      "both workers reloaded",
    );
    expect((await fresh()) === 200).toBe(true);
    const stopFrom = edge.output().length;
    expect(await edge.stop()).toBe(0);
    const stopped = lines(stopFrom).filter((l) => l.msg === "stopped");
    expect(new Set(stopped.map((l) => l.worker ?? 0))).toEqual(new Set([0, 1, 2]));
  }, 60_000);

  it("a configuration the workers cannot start with stops the edge with exit 2", async () => {
    const dir = await mkdtemp(join(tmpdir(), "ke-workers-bad-"));
    try {
      await writeFile(
        join(dir, "edge.yaml"),
        [
          'listen: "127.0.0.1:0"',
          'upstream: "http://127.0.0.1:9"',
          'admin_listen: "127.0.0.1:0"',
          "workers: 2",
          "keystone:",
          `  www_authenticate_uri: "${keystone.url}"`,
          "  auth: { type: password, username: u, password: p, user_domain_id: default, project_name: p, project_domain_id: default }",
          "fernet:",
          `  key_repository: ${join(dir, "no-keys-here")}`,
          "",
        ].join("\n"),
      );
      const { code, output } = await new Promise<{ code: number; output: string }>((resolve) => {
        execFile(
          process.execPath,
          [BIN, "serve", "--config", join(dir, "edge.yaml")],
          { timeout: 60_000 },
          (error, stdout, stderr) =>
            resolve({
              code: error === null ? 0 : typeof error.code === "number" ? error.code : -1,
              output: `${stdout}${stderr}`,
            }),
        );
      });
      // The edge's own words, should the status be another: which worker said what.
      expect(code, output).toBe(2);
      expect(output).toContain("exited before serving (status 2)");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
