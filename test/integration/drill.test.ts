/**
 * Failover drills (`keystone-edge drill`) against a running edge, real Keystone and real
 * memcached: each scenario run through the real command line, its report and exit status
 * checked, and what the edge shows afterwards (no fault left, `keystone_edge_drill_active`
 * back to 0). The edge's two endpoints are one Keystone replica under two names (faults
 * are injected inside the edge, so one Keystone is enough to fail over between), with its
 * memcached cache as production runs it: an uncached harness Keystone (~0.7 s per
 * validation) cannot keep up with drill traffic, which the master-outage drill rightly
 * reports as a failure.
 * Also: a drill that must fail (no context cache: a Keystone outage is not survivable)
 * exits 5 naming the failed check; an interrupted drill releases its faults at once; a
 * killed one's faults expire by themselves.
 */
import { spawn } from "node:child_process";
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import type { EdgeStatus } from "../../src/protocol/admin.js";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import { runCli } from "../harness/cli.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startMemcached, type MemcachedHandle } from "../harness/memcached.js";
import { startKeystoneReplica, type KeystoneReplica } from "../harness/keystone-replica.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
const SECRET = "drill-secret-0123456789";
const dir = mkdtempSync(join(tmpdir(), "ke-drill-"));
const secretFile = join(dir, "secret");
const tokenFile = join(dir, "tokens");
const keys = join(dir, "keys");
let echo: EchoUpstream;
let memcached: MemcachedHandle;
let replica: KeystoneReplica;
let edge: RunningEdge;
let admin = "";

beforeAll(async () => {
  writeFileSync(secretFile, SECRET + "\n");
  // The edge reads its own copy of the key repository, which the key-rotation drill rotates.
  mkdirSync(keys);
  for (const f of readdirSync(keystone.keyRepository)) {
    copyFileSync(join(keystone.keyRepository, f), join(keys, f));
  }
  echo = await startEchoUpstream();
  memcached = await startMemcached();
  replica = await startKeystoneReplica(keystone, { cacheServer: memcached.address });
  const tokens = await Promise.all(
    [0, 1, 2].map(() =>
      issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }),
    ),
  );
  writeFileSync(tokenFile, "# drill tokens\n" + tokens.map((t) => t.token).join("\n") + "\n");
  const document = edgeConfigDocument(keystone, {
    upstream: echo.url,
    user: adminUser(keystone),
    timeoutMs: 2_500,
    cache: { memcached_servers: [memcached.address], memcache_secret_key: "drill region secret" },
    keystone: {
      endpoints: [
        { name: "regional", url: replica.url },
        { name: "master", url: replica.url },
      ],
      request_timeout_ms: 6_000,
      failure_threshold: 2,
      open_duration_ms: 300,
      probe_interval_ms: 200,
      revocation_poll_interval_ms: 1_000,
    },
  });
  ({ edge } = await startTestEdge({
    ...document,
    admin_secret: SECRET,
    fernet: { ...(document.fernet as object), key_repository: keys },
  }));
  admin = `http://127.0.0.1:${String(edge.adminAddress.port)}`;
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await replica.close();
  await memcached.stop();
});

interface Report {
  passed: boolean;
  interrupted: boolean;
  checks: { name: string; passed: boolean; detail: string }[];
  figures: Record<string, unknown>;
}

async function drill(
  scenario: string,
  extra: string[] = [],
  adminUrl = admin,
  onStderr?: (text: string) => void,
): Promise<{ status: number; report: Report; err: string }> {
  const c = await runCli(
    [
      "drill",
      scenario,
      "--admin",
      adminUrl,
      "--secret-file",
      secretFile,
      "--token-file",
      tokenFile,
      "--json",
      ...extra,
    ],
    undefined,
    onStderr,
  );
  return {
    status: c.status,
    report: (c.stdout === "" ? {} : JSON.parse(c.stdout)) as Report,
    err: c.stderr,
  };
}

async function status(url = admin): Promise<EdgeStatus> {
  return (await (await fetch(`${url}/status`)).json()) as EdgeStatus;
}

async function drillGauge(url = admin): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  return [...text.matchAll(/^keystone_edge_drill_active\{scenario="[a-z-]+"\} (\d+)$/gm)].reduce(
    (sum, m) => sum + Number(m[1]),
    0,
  );
}

const failed = (r: Report): string[] => r.checks.filter((c) => !c.passed).map((c) => c.name);

