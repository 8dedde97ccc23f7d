/**
 * Shadow validation against the real master Keystone: the edge's own verdicts, sampled,
 * asked again of Keystone in the background.
 *
 * - An edge whose revocation feed is held back (it polls once an hour) keeps serving a
 *   token Keystone has revoked: the sampled verdicts of the in-process cache disagree with
 *   the master, counted (`outcome="disagree", tier="l1"`) and logged with the token's
 *   short hash, never the token.
 * - An edge given the wrong `fernet.auth_methods` order answers new tokens of a known
 *   scope with the wrong methods: the context tier disagrees on `methods`.
 * - A healthy region agrees with the master over a few thousand compared decisions, a
 *   token revoked at the master mid-way included (the edge refuses it within its poll
 *   interval, before its second look: convergence, not disagreement).
 *
 * Every case fails if shadow validation is taken out: it reads the counts it makes.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { RecordingLogger } from "../harness/doubles.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { api, authenticate } from "../harness/fixtures.js";
import { startKeystoneReplica } from "../harness/keystone-replica.js";
import { startMemcached } from "../harness/memcached.js";
import { startTestEdge } from "../harness/test-edge.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let admin = "";
const started: RunningEdge[] = [];
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  echo = await startEchoUpstream();
  admin = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}, 300_000);

afterAll(async () => {
  await Promise.all(started.map((e) => e.close(1_000)));
  for (const c of cleanups) await c();
  await echo.stop();
});

/** An edge over the harness Keystone with shadow validation on every eligible verdict. */
async function edgeWith(
  options: {
    readonly keystone?: Record<string, unknown>;
    readonly shadow?: Record<string, unknown>;
    readonly authMethods?: readonly string[];
  },
  logger?: RecordingLogger,
): Promise<{ edge: RunningEdge; url: string }> {
  const document = edgeConfigDocument(keystone, {
    upstream: echo.url,
    user: adminUser(keystone),
    ...(options.keystone === undefined ? {} : { keystone: options.keystone }),
    shadowValidation: { sample_ratio: 1, max_per_second: 1_000, ...options.shadow },
  });
  if (options.authMethods !== undefined) {
    (document["fernet"] as Record<string, unknown>)["auth_methods"] = options.authMethods;
  }
  const running = await startTestEdge(document, logger === undefined ? {} : { logger });
  started.push(running.edge);
  return running;
}

/** A new user with `member` on a new project; `tokens` issues that many of their tokens. */
async function freshUser(tag: string): Promise<{ token: () => Promise<string> }> {
  const name = `shadow-${tag}-${String(Date.now())}`;
  const project = await api(keystone, admin, "POST", "/projects", {
    project: { name, domain_id: "default" },
  });
  const user = await api(keystone, admin, "POST", "/users", {
    user: { name, domain_id: "default", password: "shadow-pw-1" },
  });
  const roles = await api(keystone, admin, "GET", "/roles?name=member");
  const memberId = (roles.json.roles as { id: string }[])[0]?.id ?? "";
  const projectId = (project.json.project as { id: string }).id;
  const userId = (user.json.user as { id: string }).id;
  await api(keystone, admin, "PUT", `/projects/${projectId}/users/${userId}/roles/${memberId}`);
  return {
    token: () =>
      authenticate(keystone, {
        identity: {
          methods: ["password"],
          password: { user: { id: userId, password: "shadow-pw-1" } },
        },
        scope: { project: { id: projectId } },
      }),
  };
}

async function status(url: string, token: string): Promise<number> {
  const res = await fetch(`${url}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

/** The values of a counter's series, by their labels as `k=v,k=v` in label order. */
async function series(edge: RunningEdge, name: string): Promise<Map<string, number>> {
  const text = await edge.metrics.registry.metrics();
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    const m = new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`).exec(line);
    if (m === null) continue;
    const labels = (m[1] ?? "").replaceAll('"', "");
    out.set(labels, Number(m[2]));
  }
  return out;
}

async function shadowCount(edge: RunningEdge, outcome: string, tier?: string): Promise<number> {
  let total = 0;
  for (const [labels, value] of await series(edge, "keystone_edge_shadow_validations_total")) {
    if (!labels.includes(`outcome=${outcome}`)) continue;
    if (tier !== undefined && !labels.includes(`tier=${tier}`)) continue;
    total += value;
  }
  return total;
}

