/**
 * The deploy kit's alerting rules against a real Prometheus (Debian's, 2.x) scraping a
 * running edge. The edge (real memcached; a region-local endpoint on a closed loopback
 * port, then the harness Keystone as the master, reached through a TCP relay the test can
 * cut) serves real tokens; Prometheus scrapes its admin `/metrics` every second and
 * evaluates deploy/prometheus/alerts.yaml, and a copy of it with every `for:` set to 0s,
 * every second. The target is up and its samples are the edge's own counts; every rule
 * group loads and every rule evaluates cleanly, again and again; every metric the alerts
 * read has a live series and the dashboard's queries answer; the dead endpoint's alert
 * fires (and only it); cutting the way to the master fires "master unreachable" and
 * "degraded mode" (and nothing about keys, feed or hit rate); restored, they resolve.
 */
import { readFileSync } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { parse } from "yaml";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startMemcached, type MemcachedHandle } from "../harness/memcached.js";
import { freePort } from "../harness/net.js";
import {
  rulesWithHoldDuration,
  startPrometheus,
  type PromAlert,
  type PromRuleGroup,
  type PrometheusHandle,
} from "../harness/prometheus.js";
import { startTestEdge } from "../harness/test-edge.js";

const deploy = (path: string): string =>
  fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url));
const ALERTS = deploy("prometheus/alerts.yaml");
const ALERTS_TEXT = readFileSync(ALERTS, "utf8");
/** The copy's group names: `<name>` + this. */
const FAST = "-for-0s";

interface RuleFile {
  groups: {
    name: string;
    rules: { alert: string; expr: string; for?: string; labels?: { severity?: string } }[];
  }[];
}
const RULES = parse(ALERTS_TEXT) as RuleFile;

const keystone = inject("keystone");
let master: Relay;
let memcached: MemcachedHandle;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
/** The edge's admin `host:port`: Prometheus' target, and its `instance` label. */
let instance = "";
let prometheus: PrometheusHandle | undefined;
/** The first test's traffic, stopped and draining. */
let trafficDone: Promise<void> = Promise.resolve();

/**
 * A TCP relay on a loopback port to the harness Keystone: the edge's way to the master.
 * `cut()` closes it and every connection through it (the master is unreachable:
 * connection refused), `restore()` listens on the same port again.
 */
interface Relay {
  readonly url: string;
  cut(): Promise<void>;
  restore(): Promise<void>;
}

async function startRelay(to: URL): Promise<Relay> {
  const port = await freePort();
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  const track = (socket: Socket, peer: () => Socket): void => {
    sockets.add(socket);
    socket.on("error", () => peer().destroy());
    socket.on("close", () => {
      sockets.delete(socket);
      peer().destroy();
    });
  };
  const restore = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const s = createServer((client) => {
        const upstream = connect({ host: to.hostname, port: Number(to.port) });
        track(client, () => upstream);
        track(upstream, () => client);
        client.pipe(upstream).pipe(client);
      });
      s.once("error", reject);
      s.listen({ host: "127.0.0.1", port }, () => {
        server = s;
        resolve();
      });
    });
  await restore();
  return {
    url: `http://127.0.0.1:${String(port)}${to.pathname}`,
    restore,
    async cut() {
      const s = server;
      server = undefined;
      if (s === undefined) return;
      const closed = new Promise<void>((resolve) => s.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}

beforeAll(async () => {
  const [deadPort, adminPort] = await Promise.all([freePort(), freePort()]);
  expect(deadPort).not.toBe(adminPort);
  instance = `127.0.0.1:${String(adminPort)}`;
  // Prometheus first: its scrape manager takes ~5 s to pick the target up; the rest starts
  // meanwhile (scrapes fail until the edge listens)
  prometheus = await startPrometheus({
    targets: [instance],
    ruleFiles: [
      ALERTS,
      { name: "alerts-for-0s.yaml", content: rulesWithHoldDuration(ALERTS_TEXT, "0s", FAST) },
    ],
  });
  [master, memcached, echo] = await Promise.all([
    startRelay(new URL(keystone.url)),
    startMemcached(),
    startEchoUpstream(),
  ]);
  ({ edge, url: edgeUrl } = await startTestEdge({
    ...edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      // generous: a Keystone call timing out on a busy machine counts as a failure
      timeoutMs: 10_000,
      cache: {
        memcached_servers: [memcached.address],
        memcache_secret_key: "prometheus-test-secret-0123456789",
        context_cache_time: 1,
        stale_if_error: 900,
      },
      keystone: {
        // region-local first: nothing listens there (connection refused)
        endpoints: [
          { name: "regional", url: `http://127.0.0.1:${String(deadPort)}/v3` },
          { name: "master", url: master.url },
        ],
        request_timeout_ms: 20_000, // likewise
        failure_threshold: 2,
        open_duration_ms: 1_000,
        probe_interval_ms: 200,
        revocation_poll_interval_ms: 1_000,
      },
    }),
    admin_listen: instance,
  }));
}, 120_000);