describe("keystone-edge drill", () => {
  it("master-outage: the regional endpoint blackholed, the master answers, no validation fails, failover and recovery measured", async () => {
    const {
      status: exit,
      report,
      err,
    } = await drill("master-outage", [
      "--duration",
      "4s",
      "--endpoint",
      "regional",
      "--concurrency",
      "2",
    ]);
    expect(failed(report), err).toEqual([]);
    expect(exit).toBe(0);
    expect(report.passed).toBe(true);
    expect(report.checks.map((c) => c.name)).toContain(
      "blackholed endpoint taken out of rotation in time",
    );
    expect(report.figures["endpoint"]).toBe("regional");
    expect(report.figures["failover_seconds"]).toEqual(expect.any(Number));
    expect(report.figures["recovery_seconds"]).toEqual(expect.any(Number));
    expect(
      (report.figures["by_source"] as Record<string, number>)["valid:keystone"],
    ).toBeGreaterThan(0);
    // Nothing left injected; the gauge says so.
    expect((await status()).drill).toBeNull();
    expect(await drillGauge()).toBe(0);
  }, 60_000);

  it("keystone-outage: known scopes served in degraded mode, Keystone-only validations 503, degraded mode reported, recovery", async () => {
    const {
      status: exit,
      report,
      err,
    } = await drill("keystone-outage", ["--duration", "8s", "--concurrency", "2"]);
    expect(failed(report), err).toEqual([]);
    expect(exit).toBe(0);
    const known = report.figures["known"] as { by_source: Record<string, number> };
    expect(known.by_source["valid:degraded"]).toBeGreaterThan(0);
    const unknown = report.figures["unknown"] as { by_result: Record<string, number> };
    expect(Object.keys(unknown.by_result)).toEqual(["unavailable"]);
    expect((await status()).keystone.degraded_mode).toBe(false);
  }, 60_000);

  it("memcached-outage: validations unaffected, the memcached breaker opens, and closes after the release", async () => {
    const {
      status: exit,
      report,
      err,
    } = await drill("memcached-outage", ["--duration", "3s", "--concurrency", "2"]);
    expect(failed(report), err).toEqual([]);
    expect(exit).toBe(0);
    expect(report.figures["memcached_errors"]).toBeGreaterThan(0);
    expect(report.figures["breaker_opened"]).toBe(true);
  }, 60_000);

  // Before key-rotation, which rotates the edge's copy past Keystone's own (the primary it
  // would hide is then one Keystone never signs with).
  it("key-lag: the primary hidden from the edge's view — lag found, new tokens served through Keystone, known users untouched, in sync after the release", async () => {
    const fallbacks = async (): Promise<number> => {
      const text = await (await fetch(`${admin}/metrics`)).text();
      return Number(
        /^keystone_edge_key_lag_fallbacks_total\{result="valid"\} (\d+)$/m.exec(text)?.[1],
      );
    };
    const before = await fallbacks();
    expect((await status()).keys.lag?.state).toBe("in_sync");
    const {
      status: exit,
      report,
      err,
    } = await drill("key-lag", ["--duration", "6s", "--concurrency", "2", "--fresh-rate", "4"]);
    expect(failed(report), err).toEqual([]);
    expect(exit).toBe(0);
    // The figures docs/operations.md quotes: printed, not judged beyond the checks.
    console.info("key-lag drill figures:", JSON.stringify(report.figures));
    expect(report.figures["detection_seconds"]).toBeLessThanOrEqual(15);
    const counted = (report.figures["fallbacks"] as Record<string, number>)["valid"] ?? 0;
    expect(counted).toBeGreaterThan(0);
    // The report's figure is the edge's own counter: real Keystone calls, made by the edge.
    expect((await fallbacks()) - before).toBeGreaterThanOrEqual(counted);
    const after = await status();
    expect(after.keys.lag?.state).toBe("in_sync");
    expect(after.drill).toBeNull();
    expect(await drillGauge()).toBe(0);
    // The repository on disk was never touched: its primary is the one Keystone signs with.
    expect(after.keys.primary_index).toBe(
      Math.max(...readdirSync(keystone.keyRepository).map(Number).filter(Number.isInteger)),
    );
  }, 90_000);

  it("key-rotation: tokens keep validating while the region's copy is rotated; without a rotation the drill fails", async () => {
    // Rotate once the drill says it is watching (its "before" taken), not after a fixed time.
    let watching = (): void => undefined;
    const watched = new Promise<void>((resolve) => (watching = resolve));
    const rotate = (async () => {
      await watched;
      // What keystone-manage fernet_rotate does, synced in the documented order: the staged
      // key becomes the primary (highest index), a new staged key 0 appears.
      const indexes = readdirSync(keys).map(Number).filter(Number.isInteger);
      const next = Math.max(...indexes) + 1;
      renameSync(join(keys, "0"), join(keys, String(next)));
      writeFileSync(join(dir, "staged"), generateFernetKeyText());
      renameSync(join(dir, "staged"), join(keys, "0"));
      return next;
    })();
    const [{ status: exit, report, err }, next] = await Promise.all([
      drill("key-rotation", ["--duration", "4s", "--concurrency", "2"], admin, (text) => {
        if (text.includes("rotate now")) watching();
      }),
      rotate,
    ]);
    expect(failed(report), err).toEqual([]);
    expect(exit).toBe(0);
    expect((await status()).keys.primary_index).toBe(next);

    const idle = await drill("key-rotation", ["--duration", "1s"]);
    expect(idle.status).toBe(5);
    expect(failed(idle.report)).toEqual(["rotation seen"]);
  }, 60_000);

  it("revocation: a token revoked at Keystone during the drill is refused within the poll interval, others unaffected", async () => {
    const victim = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const victimFile = join(dir, "victim");
    writeFileSync(victimFile, victim.token);
    // The victim among the traffic tokens too: it is not held against "others unaffected".
    const withVictim = join(dir, "tokens-and-victim");
    writeFileSync(withVictim, `${readFileSync(tokenFile, "utf8")}${victim.token}\n`);
    const {
      status: exit,
      report,
      err,
    } = await drill("revocation", [
      "--duration",
      "10s",
      "--revoke-token-file",
      victimFile,
      "--keystone",
      replica.url,
      "--token-file",
      withVictim,
    ]);
    expect(failed(report), err).toEqual([]);
    expect(exit).toBe(0);
    expect(report.figures["refusal"]).toBe("revoked");
    expect(report.figures["refused_after_seconds"]).toBeLessThanOrEqual(3);
  }, 60_000);

  it("a drill that must fail: an edge without a context cache cannot serve through a Keystone outage (exit 5, the check named)", async () => {
    const document = edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      timeoutMs: 2_500,
      cache: { context_cache_time: 0 },
      keystone: { failure_threshold: 1, open_duration_ms: 300, probe_interval_ms: 200 },
    });
    const { edge: plain } = await startTestEdge({ ...document, admin_secret: SECRET });
    try {
      const url = `http://127.0.0.1:${String(plain.adminAddress.port)}`;
      const {
        status: exit,
        report,
        err,
      } = await drill("keystone-outage", ["--duration", "2s", "--concurrency", "2"], url);
      expect(exit, err).toBe(5);
      expect(report.passed).toBe(false);
      expect(failed(report)).toEqual(
        expect.arrayContaining(["known users and scopes served with no Keystone"]),
      );
      expect((await status(url)).drill).toBeNull();
    } finally {
      await plain.close(500);
    }
  }, 60_000);

  it("cannot run: wrong secret (exit 6), unknown endpoint (exit 6), bad usage (exit 2), one drill at a time (409)", async () => {
    const wrong = join(dir, "wrong");
    writeFileSync(wrong, "not-the-secret-at-all");
    const c = await runCli([
      "drill",
      "master-outage",
      "--admin",
      admin,
      "--secret-file",
      wrong,
      "--token-file",
      tokenFile,
    ]);
    expect(c.status).toBe(6);
    expect(c.stderr).toMatch(/refused the admin secret/);
    const unknown = await drill("master-outage", ["--endpoint", "nowhere", "--duration", "1s"]);
    expect(unknown.status).toBe(6);
    expect(unknown.err).toMatch(/no Keystone endpoint named "nowhere".*regional/);
    expect((await drill("sideways")).status).toBe(2);
    expect((await drill("master-outage", ["--duration", "soon"])).status).toBe(2);

    const start = (): Promise<Response> =>
      fetch(`${admin}/drill/start?scenario=key-rotation&duration_seconds=30`, {
        method: "POST",
        headers: { authorization: `Bearer ${SECRET}` },
      });
    const first = await start();
    const { drill: running } = (await first.json()) as { drill: { id: string } };
    expect(first.status).toBe(201);
    expect((await start()).status).toBe(409);
    const stopped = await fetch(`${admin}/drill/stop?id=${running.id}`, {
      method: "POST",
      headers: { authorization: `Bearer ${SECRET}` },
    });
    expect(((await stopped.json()) as { stopped: { id: string } }).stopped.id).toBe(running.id);
    expect((await status()).drill).toBeNull();
  }, 60_000);

  it("an interrupted drill releases its faults at once (exit 130); a killed one's expire by themselves", async () => {
    const cli = join(process.cwd(), "dist/src/cli/main.js");
    const run = (duration: string) =>
      spawn(
        process.execPath,
        [
          cli,
          "drill",
          "keystone-outage",
          "--admin",
          admin,
          "--secret-file",
          secretFile,
          "--token-file",
          tokenFile,
          "--duration",
          duration,
        ],
        { stdio: ["ignore", "pipe", "pipe"] },
      );
    const injected = async (): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while ((await status()).drill === null) {
        if (Date.now() > deadline) throw new Error("the drill never started");
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const interrupted = run("60s");
    const exited = new Promise<number | null>((r) => interrupted.on("exit", (code) => r(code)));
    await injected();
    interrupted.kill("SIGINT");
    expect(await exited).toBe(130);
    expect((await status()).drill).toBeNull();
    expect(await drillGauge()).toBe(0);

    const killed = run("2s");
    await injected();
    killed.kill("SIGKILL");
    expect((await status()).drill).not.toBeNull();
    const deadline = Date.now() + 5_000;
    while ((await status()).drill !== null && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await status()).drill).toBeNull();
    expect(await drillGauge()).toBe(0);
  }, 90_000);
});
