/**
 * The header contract against keystonemiddleware itself: for every case, the identity headers
 * injectHeaders() produces (or the 401 / 503 the contract module describes) must be exactly
 * what Debian's unmodified auth_token (test/harness/kmw_headers.py) leaves on the request or
 * answers — header names in keystonemiddleware's casing, values byte for byte, X-Roles in
 * Keystone's order (keystonemiddleware keeps it: it is deterministic).
 *
 * Cases: every fixture token × service token × configuration; generated tokens with nasty
 * Unicode names and catalogs; and real GET /v3/auth/tokens bodies from the harness Keystone
 * (project, domain, system, unscoped, trust, application credential; with and without catalog;
 * a world with non-ASCII domain/project/user/role/region names and several services).
 */
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { KeystoneToken } from "../../src/token/body.js";
import {
  INVALID,
  injectHeaders,
  type InjectOptions,
  type TokenState,
} from "../../src/contract/inject.js";
import { serviceUnavailableResponse, unauthorizedResponse } from "../../src/contract/responses.js";
import { issueToken } from "../harness/client.js";
import {
  APP_CRED_RULES,
  SERVICE_TOKENS,
  USER_TOKENS,
  PROJECT,
} from "../harness/contract-fixtures.js";
import { runKmw, type KmwCase, type KmwResult } from "../harness/kmw-python.js";

const keystone = inject("keystone");
const URI = "https://keystone.example/v3";

type State = KeystoneToken | null | "invalid" | "unavailable";

interface Conf {
  include_service_catalog: boolean;
  service_token_roles: string[];
  service_token_roles_required: boolean;
  delay_auth_decision: boolean;
  service_type?: string;
}

interface Case {
  label: string;
  user: State;
  service: State;
  conf: Conf;
  request?: { method: string; path: string };
}

function body(state: State): unknown {
  return state === null || typeof state === "string" ? state : { token: state };
}

function ourState(state: State): TokenState {
  return state === "unavailable" ? INVALID : state;
}

/** What the contract module says keystonemiddleware does; compare with what it did. */
function check(c: Case, kmw: KmwResult): string | undefined {
  const options: InjectOptions = {
    includeServiceCatalog: c.conf.include_service_catalog,
    serviceTokenRoles: c.conf.service_token_roles,
    serviceTokenRolesRequired: c.conf.service_token_roles_required,
  };
  const delay = c.conf.delay_auth_decision;
  let expected: unknown;
  if (!delay && (c.user === "unavailable" || c.service === "unavailable")) {
    expected = { status: 503, response: serviceUnavailableResponse(undefined) };
  } else {
    const result = injectHeaders(ourState(c.user), ourState(c.service), options);
    if (!result.authenticated && !delay) {
      expected = { status: 401, response: unauthorizedResponse(URI) };
    } else {
      const headers: Record<string, string> = {};
      for (const [name, value] of result.headers) {
        if (name in headers) return `${c.label}: duplicate ${name}`;
        headers[name] = value;
      }
      const kmwSaysAuthenticated =
        kmw.headers["X-Identity-Status"] === "Confirmed" &&
        (kmw.headers["X-Service-Identity-Status"] ?? "Confirmed") === "Confirmed";
      if (kmwSaysAuthenticated !== result.authenticated) {
        return `${c.label}: authenticated ${String(result.authenticated)}`;
      }
      expected = { status: 200, headers };
    }
  }
  const actual =
    kmw.status === 200
      ? { status: 200, headers: kmw.headers }
      : {
          status: kmw.status,
          response: {
            status: kmw.response?.status,
            headers: kmw.response?.headers,
            body: kmw.response?.body,
          },
        };
  try {
    expect(actual).toEqual(JSON.parse(JSON.stringify(expected)));
    // names compared exactly above; also never two spellings of one name
    const lower = Object.keys(kmw.headers).map((n) => n.toLowerCase());
    expect(new Set(lower).size).toBe(lower.length);
  } catch (error) {
    return `${c.label}: ${(error as Error).message}`;
  }
  return undefined;
}

/** Compare every case; returns how many of each status keystonemiddleware gave. */
async function compareAll(cases: readonly Case[]): Promise<Record<number, number>> {
  const kmwCases: KmwCase[] = cases.map((c) => ({
    user: body(c.user),
    service: body(c.service),
    conf: { ...c.conf, www_authenticate_uri: URI },
    ...(c.request ? { request: c.request } : {}),
  }));
  const results = await runKmw(kmwCases);
  expect(results).toHaveLength(cases.length);
  const failures = cases
    .map((c, i) => check(c, results[i] as KmwResult))
    .filter((f): f is string => f !== undefined);
  expect(failures.slice(0, 3)).toEqual([]);
  const statuses: Record<number, number> = {};
  for (const r of results) statuses[r.status] = (statuses[r.status] ?? 0) + 1;
  return statuses;
}

