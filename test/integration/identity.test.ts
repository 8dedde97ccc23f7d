/**
 * The regional Keystone face against the real Keystone: `GET`/`HEAD /v3/auth/tokens`
 * answered by the edge give Keystone's statuses and bodies (ignoring key and role order),
 * with and without `nocatalog`, for every fixture token kind and three callers (admin,
 * the service user, an ordinary member); the rest of the Identity API is relayed (a token
 * is issued through the edge) and version discovery points back at the edge.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { adminPasswordAuth, issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { accessRulesToken, createFixtures, type Fixtures } from "../harness/fixtures.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
const execFileAsync = promisify(execFile);
let echo: EchoUpstream;
let edge: RunningEdge;
let fixtures: Fixtures;
let identityUrl = "";
let adminToken = "";
let restricted = "";

beforeAll(async () => {
  fixtures = await createFixtures(keystone);
  // before any validation: it may add a service to the catalog, which every body must show
  restricted = await accessRulesToken(keystone, [
    { service: "compute", method: "GET", path: "/v2.1/servers" },
  ]);
  adminToken = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
  echo = await startEchoUpstream();
  const document = {
    ...edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) }),
    identity_listen: "127.0.0.1:0",
  };
  ({ edge } = await startTestEdge(document));
  const a = edge.identityAddress;
  if (a === undefined) throw new Error("no identity listener");
  identityUrl = `http://${a.host}:${String(a.port)}/v3`;
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
});

interface Answer {
  readonly status: number;
  readonly subject: string | null;
  readonly body: unknown;
}

async function ask(
  base: string,
  method: "GET" | "HEAD",
  caller: string,
  subject: string,
  query = "",
  /** `OpenStack-Identity-Access-Rules`; null: not sent. */
  accessRules: string | null = "1.0",
): Promise<Answer> {
  const res = await fetch(`${base}/auth/tokens${query}`, {
    method,
    headers: {
      "X-Auth-Token": caller,
      "X-Subject-Token": subject,
      ...(accessRules === null ? {} : { "OpenStack-Identity-Access-Rules": accessRules }),
    },
  });
  const text = await res.text();
  return {
    status: res.status,
    subject: res.status === 200 ? res.headers.get("x-subject-token") : null,
    body: res.status === 200 && method === "GET" ? normalise(JSON.parse(text)) : null,
  };
}

/** Keys sorted, role lists sorted by id: Keystone's order is not part of its contract. */
function normalise(value: unknown): unknown {
  if (Array.isArray(value)) {
    const items = value.map(normalise);
    return items.every((i) => typeof i === "object" && i !== null && "id" in i)
      ? [...items].sort((a, b) => String(a.id).localeCompare(String(b.id)))
      : items;
  }
  if (typeof value !== "object" || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([k, v]) => [k, normalise(v)]),
  );
}

/** Runs `jobs` a few at a time (the harness Keystone serves eight validations at once). */
async function few<T>(jobs: readonly (() => Promise<T>)[], at = 4): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < jobs.length; i += at) {
    out.push(...(await Promise.all(jobs.slice(i, i + at).map((j) => j()))));
  }
  return out;
}

describe("GET /v3/auth/tokens answered by the edge", () => {
  it("bodies equal Keystone's for every token kind, with and without nocatalog", async () => {
    const subjects = Object.entries(fixtures.tokens);
    const cases = subjects.flatMap(([kind, subject]) =>
      ["", "?nocatalog"].map((query) => ({ kind, subject, query })),
    );
    const results = await few(
      cases.map((c) => async () => ({
        ...c,
        ours: await ask(identityUrl, "GET", fixtures.tokens.service, c.subject, c.query),
        theirs: await ask(keystone.url, "GET", fixtures.tokens.service, c.subject, c.query),
      })),
    );
    for (const r of results) {
      expect(r.theirs.status, `${r.kind}${r.query}`).toBe(200);
      expect(r.ours, `${r.kind}${r.query}`).toEqual(r.theirs);
    }
    const withCatalog = results.find((r) => r.kind === "project" && r.query === "");
    expect(JSON.stringify(withCatalog?.ours.body)).toContain('"catalog"');
    const without = results.find((r) => r.kind === "project" && r.query === "?nocatalog");
    expect(JSON.stringify(without?.ours.body)).not.toContain('"catalog"');
  });

  it("statuses equal Keystone's: callers with and without the right, GET and HEAD, bad tokens", async () => {
    const t = fixtures.tokens;
    const garbage = "gAAAAAB-not-a-token";
    const callers = { admin: adminToken, service: t.service, alice: t.project, garbage };
    const subjects = {
      own: t.project,
      bob: t.projectOtherDomain,
      system: t.system,
      appcred: t.applicationCredential,
      garbage,
    };
    const cases = Object.entries(callers).flatMap(([c, caller]) =>
      Object.entries(subjects).flatMap(([s, subject]) =>
        (["GET", "HEAD"] as const).map((method) => ({
          label: `${c} ${method} ${s}`,
          caller,
          subject,
          method,
        })),
      ),
    );
    const results = await few(
      cases.map((c) => async () => ({
        label: c.label,
        ours: (await ask(identityUrl, c.method, c.caller, c.subject)).status,
        theirs: (await ask(keystone.url, c.method, c.caller, c.subject)).status,
      })),
    );
    const ours = Object.fromEntries(results.map((r) => [r.label, r.ours]));
    const theirs = Object.fromEntries(results.map((r) => [r.label, r.theirs]));
    expect(ours).toEqual(theirs);
    // the cases cover every answer: allowed, forbidden, not found, not authenticated
    expect(new Set(Object.values(theirs))).toEqual(new Set([200, 401, 403, 404]));
    // application-credential tokens, with and without access rules, for a caller that does
    // not declare access-rules support (Keystone refuses only the one with rules)
    for (const subject of [t.applicationCredential, restricted]) {
      const noSupport = async (base: string) =>
        (await ask(base, "GET", t.service, subject, "", null)).status;
      expect(await noSupport(identityUrl)).toBe(await noSupport(keystone.url));
    }
    const refused = await ask(identityUrl, "GET", t.service, restricted, "", null);
    expect(refused.status).toBe(404);
    expect((await ask(identityUrl, "GET", t.service, restricted)).status).toBe(200);
  });

  it("a valid token needs no Keystone call once known", async () => {
    const before = (await edge.metrics.keystoneCalls.get()).values
      .filter((v) => v.metricName?.endsWith("_count"))
      .reduce((a, v) => a + v.value, 0);
    for (let i = 0; i < 20; i++) {
      expect(
        (await ask(identityUrl, "GET", fixtures.tokens.service, fixtures.tokens.project)).status,
      ).toBe(200);
    }
    const after = (await edge.metrics.keystoneCalls.get()).values
      .filter((v) => v.metricName?.endsWith("_count"))
      .reduce((a, v) => a + v.value, 0);
    expect(after).toBe(before);
  });
});

