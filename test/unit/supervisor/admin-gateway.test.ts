/**
 * The supervisor's admin gateway (src/supervisor/admin-gateway.ts) in front of two stand-in
 * worker admin listeners (real HTTP on loopback): readiness merged across workers, `/status`
 * with every worker, the admin API forwarded with its secret (flush to all, summed; a
 * refusal passed on; other calls to one worker in turn), one scrape from every worker's
 * metrics, and the `Host` check.
 */
import {
  createServer,
  request,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { createAdminGateway } from "../../../src/supervisor/admin-gateway.js";
import type { MetricsJson } from "../../../src/supervisor/messages.js";
import { SupervisorMetrics } from "../../../src/supervisor/metrics.js";
import type { Supervisor, WorkerSlot } from "../../../src/supervisor/supervisor.js";

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return (server.address() as AddressInfo).port;
}

interface FakeWorker {
  readonly index: number;
  ready: boolean;
  readonly seen: string[];
}

/** A worker's admin listener as the gateway sees it. */
async function fakeWorker(index: number): Promise<{ worker: FakeWorker; port: number }> {
  const worker: FakeWorker = { index, ready: true, seen: [] };
  const json = (res: ServerResponse, status: number, doc: unknown): void => {
    res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(doc));
  };
  const server = createServer((req: IncomingMessage, res) => {
    req.resume();
    worker.seen.push(`${req.method ?? ""} ${req.url ?? ""}`);
    const authorized = req.headers.authorization === "Bearer s3cret-s3cret-s3cret";
    switch (req.url) {
      case "/readyz":
        return json(res, worker.ready ? 200 : 503, {
          ready: worker.ready,
          degraded: false,
          checks: [
            { name: "keys", ok: true, detail: "3 keys" },
            worker.ready
              ? { name: "service_token", ok: true }
              : { name: "service_token", ok: false, detail: "Keystone refused the password" },
          ],
        });
      case "/status":
        return json(res, 200, { status: "ok", uptime_seconds: 5, worker_index: index });
      case "/cache/flush":
        return authorized
          ? json(res, 200, { flushed: { l1: 10 * index, context: index } })
          : json(res, 401, { code: "unauthorized", error: "a valid bearer secret is required" });
      default:
        return json(res, 200, { answeredBy: index });
    }
  });
  return { worker, port: await listen(server) };
}

async function gateway(): Promise<{ url: string; workers: FakeWorker[] }> {
  const one = await fakeWorker(1);
  const two = await fakeWorker(2);
  const slot = (index: number, port: number): WorkerSlot => ({
    index,
    state: "serving",
    worker: undefined,
    pid: 1000 + index,
    adminPort: port,
    startedAtMs: Date.parse("2026-12-06T20:00:00Z"),
    restarts: index - 1,
    deathsInARow: 0,
    timer: undefined,
  });
  const slots = [slot(1, one.port), slot(2, two.port)];
  const metricsOf = (n: number): MetricsJson =>
    [
      {
        name: "keystone_edge_requests_total",
        help: "requests",
        type: "counter",
        aggregator: "sum",
        values: [{ value: n, labels: { outcome: "valid", status_class: "2xx" } }],
      },
    ] as unknown as MetricsJson;
  const supervisor = {
    slots,
    serving: () => slots.filter((s) => s.state === "serving"),
    collectMetrics: () =>
      Promise.resolve([
        { worker: 1, metrics: metricsOf(30) },
        { worker: 2, metrics: metricsOf(12) },
      ]),
  } as unknown as Supervisor;
  const metrics = new SupervisorMetrics();
  metrics.workers.set({ state: "serving" }, 2);
  const server = createAdminGateway({ supervisor, metrics, allowedHosts: () => [] });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${String(port)}`, workers: [one.worker, two.worker] };
}

describe("admin gateway", () => {
  it("is ready while every serving worker is; a failing check names its worker", async () => {
    const { url, workers } = await gateway();
    const ready = await fetch(`${url}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({
      ready: true,
      checks: [{ name: "workers", ok: true, detail: "2 of 2 serving" }, { name: "keys" }, {}],
    });
    (workers[1] as FakeWorker).ready = false;
    const not = await fetch(`${url}/readyz`);
    expect(not.status).toBe(503);
    const body = (await not.json()) as { checks: { name: string; ok: boolean; detail?: string }[] };
    expect(body.checks.find((c) => c.name === "service_token")).toEqual({
      name: "service_token",
      ok: false,
      detail: "worker 2: Keystone refused the password",
    });
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it("/status is a serving worker's, with every worker listed", async () => {
    const { url } = await gateway();
    const doc = (await (await fetch(`${url}/status`)).json()) as Record<string, unknown>;
    expect(doc["status"]).toBe("ok");
    expect(doc["workers"]).toEqual([
      {
        worker: 1,
        pid: 1001,
        state: "serving",
        started_at: "2026-12-06T20:00:00.000Z",
        restarts: 0,
      },
      {
        worker: 2,
        pid: 1002,
        state: "serving",
        started_at: "2026-12-06T20:00:00.000Z",
        restarts: 1,
      },
    ]);
  });

  it("flushes every worker with the caller's secret and sums; no secret, the workers' refusal", async () => {
    const { url, workers } = await gateway();
    const flushed = await fetch(`${url}/cache/flush`, {
      method: "POST",
      headers: { authorization: "Bearer s3cret-s3cret-s3cret" },
    });
    expect(flushed.status).toBe(200);
    expect(await flushed.json()).toEqual({ flushed: { l1: 30, context: 3 } });
    for (const w of workers) expect(w.seen).toContain("POST /cache/flush");
    const refused = await fetch(`${url}/cache/flush`, { method: "POST" });
    expect(refused.status).toBe(401);
    expect(await refused.json()).toMatchObject({ code: "unauthorized" });
  });

  it("sends other admin calls to one worker in turn", async () => {
    const { url } = await gateway();
    const answers: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await fetch(`${url}/drill/validate?from=l1`, { method: "POST" });
      answers.push(((await r.json()) as { answeredBy: number }).answeredBy);
    }
    expect(new Set(answers)).toEqual(new Set([1, 2]));
  });

  it("serves one scrape: the workers' series aggregated, then the supervisor's own", async () => {
    const { url } = await gateway();
    const text = await (await fetch(`${url}/metrics`)).text();
    expect(text).toMatch(
      /^keystone_edge_requests_total\{outcome="valid",status_class="2xx"\} 42$/m,
    );
    expect(text).toMatch(/^keystone_edge_workers\{state="serving"\} 2$/m);
    // …and each worker's own share, to see the cluster's balance
    expect(text).toMatch(/^keystone_edge_worker_requests_total\{worker="1"\} 30$/m);
    expect(text).toMatch(/^keystone_edge_worker_requests_total\{worker="2"\} 12$/m);
  });

  it("answers only to IP addresses, localhost and admin_allowed_hosts (421 otherwise)", async () => {
    const { url } = await gateway();
    const port = new URL(url).port;
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(
        { host: "127.0.0.1", port, path: "/metrics", headers: { host: `evil.example:${port}` } },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on("error", reject);
      req.end();
    });
    expect(status).toBe(421);
  });
});