function confs(): Conf[] {
  const out: Conf[] = [];
  for (const include_service_catalog of [true, false]) {
    for (const service_token_roles_required of [true, false]) {
      for (const delay_auth_decision of [true, false]) {
        out.push({
          include_service_catalog,
          service_token_roles: ["service"],
          service_token_roles_required,
          delay_auth_decision,
        });
      }
    }
  }
  out.push(
    {
      include_service_catalog: true,
      service_token_roles: ["admin", "member"],
      service_token_roles_required: true,
      delay_auth_decision: true,
    },
    {
      include_service_catalog: true,
      service_token_roles: [],
      service_token_roles_required: true,
      delay_auth_decision: true,
    },
  );
  return out;
}

describe("fixture tokens: injectHeaders = keystonemiddleware", () => {
  it("for every user × service token × configuration", async () => {
    const users: [string, State][] = [
      ...Object.entries(USER_TOKENS),
      ["none", null],
      ["invalid", "invalid"],
      ["unavailable", "unavailable"],
    ];
    const services: [string, State][] = [
      ...Object.entries(SERVICE_TOKENS),
      ["PROJECT-as-service", PROJECT],
      ["none", null],
      ["invalid", "invalid"],
      ["unavailable", "unavailable"],
    ];
    const cases: Case[] = [];
    for (const conf of confs()) {
      for (const [un, user] of users) {
        for (const [sn, service] of services) {
          cases.push({ label: `${un}+${sn} ${JSON.stringify(conf)}`, user, service, conf });
        }
      }
    }
    // an application credential with access rules, on a request its rules allow
    cases.push({
      label: "APP_CRED_RULES",
      user: APP_CRED_RULES,
      service: null,
      conf: { ...(confs()[0] as Conf), service_type: "compute" },
      request: { method: "GET", path: "/v2.1/servers" },
    });
    expect(cases.length).toBeGreaterThan(1000);
    expect(Object.keys(await compareAll(cases))).toEqual(["200", "401", "503"]);
  });
});

// ---------------------------------------------------------------------------------------------
// generated tokens

const unit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.string({ unit: "binary", minLength: 1, maxLength: 1 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(",", '"', "\\", "é", "研", "😀", "\u2028", "\t", "\u007f"),
  },
  {
    weight: 1,
    arbitrary: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)),
  },
);
const text = fc.string({ unit, maxLength: 12 });
const ref = fc.record({ id: text, name: text });
const endpoint = fc.record(
  {
    id: fc.uuid(),
    interface: fc.constantFrom("public", "internal", "admin", "Public"),
    region_id: fc.option(text),
    url: text,
    region: fc.option(fc.oneof(fc.constantFrom("", "RegionOne", "RegionTwo"), text)),
  },
  { requiredKeys: ["id", "interface", "url"] },
);
const service = fc.record(
  { endpoints: fc.array(endpoint, { maxLength: 5 }), id: fc.uuid(), type: text, name: text },
  { requiredKeys: ["endpoints", "id", "type"] },
);
const roleName = fc.oneof(fc.constantFrom("service", "admin", "member", "reader"), text);

const token: fc.Arbitrary<KeystoneToken> = fc
  .record(
    {
      user: fc.record({
        domain: ref,
        id: text,
        name: text,
        password_expires_at: fc.constant(null),
      }),
      scope: fc.constantFrom(
        "project",
        "domain",
        "system",
        "system-false",
        "system-odd",
        "unscoped",
        "both",
      ),
      project: fc.record({ domain: ref, id: text, name: text }),
      domain: ref,
      roles: fc.array(fc.record({ id: fc.uuid(), name: roleName }), { maxLength: 5 }),
      is_admin_project: fc.constantFrom(true, false, null),
      catalog: fc.array(service, { maxLength: 4 }),
    },
    { requiredKeys: ["user", "scope", "project", "domain"] },
  )
  .map((g) => {
    const t: Record<string, unknown> = {
      methods: ["password"],
      user: g.user,
      audit_ids: ["x"],
      expires_at: "2099-01-01T00:00:00.000000Z",
      issued_at: "2024-01-01T00:00:00.000000Z",
    };
    if (g.scope === "project" || g.scope === "both") t["project"] = g.project;
    if (g.scope === "domain" || g.scope === "both") t["domain"] = g.domain;
    if (g.scope === "system") t["system"] = { all: true };
    if (g.scope === "system-false") t["system"] = { all: false };
    if (g.scope === "system-odd") t["system"] = { all: "yes", domain: { id: "x" } };
    if (g.roles !== undefined) t["roles"] = g.roles;
    if (g.is_admin_project !== undefined) t["is_admin_project"] = g.is_admin_project;
    if (g.catalog !== undefined) t["catalog"] = g.catalog;
    return t as KeystoneToken;
  });