describe("the rest of the Identity API, relayed", () => {
  it("issues a token through the edge, and the token works", async () => {
    const res = await fetch(`${identityUrl}/auth/tokens`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ auth: adminPasswordAuth(keystone) }),
    });
    const body = (await res.json()) as { token: { user: { name: string } } };
    expect(res.status).toBe(201);
    expect(body.token.user.name).toBe(keystone.adminUsername);
    const issued = res.headers.get("x-subject-token") ?? "";
    expect((await ask(identityUrl, "GET", issued, issued)).status).toBe(200);
    const projects = await fetch(`${identityUrl}/projects`, {
      headers: { "X-Auth-Token": issued },
    });
    expect(projects.status).toBe(200);
    expect(JSON.stringify(await projects.json())).toContain('"name":"admin"');
  });

  it("version discovery points clients back at the edge", async () => {
    for (const path of ["", "/v3"]) {
      const root = identityUrl.replace(/\/v3$/, "");
      const res = await fetch(`${root}${path}`);
      const text = await res.text();
      expect([200, 300]).toContain(res.status);
      expect(text).toContain(`"href":"${root}/v3/"`);
      expect(text).not.toContain(new URL(keystone.url).host);
    }
  });
});

describe("a real client, python-openstackclient, with OS_AUTH_URL at the edge", () => {
  /** `openstack <args> -f json` as Debian ships it; OS_* from this test only. */
  async function openstack(args: readonly string[]): Promise<unknown> {
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !k.startsWith("OS_")),
    ) as Record<string, string>;
    const { stdout } = await execFileAsync("/usr/bin/openstack", [...args, "-f", "json"], {
      timeout: 60_000,
      env: {
        ...env,
        OS_AUTH_URL: identityUrl,
        OS_IDENTITY_API_VERSION: "3",
        OS_USERNAME: keystone.adminUsername,
        OS_PASSWORD: keystone.adminPassword,
        OS_PROJECT_NAME: "admin",
        OS_USER_DOMAIN_ID: "default",
        OS_PROJECT_DOMAIN_ID: "default",
      },
    });
    return JSON.parse(stdout) as unknown;
  }

  it("token issue, catalog list and project list work", async () => {
    const relayedBefore = await identityRequests("relay");
    const token = (await openstack(["token", "issue"])) as { id: string; project_id: string };
    expect(token.id.length).toBeGreaterThan(100);
    // the token it got through the edge is one Keystone issued and the edge validates
    expect((await ask(identityUrl, "GET", token.id, token.id)).status).toBe(200);
    const catalog = (await openstack(["catalog", "list"])) as { Type: string }[];
    expect(catalog.map((c) => c.Type)).toContain("identity");
    const projects = (await openstack(["project", "list"])) as { Name: string }[];
    expect(projects.map((p) => p.Name)).toContain("admin");
    expect(await identityRequests("relay")).toBeGreaterThan(relayedBefore);
  }, 120_000);
});

async function identityRequests(route: string): Promise<number> {
  const values = (await edge.metrics.identityRequests.get()).values;
  return values.filter((v) => v.labels["route"] === route).reduce((a, v) => a + v.value, 0);
}
