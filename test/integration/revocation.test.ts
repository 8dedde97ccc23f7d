/**
 * The revocation feed against a real Keystone: a token the edge has cached is refused
 * within the poll interval (+ 2 s) after Keystone revokes it — the token deleted, its user
 * disabled, its project deleted — while keystonemiddleware would serve it from cache for
 * up to token_cache_time. Tokens of other users stay good.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { startTestEdge } from "../harness/test-edge.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { api, authenticate } from "../harness/fixtures.js";

const keystone = inject("keystone");
const POLL_MS = 1_000;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
let admin = "";

beforeAll(async () => {
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: adminUser(keystone),
      keystone: { revocation_poll_interval_ms: POLL_MS },
    }),
  ));
  admin = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
});

/** A new user with `member` on a new project, and a token of theirs. */
async function freshUser(
  tag: string,
): Promise<{ userId: string; projectId: string; token: string }> {
  const name = `rev-${tag}-${String(Date.now())}`;
  const project = await api(keystone, admin, "POST", "/projects", {
    project: { name, domain_id: "default" },
  });
  const user = await api(keystone, admin, "POST", "/users", {
    user: { name, domain_id: "default", password: "revocation-pw-1" },
  });
  const roles = await api(keystone, admin, "GET", "/roles?name=member");
  const memberId = (roles.json.roles as { id: string }[])[0]?.id ?? "";
  const projectId = (project.json.project as { id: string }).id;
  const userId = (user.json.user as { id: string }).id;
  await api(keystone, admin, "PUT", `/projects/${projectId}/users/${userId}/roles/${memberId}`);
  const token = await authenticate(keystone, {
    identity: {
      methods: ["password"],
      password: { user: { id: userId, password: "revocation-pw-1" } },
    },
    scope: { project: { id: projectId } },
  });
  return { userId, projectId, token };
}

async function status(token: string): Promise<number> {
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

/** Polls until `token` is refused; returns the milliseconds it took. */
async function refusedWithin(token: string, ms: number): Promise<number> {
  const started = Date.now();
  for (;;) {
    if ((await status(token)) === 401) return Date.now() - started;
    if (Date.now() - started > ms) throw new Error(`still accepted after ${String(ms)} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("revocation feed", () => {
  it("a cached token deleted at Keystone is refused within the poll interval", async () => {
    const victim = await freshUser("delete");
    const bystander = await freshUser("bystander");
    expect(await status(victim.token)).toBe(200);
    expect(await status(victim.token)).toBe(200); // now from the in-process cache
    expect(await status(bystander.token)).toBe(200);
    const del = await api(keystone, admin, "DELETE", "/auth/tokens", undefined, victim.token);
    expect(del.status).toBe(204);
    expect(await refusedWithin(victim.token, POLL_MS + 2_000)).toBeLessThanOrEqual(POLL_MS + 2_000);
    expect(await status(bystander.token)).toBe(200);
    const text = await edge.metrics.registry.metrics();
    expect(text).toMatch(/keystone_edge_revocation_events_applied_total [1-9]/);
    // refused by the edge itself, from the cache and the feed: Keystone is not asked again
    expect(text).toMatch(
      /keystone_edge_validations_total\{source="revocation",result="invalid"\} [1-9]/,
    );
    expect(text).not.toMatch(
      /keystone_edge_validations_total\{source="keystone",result="invalid"\}/,
    );
  });

  it("a disabled user's cached token is refused within the poll interval", async () => {
    const victim = await freshUser("disable");
    expect(await status(victim.token)).toBe(200);
    const patch = await api(keystone, admin, "PATCH", `/users/${victim.userId}`, {
      user: { enabled: false },
    });
    expect(patch.status).toBe(200);
    await refusedWithin(victim.token, POLL_MS + 2_000);
  });

  it("a deleted project's cached token is refused within the poll interval", async () => {
    const victim = await freshUser("project");
    expect(await status(victim.token)).toBe(200);
    await api(keystone, admin, "PATCH", `/projects/${victim.projectId}`, {
      project: { enabled: false },
    });
    const del = await api(keystone, admin, "DELETE", `/projects/${victim.projectId}`);
    expect(del.status).toBe(204);
    await refusedWithin(victim.token, POLL_MS + 2_000);
  });
});
