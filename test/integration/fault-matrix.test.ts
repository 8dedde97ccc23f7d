/**
 * The fault matrix against the real Keystone (docs/security.md, "Fault matrix"), for the
 * rows whose behaviour depends on Keystone itself:
 *
 * - Keystone slow: a TCP relay (test/harness/tcp-relay.ts) in front of the harness
 *   Keystone holds every answer back 5 s. Known tokens and known scopes are answered as
 *   fast as ever, a token only Keystone can settle gets 503 with Retry-After within
 *   `request_timeout_ms` (never a hang), the breaker opens and then answers at once, and
 *   when Keystone is fast again the same token is accepted.
 * - Keystone refusing the edge's service token: the edge's own service user has its
 *   password changed at Keystone, which revokes its token and refuses its credentials.
 *   The edge re-authenticates once, answers 503 (never 401) for what it cannot settle,
 *   keeps serving what it knows, does not try a login per request, logs no token, and is
 *   back once the password is restored.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createCacheFactory } from "../../src/edge/cache-factory.js";
import { validateConfig } from "../../src/config/load.js";
import { startEdge, type RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { api, createFixtures } from "../harness/fixtures.js";
import { startTcpRelay, type TcpRelay } from "../harness/tcp-relay.js";
import { RecordingLogger } from "../harness/doubles.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
let echo: EchoUpstream;

beforeAll(async () => {
  echo = await startEchoUpstream();
});

afterAll(async () => {
  await echo.stop();
});

interface Answer {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly ms: number;
}

async function through(url: string, token: string): Promise<Answer> {
  const started = performance.now();
  const res = await fetch(`${url}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return {
    status: res.status,
    retryAfter: res.headers.get("retry-after"),
    ms: performance.now() - started,
  };
}

/** Polls `check` every 200 ms until it holds; fails after `ms` naming `what`. */
function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  return waitUntil(check, ms, what, 200);
}

const adminToken = async (): Promise<string> =>
  (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })).token;

describe("fault matrix: Keystone slow", () => {
  const REQUEST_TIMEOUT_MS = 1_500;
  let relay: TcpRelay;
  let edge: RunningEdge;
  let url = "";

  beforeAll(async () => {
    const target = new URL(keystone.url);
    relay = await startTcpRelay({ host: target.hostname, port: Number(target.port) });
    const viaRelay = `http://127.0.0.1:${String(relay.port)}${target.pathname}`;
    edge = await startEdge(
      validateConfig(
        edgeConfigDocument(keystone, {
          upstream: echo.url,
          user: adminUser(keystone),
          timeoutMs: REQUEST_TIMEOUT_MS,
          keystone: {
            endpoints: [viaRelay],
            request_timeout_ms: REQUEST_TIMEOUT_MS,
            failure_threshold: 2,
            open_duration_ms: 1_000,
            probe_interval_ms: 200,
            revocation_poll_interval_ms: 3_600_000,
          },
        }),
      ),
      { cache: createCacheFactory() },
    );
    await edge.serviceToken.ensure();
    url = `http://127.0.0.1:${String(edge.address.port)}`;
  }, 120_000);

  afterAll(async () => {
    await edge.close(500);
    await relay.close();
  });

  it("known tokens unaffected, a new scope 503 within request_timeout_ms, breaker opens, back when fast", async () => {
    const known = await adminToken();
    expect((await through(url, known)).status).toBe(200); // user + scope now known
    const unknownScope = (await issueToken(keystone, { kind: "system" })).token;

    relay.delayMs = 5_000;
    relay.cut(); // pooled connections too: every answer from now on is late
    const slow = through(url, unknownScope);
    // While that validation waits on Keystone, the rest of the edge keeps its latency.
    const meanwhile: Answer[] = [];
    for (let i = 0; i < 20; i++) meanwhile.push(await through(url, known));
    meanwhile.push(await through(url, await adminToken())); // new token, known scope
    const refused = await slow;
    expect(refused.status).toBe(503);
    expect(refused.retryAfter).toBe("1");
    expect(refused.ms).toBeGreaterThanOrEqual(REQUEST_TIMEOUT_MS - 100);
    expect(refused.ms).toBeLessThan(REQUEST_TIMEOUT_MS + 1_000);
    expect(meanwhile.map((a) => a.status)).toEqual(meanwhile.map(() => 200));
    expect(Math.max(...meanwhile.map((a) => a.ms))).toBeLessThan(500);

    // A second late answer opens the breaker: from then on 503 at once, no waiting.
    expect((await through(url, unknownScope)).status).toBe(503);
    const fast = await through(url, unknownScope);
    expect(fast.status).toBe(503);
    expect(fast.ms).toBeLessThan(500);
    const timeouts = (await edge.metrics.keystoneCalls.get()).values
      .filter((v) => v.metricName?.endsWith("_count") === true && v.labels["outcome"] === "timeout")
      .reduce((a, v) => a + v.value, 0);
    expect(timeouts).toBeGreaterThanOrEqual(2);
    const a = edge.adminAddress;
    const readyz = (await (await fetch(`http://${a.host}:${String(a.port)}/readyz`)).json()) as {
      ready: boolean;
      checks: { name: string; degraded?: boolean }[];
    };
    expect(readyz.ready).toBe(true);
    expect(readyz.checks.find((c) => c.name === "keystone")?.degraded).toBe(true);

    // Fast again: the probe closes the breaker; the token was never remembered as invalid.
    relay.delayMs = 0;
    relay.cut();
    await until(
      "the token to be accepted again",
      async () => (await through(url, unknownScope)).status === 200,
      30_000,
    );
    expect((await through(url, known)).status).toBe(200);
  });
});