afterAll(async () => {
  await Promise.allSettled([...drivers].map((d) => d.stop()));
  await prometheus?.stop();
  await edge.close(1_000);
  await echo.stop();
  await memcached.stop();
  await master.cut();
});

function prom(): PrometheusHandle {
  if (prometheus === undefined) throw new Error("prometheus did not start");
  return prometheus;
}

/** Polls `check` every 200 ms until it returns a value, or fails after `ms`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}\n${prom().log()}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function send(token: string): Promise<number> {
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

/** A project token the harness Keystone issues now: never seen by the edge. */
async function freshToken(): Promise<string> {
  return (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}

/** The single value of an instant query that must return exactly one sample. */
async function scalar(expr: string): Promise<number> {
  const result = await prom().query(expr);
  expect(result, expr).toHaveLength(1);
  return Number(result[0]?.value[1]);
}

/** `keystone_edge_validations_total` as the edge counts it: `source/result` → count. */
async function edgeValidations(): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const line of (await edge.metrics.registry.metrics()).split("\n")) {
    const m = /^keystone_edge_validations_total\{source="([^"]+)",result="([^"]+)"\} (\S+)$/.exec(
      line,
    );
    if (m) out[`${String(m[1])}/${String(m[2])}`] = Number(m[3]);
  }
  return out;
}

/** Firing alerts, as sorted `alertname[/endpoint]` strings. */
async function firing(): Promise<string[]> {
  return (await prom().alerts())
    .filter((a) => a.state === "firing")
    .map(
      (a) =>
        `${String(a.labels["alertname"])}${a.labels["endpoint"] ? `/${a.labels["endpoint"]}` : ""}`,
    )
    .sort();
}

/** Waits until exactly `expected` are firing (sorted `alertname[/endpoint]`). */
async function untilFiring(expected: string[], ms = 15_000): Promise<void> {
  let last: string[] = [];
  await until(
    `firing alerts to be [${expected.join(", ")}]`,
    async () => {
      last = await firing();
      return JSON.stringify(last) === JSON.stringify([...expected].sort()) ? true : undefined;
    },
    ms,
  ).catch((e: unknown) => {
    throw new Error(`${String(e)}\nlast seen firing: [${last.join(", ")}]`);
  });
}

/** Each rule's state in one rule file: `alertname` → inactive | pending | firing. */
async function ruleStates(file: "original" | "copy"): Promise<Record<string, string>> {
  const groups = await prom().rules();
  const path = file === "original" ? ALERTS : prom().ruleFiles[1];
  const out: Record<string, string> = {};
  for (const g of groups.filter((g) => g.file === path)) {
    for (const r of g.rules) out[r.name] = String(r.state);
  }
  return out;
}

interface Traffic {
  check(): void;
  stop(): Promise<void>;
}
/** Traffic not stopped yet (afterAll stops it when a test failed midway). */
const drivers = new Set<Traffic>();

/**
 * Background traffic until `stop()`: one token again and again (L1 hits) with a garbage
 * one (refused locally, then from the negative cache), and new tokens of the same user and
 * scope one after the other (Keystone, or the context cache within context_cache_time).
 * `check()` throws the first failure.
 */
function drive(): Traffic {
  let running = true;
  let failure: Error | undefined;
  const loop = async (body: () => Promise<void>): Promise<void> => {
    try {
      while (running) await body();
    } catch (e) {
      failure ??= e instanceof Error ? e : new Error(String(e));
    }
  };
  const tokenPromise = freshToken();
  const loops = [
    loop(async () => {
      const token = await tokenPromise;
      for (let i = 0; i < 5; i++) expect(await send(token)).toBe(200);
      expect(await send("not-a-token")).toBe(401);
      await new Promise((r) => setTimeout(r, 100));
    }),
    loop(async () => {
      expect(await send(await freshToken())).toBe(200);
    }),
  ];
  const check = (): void => {
    if (failure !== undefined) throw failure;
  };
  const traffic: Traffic = {
    check,
    async stop() {
      running = false;
      await Promise.all(loops);
      drivers.delete(traffic);
      check();
    },
  };
  drivers.add(traffic);
  return traffic;
}

