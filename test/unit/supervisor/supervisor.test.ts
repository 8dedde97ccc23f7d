/**
 * The supervisor (src/supervisor/supervisor.ts) with real processes from Node's cluster
 * running a stand-in worker (test/fixtures/fake-worker.mjs) that speaks its IPC: start-up
 * waits for every worker and fails as a worker that could not start failed; a crashing
 * worker is replaced after delays that double, each replacement counted; metrics come
 * from every worker; stop drains them all.
 */
import { fileURLToPath } from "node:url";
import { AggregatorRegistry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

import { validateConfig } from "../../../src/config/load.js";
import { RecordingLogger } from "../../harness/doubles.js";
import { waitUntil } from "../../harness/wait.js";
import { SupervisorMetrics } from "../../../src/supervisor/metrics.js";
import { Supervisor, WorkerStartError } from "../../../src/supervisor/supervisor.js";

const FAKE = fileURLToPath(new URL("../../fixtures/fake-worker.mjs", import.meta.url));
const config = validateConfig({
  listen: "127.0.0.1:0",
  upstream: "http://127.0.0.1:9",
  workers: 2,
  keystone: {
    www_authenticate_uri: "http://127.0.0.1:9/v3",
    auth: {
      type: "password",
      username: "u",
      password: "p",
      user_domain_id: "default",
      project_name: "p",
      project_domain_id: "default",
    },
  },
  fernet: { key_repository: "/nonexistent" },
});

const running: Supervisor[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.stop(0);
  delete process.env["FAKE_EXIT_BEFORE_SERVING"];
  delete process.env["FAKE_LIFETIME_MS"];
});

function supervisor(
  workers: number,
  initialMs = 50,
): {
  supervisor: Supervisor;
  metrics: SupervisorMetrics;
  logger: RecordingLogger;
} {
  const metrics = new SupervisorMetrics();
  const logger = new RecordingLogger();
  const s = new Supervisor({
    configFile: "/nonexistent.yaml",
    config,
    workers,
    graceMs: 1_000,
    exec: FAKE,
    args: [],
    metrics,
    logger,
    restartBackoff: { initialMs, maxMs: 10_000, resetAfterMs: 60_000 },
  });
  running.push(s);
  return { supervisor: s, metrics, logger };
}

async function gauge(metrics: SupervisorMetrics, state: string): Promise<number> {
  return (await metrics.workers.get()).values.find((v) => v.labels["state"] === state)?.value ?? -1;
}

describe("Supervisor", () => {
  it("starts every worker, collects each one's metrics, and drains them all on stop", async () => {
    const { supervisor: s, metrics } = supervisor(3);
    await s.start();
    expect(s.slots.map((x) => x.state)).toEqual(["serving", "serving", "serving"]);
    expect(new Set(s.slots.map((x) => x.pid)).size).toBe(3);
    expect(await gauge(metrics, "serving")).toBe(3);
    const collected = await s.collectMetrics();
    expect(collected.map((c) => c.worker).sort()).toEqual([1, 2, 3]);
    const text = await AggregatorRegistry.aggregate(collected.map((c) => c.metrics)).metrics();
    expect(text).toMatch(/^keystone_edge_fake_total 3$/m);
    const pids = s.slots.map((x) => x.pid as number);
    await s.stop();
    expect(s.slots.map((x) => x.state)).toEqual(["stopped", "stopped", "stopped"]);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
    expect(await gauge(metrics, "serving")).toBe(0);
  });

  it("fails start-up with the status of a worker that could not start, leaving none behind", async () => {
    process.env["FAKE_EXIT_BEFORE_SERVING"] = "2";
    const { supervisor: s } = supervisor(2);
    const error = await s.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(WorkerStartError);
    expect((error as WorkerStartError).exitCode).toBe(2);
    expect(s.slots.every((x) => x.worker === undefined)).toBe(true);
  });

  it("a worker's IPC failure is logged, not thrown: the supervisor and its workers go on", async () => {
    const { supervisor: s, logger } = supervisor(2);
    await s.start();
    const worker = s.slots[0]?.worker;
    if (worker === undefined) throw new Error("no worker");
    // What Node emits when a write meets a channel the worker has just closed (EPIPE);
    // an 'error' no one listens to throws here, as it would take a supervisor down.
    expect(() => worker.process.emit("error", new Error("write EPIPE"))).not.toThrow();
    expect(logger.at("warn").map((l) => [l.message, l.fields["error"]])).toContainEqual([
      "a worker's IPC channel failed",
      "write EPIPE",
    ]);
    expect(s.slots.map((x) => x.state)).toEqual(["serving", "serving"]);
    expect((await s.collectMetrics()).length).toBeGreaterThan(0);
  });

  it("replaces a worker that keeps dying, each time later (the delay doubles), and counts it", async () => {
    process.env["FAKE_LIFETIME_MS"] = "30";
    const { supervisor: s, metrics, logger } = supervisor(1, 100);
    await s.start();
    const slot = s.slots[0];
    if (slot === undefined) throw new Error("no slot");
    await waitUntil(() => slot.restarts >= 3, 15_000, "three replacements");
    const delays = logger
      .at("warn")
      .filter((l) => l.message === "worker exited; replacing it")
      .map((l) => l.fields["restart_in_ms"]);
    expect(delays.slice(0, 3)).toEqual([100, 200, 400]);
    const restarts = (await metrics.restarts.get()).values.find(
      (v) => v.labels["reason"] === "exit",
    )?.value;
    expect(restarts).toBeGreaterThanOrEqual(3);
    delete process.env["FAKE_LIFETIME_MS"];
  });
});