describe("fault matrix: Keystone refuses the edge's service token (401)", () => {
  const PASSWORD = "fault-matrix-password-1";
  const CHANGED = "fault-matrix-password-2";
  const logger = new RecordingLogger();
  let userId = "";
  let edge: RunningEdge;
  let url = "";

  const setPassword = async (password: string): Promise<void> => {
    const res = await api(keystone, await adminToken(), "PATCH", `/users/${userId}`, {
      user: { password },
    });
    expect(res.status).toBe(200);
  };

  beforeAll(async () => {
    await createFixtures(keystone); // the `service` role and project
    const admin = await adminToken();
    const first = (json: Record<string, unknown>, key: string): string => {
      const list = json[key] as { id: string }[] | undefined;
      const id = list?.[0]?.id;
      if (id === undefined) throw new Error(`no ${key}`);
      return id;
    };
    const project = first(
      (await api(keystone, admin, "GET", "/projects?name=service")).json,
      "projects",
    );
    const role = first((await api(keystone, admin, "GET", "/roles?name=service")).json, "roles");
    const name = `fault-svc-${String(Date.now())}`;
    const made = await api(keystone, admin, "POST", "/users", {
      user: { name, domain_id: "default", password: PASSWORD },
    });
    expect(made.status).toBe(201);
    userId = (made.json["user"] as { id: string }).id;
    const grant = await api(
      keystone,
      admin,
      "PUT",
      `/projects/${project}/users/${userId}/roles/${role}`,
    );
    expect(grant.status).toBe(204);
    edge = await startEdge(
      validateConfig(
        edgeConfigDocument(keystone, {
          upstream: echo.url,
          user: { name, password: PASSWORD, project: "service" },
          // every new token must be put to Keystone: no per-scope context answers it
          cache: { context_cache_time: 0 },
        }),
      ),
      { cache: createCacheFactory(), logger },
    );
    await edge.serviceToken.ensure();
    url = `http://127.0.0.1:${String(edge.address.port)}`;
  }, 120_000);

  afterAll(async () => {
    await edge.close(500);
    await api(keystone, await adminToken(), "DELETE", `/users/${userId}`);
  });

  it("re-authenticates once, 503 (never 401) for what it cannot settle, no login per request, no token in logs, back once restored", async () => {
    const known = await adminToken();
    expect((await through(url, known)).status).toBe(200);
    const serviceTokenBefore = edge.serviceToken.current() ?? "";
    expect(serviceTokenBefore).not.toBe("");

    await setPassword(CHANGED); // Keystone revokes the service user's tokens
    const fresh = (await issueToken(keystone, { kind: "system" })).token;
    const refused = await through(url, fresh);
    expect(refused.status).toBe(503);
    expect(refused.retryAfter).not.toBeNull();
    expect(edge.serviceToken.snapshot()).toMatchObject({
      kind: "none",
      lastError: expect.stringContaining("HTTP 401") as unknown,
    });
    const failedLogins = (): number =>
      logger.lines.filter((l) => l.message === "service token authentication failed").length;
    expect(failedLogins()).toBe(1);

    expect((await through(url, known)).status).toBe(200); // what it settled stands
    for (let i = 0; i < 10; i++) {
      const again = await through(url, fresh);
      expect(again.status).toBe(503);
      expect(again.ms).toBeLessThan(500);
    }
    expect(failedLogins()).toBeLessThanOrEqual(3); // the back-off's retries, not one per request
    const logged = logger.text();
    for (const secret of [known, fresh, serviceTokenBefore, PASSWORD, CHANGED]) {
      expect(logged).not.toContain(secret);
    }

    await setPassword(PASSWORD);
    await until(
      "the edge to log in again and accept the token",
      async () => (await through(url, fresh)).status === 200,
      45_000,
    );
    expect(edge.serviceToken.snapshot().kind).toBe("valid");
  });
});