describe("shadow validation against the master", () => {
  it("a revocation the edge has not heard of is a disagreement of the in-process cache, logged without the token", async () => {
    const logger = new RecordingLogger();
    const { edge, url } = await edgeWith(
      {
        // The feed polls at start, then not for an hour: held back.
        keystone: { revocation_poll_interval_ms: 3_600_000 },
        shadow: { confirm_after_ms: 300 },
      },
      logger,
    );
    const user = await freshUser("revoked");
    const token = await user.token();
    expect(await status(url, token)).toBe(200); // Keystone's answer: not sampled
    expect(await status(url, token)).toBe(200); // the in-process cache: sampled, agrees
    await waitUntil(async () => (await shadowCount(edge, "agree", "l1")) >= 1, 10_000, "agree");
    const del = await api(keystone, admin, "DELETE", "/auth/tokens", undefined, token);
    expect(del.status).toBe(204);
    // The edge still serves it: it has not heard of the revocation.
    expect(await status(url, token)).toBe(200);
    await waitUntil(
      async () => (await shadowCount(edge, "disagree", "l1")) >= 1,
      10_000,
      "a counted disagreement",
    );
    const line = logger.lines.find((l) => l.message.includes("disagrees with the master"));
    expect(line?.level).toBe("error");
    expect(line?.fields["differences"]).toEqual([
      { field: "status", edge: "valid", master: "invalid" },
    ]);
    expect(JSON.stringify(logger.lines)).not.toContain(token);
  });

  it("a wrong auth_methods order is a disagreement of the context tier on methods", async () => {
    const logger = new RecordingLogger();
    const { edge, url } = await edgeWith(
      { authMethods: [...keystone.authMethods].reverse(), shadow: { confirm_after_ms: 300 } },
      logger,
    );
    const user = await freshUser("methods");
    const first = await user.token();
    expect(await status(url, first)).toBe(200); // Keystone's answer: the context is learnt
    const second = await user.token();
    expect(await status(url, second)).toBe(200); // from the context, methods decoded wrong
    await waitUntil(
      async () => (await shadowCount(edge, "disagree", "context")) >= 1,
      10_000,
      "a disagreement of the context tier",
    );
    const line = logger.lines.find((l) => l.message.includes("disagrees with the master"));
    const fields = line?.fields["differences"] as { field: string; master: string }[];
    expect(fields.map((d) => d.field)).toEqual(["methods"]);
    expect(fields[0]?.master).toBe("password");
  });

  it("a healthy region agrees over thousands of compared decisions, a revocation mid-way included", async () => {
    const POLL_MS = 1_000;
    // A master as production runs it: Keystone's own cache on (validations in milliseconds,
    // not the harness's ~0.7 s), more uwsgi threads than the edge keeps connections (each
    // idle keep-alive connection holds one: docs/operations.md, "Connections to Keystone").
    const memcached = await startMemcached();
    const master = await startKeystoneReplica(keystone, {
      cacheServer: memcached.address,
      threads: 16,
    });
    cleanups.push(
      () => master.close(),
      () => memcached.stop(),
    );
    const logger = new RecordingLogger();
    const { edge, url } = await edgeWith(
      {
        keystone: { endpoints: [master.url], revocation_poll_interval_ms: POLL_MS, connections: 8 },
        shadow: { max_in_flight: 4 },
      },
      logger,
    );
    const users = await Promise.all(["a", "b", "c"].map((t) => freshUser(`healthy-${t}`)));
    const tokens: string[] = [];
    for (const u of users) for (let i = 0; i < 3; i++) tokens.push(await u.token());
    const victim = tokens[0] ?? "";
    const WANTED = 2_000;
    let revoked = false;
    let sent = 0;
    const deadline = Date.now() + 240_000;
    const worker = async (n: number): Promise<void> => {
      for (let i = n; ; i += 8) {
        if ((await shadowCount(edge, "agree")) >= WANTED || Date.now() > deadline) return;
        for (let j = 0; j < 20; j++) {
          const token = tokens[(i + j) % tokens.length] ?? "";
          const code = await status(url, token);
          sent++;
          const expected = token === victim && revoked ? [200, 401] : [200];
          expect(
            expected,
            `token ${String(tokens.indexOf(token))}: ${JSON.stringify(logger.lines.filter((l) => l.level !== "info" && l.level !== "debug"))}`,
          ).toContain(code);
        }
        if (!revoked && (await shadowCount(edge, "agree")) >= WANTED / 4) {
          revoked = true;
          // At the master itself: its cache of the revocation list is its own.
          const del = await api(
            { ...keystone, url: master.url },
            admin,
            "DELETE",
            "/auth/tokens",
            undefined,
            victim,
          );
          expect(del.status).toBe(204);
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, (_, n) => worker(n)));
    expect(revoked).toBe(true);
    expect(await shadowCount(edge, "agree")).toBeGreaterThanOrEqual(WANTED);
    // Differences awaiting their second look settle within the confirm delay (2 × poll).
    await waitUntil(
      async () => {
        const v = await series(edge, "keystone_edge_validations_total");
        let eligible = 0;
        for (const [labels, value] of v) {
          if (/source=(keystone|degraded)/.test(labels)) continue;
          eligible += value;
        }
        const s = await series(edge, "keystone_edge_shadow_validations_total");
        const settled = [...s.values()].reduce((a, b) => a + b, 0);
        return settled === eligible;
      },
      10_000,
      "every sampled decision settled",
    );
    const disagreements = logger.lines.filter((l) => l.message.includes("disagrees"));
    expect(disagreements.slice(0, 3)).toEqual([]);
    expect(await shadowCount(edge, "disagree")).toBe(0);
    // The revoked token's refusals were compared too (the master says 404 as well).
    expect(await shadowCount(edge, "agree", "revocation")).toBeGreaterThan(0);
    expect(sent).toBeGreaterThan(WANTED);
  }, 300_000);
});