const state: fc.Arbitrary<State> = fc.oneof(
  { weight: 6, arbitrary: token },
  { weight: 1, arbitrary: fc.constantFrom<State>(null, "invalid", "unavailable") },
);

const conf: fc.Arbitrary<Conf> = fc.record({
  include_service_catalog: fc.boolean(),
  service_token_roles: fc.subarray(["service", "admin", "member"]),
  service_token_roles_required: fc.boolean(),
  delay_auth_decision: fc.boolean(),
});

describe("generated tokens: injectHeaders = keystonemiddleware", () => {
  it("for random scopes, roles, names, catalogs and configurations", async () => {
    const cases = fc
      .sample(fc.record({ user: state, service: state, conf }), { numRuns: 1500, seed: 2024 })
      .map((c, i) => ({ ...c, label: `generated #${String(i)}` }));
    expect(Object.keys(await compareAll(cases))).toEqual(["200", "401", "503"]);
  });
});

// ---------------------------------------------------------------------------------------------
// real Keystone

interface Api {
  (method: string, path: string, payload?: unknown): Promise<unknown>;
}

function apiAs(authToken: string): Api {
  return async (method, path, payload) => {
    const res = await fetch(`${keystone.url}${path}`, {
      method,
      headers: {
        "x-auth-token": authToken,
        "content-type": "application/json",
        accept: "application/json",
      },
      ...(payload === undefined ? {} : { body: JSON.stringify(payload) }),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    if (res.status >= 300) throw new Error(`${method} ${path} -> ${String(res.status)}: ${text}`);
    return text === "" ? null : (JSON.parse(text) as unknown);
  };
}

async function authenticate(auth: unknown): Promise<string> {
  const res = await fetch(`${keystone.url}/auth/tokens`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ auth }),
    signal: AbortSignal.timeout(60_000),
  });
  const token = res.headers.get("x-subject-token");
  if (res.status !== 201 || token === null) {
    throw new Error(`POST /auth/tokens -> ${String(res.status)}: ${await res.text()}`);
  }
  await res.arrayBuffer();
  return token;
}

function idOf(response: unknown, key: string): string {
  const id = ((response as Record<string, unknown>)[key] as { id?: unknown } | undefined)?.id;
  if (typeof id !== "string") throw new Error(`no ${key}.id in ${JSON.stringify(response)}`);
  return id;
}

const SUFFIX = Math.random().toString(36).slice(2, 8);
const cleanup: (() => Promise<unknown>)[] = [];
let api: Api;
let admin = "";
/** name → GET /v3/auth/tokens body (`token`), with and without catalog. */
const real = new Map<string, { full: KeystoneToken; nocatalog: KeystoneToken }>();

async function validated(
  subject: string,
): Promise<{ full: KeystoneToken; nocatalog: KeystoneToken }> {
  const get = async (qs: string) => {
    const res = await fetch(`${keystone.url}/auth/tokens${qs}`, {
      headers: { "x-auth-token": admin, "x-subject-token": subject, accept: "application/json" },
      signal: AbortSignal.timeout(60_000),
    });
    if (res.status !== 200)
      throw new Error(`validate -> ${String(res.status)}: ${await res.text()}`);
    return ((await res.json()) as { token: KeystoneToken }).token;
  };
  return { full: await get(""), nocatalog: await get("?nocatalog") };
}