const ALERT_NAMES = RULES.groups.flatMap((g) => g.rules.map((r) => r.alert));

describe("a real Prometheus scraping a running edge", () => {
  it("scrapes the edge's /metrics: up, no scrape error, rates from real traffic", async () => {
    // real traffic while Prometheus scrapes: Keystone validations (through the master),
    // L1, context and memcached lookups, tokens refused locally
    const traffic = drive();
    try {
      const target = await until(
        "the edge to be scraped",
        async () => {
          traffic.check();
          const targets = await prom().targets();
          expect(targets.length).toBeLessThanOrEqual(1); // none until discovery has run
          return targets[0]?.health === "up" ? targets[0] : undefined;
        },
        15_000,
      );
      expect(target.scrapeUrl).toBe(`http://${instance}/metrics`);
      expect(target.lastError).toBe("");
      expect(target.labels).toMatchObject({ job: "keystone-edge", instance });
      expect(await scalar(`up{job="keystone-edge",instance="${instance}"}`)).toBe(1);
      await until(
        "rates of cache hits and Keystone calls",
        async () => {
          traffic.check();
          const hits = await prom().query(
            `sum(rate(keystone_edge_cache_lookups_total{instance="${instance}",result="hit"}[1m])) > 0`,
          );
          const calls = await prom().query(
            `sum(rate(keystone_edge_keystone_call_duration_seconds_count{instance="${instance}",endpoint="master",outcome="ok"}[1m])) > 0`,
          );
          return hits.length === 1 && calls.length === 1 ? true : undefined;
        },
        20_000,
      );
    } finally {
      // it drains while the rules are checked; the next test compares the counts
      trafficDone = traffic.stop();
      void trafficDone.catch(() => undefined);
    }
  });

  it("loads every rule group of alerts.yaml (and its for: 0s copy), every rule evaluating cleanly, again and again", async () => {
    const copy = prom().ruleFiles[1] ?? "";
    const evaluations = new Map<string, Set<string>>([
      [ALERTS, new Set()],
      [copy, new Set()],
    ]);
    const check = (groups: PromRuleGroup[], file: string, suffix: string): boolean => {
      const loaded = groups.filter((g) => g.file === file);
      expect(loaded.map((g) => g.name)).toEqual(RULES.groups.map((g) => `${g.name}${suffix}`));
      let evaluated = true;
      for (const [i, group] of loaded.entries()) {
        const want = RULES.groups[i]?.rules ?? [];
        expect(group.rules.map((r) => r.name)).toEqual(want.map((r) => r.alert));
        for (const [j, rule] of group.rules.entries()) {
          expect(rule.type).toBe("alerting");
          // informational alerts (a drill under way) hold no page back; the others wait a minute
          const paging = want[j]?.labels?.severity !== "info";
          // an expression Prometheus cannot evaluate against the real series shows here
          expect(rule.lastError ?? "", `${file}: ${rule.name}`).toBe("");
          expect(rule.health, `${file}: ${rule.name}`).not.toBe("err");
          if (suffix === FAST) expect(rule.duration, rule.name).toBe(0);
          else if (paging) expect(rule.duration, rule.name).toBeGreaterThanOrEqual(60);
          else expect(rule.duration ?? 0, rule.name).toBe(0);
          if (rule.health !== "ok") evaluated = false;
        }
        if (evaluated) evaluations.get(file)?.add(group.lastEvaluation);
      }
      return evaluated;
    };
    await until(
      "three evaluations of every rule, all healthy",
      async () => {
        const groups = await prom().rules();
        const ok = check(groups, ALERTS, "") && check(groups, copy, FAST);
        return ok && [...evaluations.values()].every((s) => s.size >= 3) ? true : undefined;
      },
      10_000,
    );
    const names = (await prom().rules()).flatMap((g) => g.rules.map((r) => r.name));
    expect(names.sort()).toEqual([...ALERT_NAMES, ...ALERT_NAMES].sort());
  });

  it("Prometheus holds the counts the edge keeps; every metric the alerts read has a live series; the alerts' and dashboard's expressions answer", async () => {
    await trafficDone;
    // traffic over: the latest scrape holds exactly what the edge counted
    const counted = await edgeValidations();
    expect(counted["l1/valid"]).toBeGreaterThanOrEqual(5);
    expect(counted["keystone/valid"]).toBeGreaterThanOrEqual(1);
    expect(counted["local_reject/invalid"]).toBeGreaterThanOrEqual(1);
    let scraped: Record<string, number> = {};
    await until(
      "Prometheus' latest validation counts to equal the edge's",
      async () => {
        scraped = {};
        for (const s of await prom().query(
          `keystone_edge_validations_total{instance="${instance}"}`,
        )) {
          scraped[`${String(s.metric["source"])}/${String(s.metric["result"])}`] = Number(
            s.value[1],
          );
        }
        return JSON.stringify(Object.entries(scraped).sort()) ===
          JSON.stringify(Object.entries(counted).sort())
          ? true
          : undefined;
      },
      5_000,
    ).catch((e: unknown) => {
      throw new Error(
        `${String(e)}\nedge: ${JSON.stringify(counted)}\nprometheus: ${JSON.stringify(scraped)}`,
      );
    });
    const live = new Set(
      (
        await prom().query(
          `count by (__name__) ({__name__=~"keystone_edge_.+",instance="${instance}"})`,
        )
      ).map((s) => String(s.metric["__name__"])),
    );
    for (const rule of RULES.groups.flatMap((g) => g.rules)) {
      const used = [...rule.expr.matchAll(/\bkeystone_edge_[a-z0-9_]+/g)].map((m) => m[0]);
      expect(used.length, rule.alert).toBeGreaterThan(0);
      for (const name of used) {
        // This edge is one process without `tls`: the certificate's end is absent (on
        // purpose: a 0 would fire its alert), and so are the supervisor's series.
        if (name.startsWith("keystone_edge_tls_") || name.startsWith("keystone_edge_worker"))
          continue;
        expect(live, `${rule.alert}: ${name}`).toContain(name);
      }
    }

    // the hit-rate alert's ratio: a real share of validations that went to Keystone
    const keystoneShare = await scalar(
      `sum by (instance) (rate(keystone_edge_validations_total{instance="${instance}",source="keystone",result!="unavailable"}[5m]))` +
        ` / sum by (instance) (rate(keystone_edge_validations_total{instance="${instance}",result!="unavailable"}[5m]))`,
    );
    expect(keystoneShare).toBeGreaterThan(0);
    expect(keystoneShare).toBeLessThan(0.5);
    // hit rate per tier: L1 served most
    const hitRates = await prom().query(
      `sum by (tier) (rate(keystone_edge_cache_lookups_total{instance="${instance}",result!="miss"}[1m]))` +
        ` / sum by (tier) (rate(keystone_edge_cache_lookups_total{instance="${instance}"}[1m]))`,
    );
    const byTier: Record<string, number> = {};
    for (const s of hitRates) byTier[String(s.metric["tier"])] = Number(s.value[1]);
    expect(Object.keys(byTier)).toContain("l1");
    expect(Object.keys(byTier).filter((t) => t.startsWith("memcached")).length).toBeGreaterThan(0);
    expect(byTier["l1"]).toBeGreaterThan(0); // hits…
    expect(byTier["l1"]).toBeLessThan(1); // …and misses (new tokens)
    // breakers: the dead regional endpoint open, the master closed
    const breakers = await prom().query(
      `keystone_edge_keystone_breaker_state{instance="${instance}"} == 1`,
    );
    expect(
      Object.fromEntries(breakers.map((s) => [s.metric["endpoint"], s.metric["state"]])),
    ).toEqual({ regional: "open", master: "closed" });
    expect(
      await scalar(
        `sum by (instance) (keystone_edge_keystone_breaker_state{instance="${instance}",state="closed"})`,
      ),
    ).toBe(1);
    // keys: healthy, the primary key days younger than the alert's threshold
    const age = await scalar(`keystone_edge_key_primary_age_seconds{instance="${instance}"}`);
    expect(age).toBeGreaterThanOrEqual(0);
    expect(age).toBeLessThan(14 * 86_400);
    expect(await scalar(`keystone_edge_key_repository_healthy{instance="${instance}"}`)).toBe(1);
    expect(await scalar(`keystone_edge_degraded_mode{instance="${instance}"}`)).toBe(0);
    expect(
      await scalar(`keystone_edge_revocation_feed_lag_seconds{instance="${instance}"}`),
    ).toBeLessThan(120);

    // every query of the Grafana dashboard evaluates, and answers with series
    const dash = JSON.parse(readFileSync(deploy("grafana/keystone-edge.json"), "utf8")) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    for (const panel of dash.panels) {
      for (const target of panel.targets) {
        const expr = target.expr
          .replaceAll("$instance", instance)
          .replaceAll("$__rate_interval", "1m");
        const result = await prom().query(expr); // throws on an error
        // no upstream failed in this test: that counter has no series yet; and this edge
        // is one process without `tls`: no worker or certificate series
        if (
          [
            "keystone_edge_upstream_errors_total",
            "keystone_edge_worker",
            "keystone_edge_tls_",
          ].some((m) => expr.includes(m))
        )
          continue;
        expect(result.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
      }
    }
  });

  it("an endpoint on a closed port: its alert fires (pending under the real for: 5m), nothing else", async () => {
    await untilFiring(["KeystoneEdgeEndpointDown/regional"]);
    const alert = (await prom().alerts()).find(
      (a) => a.state === "firing" && a.labels["alertname"] === "KeystoneEdgeEndpointDown",
    );
    expect(alert?.labels).toEqual({
      alertname: "KeystoneEdgeEndpointDown",
      endpoint: "regional",
      instance,
      job: "keystone-edge",
      severity: "warning",
      state: "open",
    });
    expect(alert?.annotations["summary"]).toBe(
      `keystone-edge ${instance}: Keystone endpoint regional out of rotation`,
    );
    // the shipped rule sees the same condition, and waits for its 5 minutes
    const original = await ruleStates("original");
    expect(original).toEqual({
      ...Object.fromEntries(ALERT_NAMES.map((n) => [n, "inactive"])),
      KeystoneEdgeEndpointDown: "pending",
    });
    const copy = await ruleStates("copy");
    expect(copy).toEqual({
      ...Object.fromEntries(ALERT_NAMES.map((n) => [n, "inactive"])),
      KeystoneEdgeEndpointDown: "firing",
    });
  });

  it("the master cut off too: master unreachable and degraded mode fire; restored, they resolve", async () => {
    await master.cut();
    // known user and scope, new tokens: served from stale contexts
    const traffic = drive();
    await until(
      "master unreachable and degraded mode to fire",
      async () => {
        traffic.check();
        const now = await firing();
        return now.includes("KeystoneEdgeMasterUnreachable") &&
          now.includes("KeystoneEdgeDegradedMode")
          ? true
          : undefined;
      },
      20_000,
    );
    await untilFiring([
      "KeystoneEdgeDegradedMode",
      "KeystoneEdgeEndpointDown/master",
      "KeystoneEdgeEndpointDown/regional",
      "KeystoneEdgeMasterUnreachable",
    ]);
    expect(
      await scalar(
        `keystone_edge_validations_total{instance="${instance}",source="degraded",result="valid"}`,
      ),
    ).toBeGreaterThan(0);
    const alerts: PromAlert[] = await prom().alerts();
    const unreachable = alerts.find(
      (a) => a.labels["alertname"] === "KeystoneEdgeMasterUnreachable",
    );
    expect(unreachable?.labels).toEqual({
      alertname: "KeystoneEdgeMasterUnreachable",
      instance,
      severity: "critical",
    });
    expect(unreachable?.annotations["summary"]).toBe(
      `keystone-edge ${instance}: no Keystone endpoint answers`,
    );
    // keys, feed (polls fail, but for seconds, not minutes) and hit rate: no alert
    const copy = await ruleStates("copy");
    for (const quiet of [
      "KeystoneEdgeKeyRepositoryFailing",
      "KeystoneEdgeKeyRingOld",
      "KeystoneEdgeRevocationFeedStale",
      "KeystoneEdgeHitRateCollapse",
    ]) {
      expect(copy[quiet], quiet).toBe("inactive");
    }
    // the shipped rules see it too (each group evaluates on its own schedule), and wait
    await until(
      "the shipped rules' master unreachable and degraded mode to be pending",
      async () => {
        const original = await ruleStates("original");
        return original["KeystoneEdgeMasterUnreachable"] === "pending" &&
          original["KeystoneEdgeDegradedMode"] === "pending"
          ? true
          : undefined;
      },
      5_000,
    );

    // the master reachable again: the probe closes its breaker, a Keystone answer ends degraded mode
    await master.restore();
    await until(
      "master unreachable and degraded mode to resolve",
      async () => {
        traffic.check();
        const now = await firing();
        return JSON.stringify(now) === JSON.stringify(["KeystoneEdgeEndpointDown/regional"])
          ? true
          : undefined;
      },
      20_000,
    );
    await traffic.stop();
  });
});