beforeAll(async () => {
  admin = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
  api = apiAs(admin);
  const create = async (path: string, key: string, payload: unknown): Promise<string> => {
    const id = idOf(await api("POST", path, { [key]: payload }), key);
    return id;
  };

  // a world with non-ASCII names
  const domainId = await create("/domains", "domain", { name: `Dömäin ✓ ${SUFFIX}` });
  cleanup.push(
    () => api("PATCH", `/domains/${domainId}`, { domain: { enabled: false } }),
    () => api("DELETE", `/domains/${domainId}`),
  );
  const projectId = await create("/projects", "project", {
    name: `Prøject 研究 ${SUFFIX}`,
    domain_id: domainId,
  });
  const serviceProjectId = await create("/projects", "project", {
    name: `service-${SUFFIX}`,
    domain_id: "default",
  });
  cleanup.push(() => api("DELETE", `/projects/${serviceProjectId}`));
  const password = `pw-${SUFFIX}-Ünï`;
  const userName = `Ünïcode 😀 ${SUFFIX}`;
  const userId = await create("/users", "user", { name: userName, domain_id: domainId, password });
  const svcName = `svc-ñ-${SUFFIX}`;
  const svcUserId = await create("/users", "user", {
    name: svcName,
    domain_id: "default",
    password,
  });
  cleanup.push(() => api("DELETE", `/users/${svcUserId}`));
  const roles = (await api("GET", "/roles")) as { roles: { id: string; name: string }[] };
  const roleId = (name: string): string => {
    const found = roles.roles.find((r) => r.name === name);
    if (!found) throw new Error(`no role ${name}`);
    return found.id;
  };
  const customRole = await create("/roles", "role", { name: `rôle-ü-${SUFFIX}` });
  cleanup.push(() => api("DELETE", `/roles/${customRole}`));
  let serviceRole: string;
  if (roles.roles.some((r) => r.name === "service")) {
    serviceRole = roleId("service");
  } else {
    serviceRole = await create("/roles", "role", { name: "service" });
    cleanup.push(() => api("DELETE", `/roles/${serviceRole}`));
  }
  for (const r of [roleId("member"), roleId("reader"), customRole]) {
    await api("PUT", `/projects/${projectId}/users/${userId}/roles/${r}`);
  }
  await api("PUT", `/domains/${domainId}/users/${userId}/roles/${roleId("admin")}`);
  await api("PUT", `/system/users/${userId}/roles/${roleId("reader")}`);
  await api("PUT", `/projects/${serviceProjectId}/users/${svcUserId}/roles/${serviceRole}`);
  await api("PUT", `/projects/${projectId}/users/${svcUserId}/roles/${roleId("member")}`);

  // catalog: several services, regions (one non-ASCII), interfaces, a $(project_id)s URL
  const regionId = `Régiön-2-${SUFFIX}`;
  await api("POST", "/regions", { region: { id: regionId, description: "ü" } });
  const computeId = await create("/services", "service", { type: "compute", name: "nova ☃" });
  const storeId = await create("/services", "service", { type: "object-store" });
  cleanup.push(
    () => api("DELETE", `/services/${computeId}`),
    () => api("DELETE", `/services/${storeId}`),
    () => api("DELETE", `/regions/${encodeURIComponent(regionId)}`),
  );
  const endpoints: [string, string, string | undefined, string][] = [
    [computeId, "public", "RegionOne", "https://nova.example/v2.1"],
    [computeId, "internal", "RegionOne", "http://nova.internal:8774/v2.1"],
    [computeId, "public", regionId, "https://nova.zwei.example/v2.1/$(project_id)s"],
    [computeId, "admin", undefined, "http://nova.admin/v2.1"],
    [storeId, "public", regionId, "https://swift.example/v1/AUTH_$(tenant_id)s"],
    [storeId, "internal", undefined, "http://swift.internal/v1"],
  ];
  for (const [service_id, iface, region_id, url] of endpoints) {
    await api("POST", "/endpoints", {
      endpoint: { service_id, interface: iface, url, ...(region_id ? { region_id } : {}) },
    });
  }
  // (deleting a user deletes its projects' assignments, app creds and trusts; the domain
  // delete cascades to its project and user)

  const asUser = (scope?: unknown) =>
    authenticate({
      identity: {
        methods: ["password"],
        password: { user: { name: userName, domain: { id: domainId }, password } },
      },
      ...(scope === undefined ? {} : { scope }),
    });
  const asSvc = (projectIdOfScope: string) =>
    authenticate({
      identity: {
        methods: ["password"],
        password: { user: { name: svcName, domain: { id: "default" }, password } },
      },
      scope: { project: { id: projectIdOfScope } },
    });

  const userProject = await asUser({ project: { id: projectId } });
  real.set("project", await validated(userProject));
  real.set("domain", await validated(await asUser({ domain: { id: domainId } })));
  real.set("system", await validated(await asUser({ system: { all: true } })));
  real.set("unscoped", await validated(await asUser()));
  real.set("service", await validated(await asSvc(serviceProjectId)));
  real.set("service-no-role", await validated(await asSvc(projectId)));

  // application credential of the user on the project
  const userApi = apiAs(userProject);
  const appCred = (await userApi("POST", `/users/${userId}/application_credentials`, {
    application_credential: { name: `äpp-${SUFFIX}`, roles: [{ name: "reader" }] },
  })) as { application_credential: { id: string; secret: string } };
  real.set(
    "application-credential",
    await validated(
      await authenticate({
        identity: {
          methods: ["application_credential"],
          application_credential: {
            id: appCred.application_credential.id,
            secret: appCred.application_credential.secret,
          },
        },
      }),
    ),
  );

  // a trust from the user to the service user, impersonating, then a trust-scoped token
  const trust = (await userApi("POST", "/OS-TRUST/trusts", {
    trust: {
      trustor_user_id: userId,
      trustee_user_id: svcUserId,
      project_id: projectId,
      impersonation: true,
      roles: [{ name: "member" }],
    },
  })) as { trust: { id: string } };
  real.set(
    "trust",
    await validated(
      await authenticate({
        identity: {
          methods: ["password"],
          password: { user: { name: svcName, domain: { id: "default" }, password } },
        },
        scope: { "OS-TRUST:trust": { id: trust.trust.id } },
      }),
    ),
  );

  // the admin's own tokens as Keystone bootstrapped them
  real.set(
    "admin-project",
    await validated(
      (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })).token,
    ),
  );
  real.set("admin-system", await validated((await issueToken(keystone, { kind: "system" })).token));
}, 300_000);

afterAll(async () => {
  for (const step of cleanup.reverse()) {
    try {
      await step();
    } catch {
      // best effort: the harness Keystone is thrown away after the run anyway
    }
  }
});

describe("real Keystone tokens: injectHeaders = keystonemiddleware", () => {
  it("Keystone's bodies have the expected shapes", () => {
    const get = (name: string) => {
      const t = real.get(name);
      if (!t) throw new Error(name);
      return t;
    };
    expect(get("project").full.project?.name).toBe(`Prøject 研究 ${SUFFIX}`);
    expect(get("project").full.user.name).toBe(`Ünïcode 😀 ${SUFFIX}`);
    expect(get("project").full.roles?.map((r) => r.name)).toEqual(
      expect.arrayContaining(["member", "reader", `rôle-ü-${SUFFIX}`]),
    );
    expect(get("project").full.catalog?.length).toBeGreaterThanOrEqual(3);
    expect(get("project").nocatalog).not.toHaveProperty("catalog");
    expect(get("domain").full.domain?.name).toBe(`Dömäin ✓ ${SUFFIX}`);
    expect(get("system").full.system).toEqual({ all: true });
    expect(get("unscoped").full).not.toHaveProperty("catalog");
    expect(get("unscoped").full).not.toHaveProperty("roles");
    expect(get("trust").full["OS-TRUST:trust"]).toBeDefined();
    expect(get("trust").full.user.name).toBe(`Ünïcode 😀 ${SUFFIX}`); // impersonation
    expect(get("application-credential").full.application_credential).toBeDefined();
    expect(get("project").full).not.toHaveProperty("is_admin_project"); // none configured
  });

  it("for every real token as user × service token × configuration", async () => {
    const users: [string, State][] = [];
    for (const [name, t] of real) {
      users.push([`${name}/full`, t.full], [`${name}/nocatalog`, t.nocatalog]);
    }
    const services: [string, State][] = [
      ["none", null],
      ["invalid", "invalid"],
      ["service", real.get("service")?.nocatalog ?? null],
      ["service-no-role", real.get("service-no-role")?.nocatalog ?? null],
      ["admin-system", real.get("admin-system")?.full ?? null],
    ];
    const cases: Case[] = [];
    for (const conf of confs()) {
      for (const [un, user] of [...users, ["none", null] as [string, State]]) {
        for (const [sn, service] of services) {
          cases.push({ label: `real ${un}+${sn} ${JSON.stringify(conf)}`, user, service, conf });
        }
      }
    }
    expect(Object.keys(await compareAll(cases))).toEqual(["200", "401"]);
  });

  it("keystonemiddleware's header value for a real catalog is pure ASCII JSON, and ours equals it", async () => {
    const project = real.get("project")?.full;
    if (!project) throw new Error("no project token");
    const [result] = await runKmw([
      { user: { token: project }, service: null, conf: { www_authenticate_uri: URI } },
    ]);
    const ours = Object.fromEntries(
      injectHeaders(project, null, {
        includeServiceCatalog: true,
        serviceTokenRoles: ["service"],
        serviceTokenRolesRequired: false,
      }).headers,
    );
    const catalog = result?.headers["X-Service-Catalog"] ?? "";
    expect(catalog).toMatch(/^[\x20-\x7e]+$/);
    expect(catalog).toContain("\\u2603"); // "nova ☃"
    expect(catalog).toContain(project.project?.id ?? "?"); // $(project_id)s substituted
    expect(ours["X-Service-Catalog"]).toBe(catalog);
  });
});
