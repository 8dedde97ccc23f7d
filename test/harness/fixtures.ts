/**
 * Owns: populating the harness Keystone with what the proxy tests need — a second domain,
 * projects, users with roles, a service user holding the `service` role, an application
 * credential with restricted roles, a trust — and issuing one token of every kind the
 * header contract must get right. Idempotent per Keystone: a second call reuses what the
 * first created (tests in several files share one Keystone).
 */
import type { KeystoneInfo } from "./client.js";
import { issueToken } from "./client.js";

const TIMEOUT_MS = 30_000;

/** One Identity API call with `token`: status, parsed JSON body, `X-Subject-Token`. */
export async function api(
  info: KeystoneInfo,
  token: string,
  method: string,
  path: string,
  body?: unknown,
  /** `X-Subject-Token`, e.g. for `DELETE /auth/tokens`. */
  subjectToken?: string,
): Promise<{ status: number; json: Record<string, unknown>; subject: string | null }> {
  const res = await fetch(`${info.url}${path}`, {
    method,
    headers: {
      "X-Auth-Token": token,
      "Content-Type": "application/json",
      Connection: "close",
      ...(subjectToken === undefined ? {} : { "X-Subject-Token": subjectToken }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const text = await res.text();
  return {
    status: res.status,
    json: text ? (JSON.parse(text) as Record<string, unknown>) : {},
    subject: res.headers.get("x-subject-token"),
  };
}

/** `POST /v3/auth/tokens` with `auth`; the issued token. */
export async function authenticate(info: KeystoneInfo, auth: unknown): Promise<string> {
  const res = await fetch(`${info.url}/auth/tokens`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Connection: "close" },
    body: JSON.stringify({ auth }),
    signal: AbortSignal.timeout(TIMEOUT_MS),
  });
  const subject = res.headers.get("x-subject-token");
  const text = await res.text();
  if (res.status !== 201 || subject === null) {
    throw new Error(`authentication failed: HTTP ${res.status} ${text.slice(0, 300)}`);
  }
  return subject;
}

/** Finds by name or creates; returns the id. */
async function ensure(
  info: KeystoneInfo,
  admin: string,
  collection: string,
  entity: string,
  query: string,
  create: Record<string, unknown>,
): Promise<string> {
  const found = await api(info, admin, "GET", `/${collection}?${query}`);
  const list = found.json[collection] as { id: string }[] | undefined;
  if (list && list.length > 0 && list[0]) return list[0].id;
  const made = await api(info, admin, "POST", `/${collection}`, { [entity]: create });
  if (made.status !== 201)
    throw new Error(`creating ${entity}: HTTP ${made.status} ${JSON.stringify(made.json)}`);
  return (made.json[entity] as { id: string }).id;
}

async function grant(info: KeystoneInfo, admin: string, path: string): Promise<void> {
  const res = await api(info, admin, "PUT", path);
  if (res.status !== 204) throw new Error(`grant ${path}: HTTP ${res.status}`);
}

export interface Fixtures {
  /** The edge's service user (role `service` on project `service`). */
  readonly serviceUser: {
    readonly name: string;
    readonly password: string;
    readonly project: string;
  };
  /** Tokens by kind. */
  readonly tokens: {
    readonly project: string;
    readonly projectOtherDomain: string;
    readonly domain: string;
    readonly system: string;
    readonly unscoped: string;
    readonly rescoped: string;
    readonly applicationCredential: string;
    readonly trust: string;
    readonly service: string;
  };
}

const PASSWORD = "fixture-password-1";

/** Creates (or reuses) the fixture entities and issues a fresh token of every kind. */
export async function createFixtures(info: KeystoneInfo): Promise<Fixtures> {
  const admin = (await issueToken(info, { kind: "project", name: "admin", domainId: "default" }))
    .token;
  const role = (name: string) => ensure(info, admin, "roles", "role", `name=${name}`, { name });
  const [member, reader, service] = await Promise.all([
    role("member"),
    role("reader"),
    role("service"),
  ]);
  const other = await ensure(info, admin, "domains", "domain", "name=other", {
    name: "other",
    description: "fixture",
  });
  const project = (name: string, domainId: string) =>
    ensure(info, admin, "projects", "project", `name=${name}&domain_id=${domainId}`, {
      name,
      domain_id: domainId,
    });
  const demo = await project("demo", "default");
  const otherProject = await project("äöü-other", other);
  const serviceProject = await project("service", "default");
  const user = (name: string, domainId: string) =>
    ensure(info, admin, "users", "user", `name=${encodeURIComponent(name)}&domain_id=${domainId}`, {
      name,
      domain_id: domainId,
      password: PASSWORD,
    });
  const alice = await user("alice", "default");
  const bob = await user("bob", other);
  const svc = await user("edge-svc", "default");
  await grant(info, admin, `/projects/${demo}/users/${alice}/roles/${member}`);
  await grant(info, admin, `/projects/${demo}/users/${alice}/roles/${reader}`);
  await grant(info, admin, `/projects/${otherProject}/users/${bob}/roles/${member}`);
  await grant(info, admin, `/domains/${other}/users/${bob}/roles/${member}`);
  await grant(info, admin, `/projects/${serviceProject}/users/${svc}/roles/${service}`);

  const password = (userName: string, domainId: string) => ({
    methods: ["password"],
    password: { user: { name: userName, domain: { id: domainId }, password: PASSWORD } },
  });
  const projectToken = await authenticate(info, {
    identity: password("alice", "default"),
    scope: { project: { id: demo } },
  });
  const projectOtherDomain = await authenticate(info, {
    identity: password("bob", other),
    scope: { project: { id: otherProject } },
  });
  const domain = await authenticate(info, {
    identity: password("bob", other),
    scope: { domain: { id: other } },
  });
  const system = (await issueToken(info, { kind: "system" })).token;
  const unscoped = await authenticate(info, { identity: password("alice", "default") });
  const rescoped = await authenticate(info, {
    identity: { methods: ["token"], token: { id: unscoped } },
    scope: { project: { id: demo } },
  });
  // Application credential restricted to `reader` (alice also holds `member`).
  const credential = await api(
    info,
    projectToken,
    "POST",
    `/users/${alice}/application_credentials`,
    {
      application_credential: { name: `ac-${Date.now()}`, roles: [{ name: "reader" }] },
    },
  );
  if (credential.status !== 201)
    throw new Error(`application credential: HTTP ${credential.status}`);
  const ac = credential.json.application_credential as { id: string; secret: string };
  const applicationCredential = await authenticate(info, {
    identity: {
      methods: ["application_credential"],
      application_credential: { id: ac.id, secret: ac.secret },
    },
  });
  // Trust: alice (trustor) delegates `member` on demo to bob (trustee).
  const trust = await api(info, projectToken, "POST", "/OS-TRUST/trusts", {
    trust: {
      trustor_user_id: alice,
      trustee_user_id: bob,
      project_id: demo,
      impersonation: false,
      roles: [{ name: "member" }],
    },
  });
  if (trust.status !== 201)
    throw new Error(`trust: HTTP ${trust.status} ${JSON.stringify(trust.json)}`);
  const trustId = (trust.json.trust as { id: string }).id;
  const bobUnscoped = await authenticate(info, { identity: password("bob", other) });
  const trustToken = await authenticate(info, {
    identity: { methods: ["token"], token: { id: bobUnscoped } },
    scope: { "OS-TRUST:trust": { id: trustId } },
  });
  const serviceToken = await authenticate(info, {
    identity: password("edge-svc", "default"),
    scope: { project: { id: serviceProject } },
  });
  return {
    serviceUser: { name: "edge-svc", password: PASSWORD, project: "service" },
    tokens: {
      project: projectToken,
      projectOtherDomain,
      domain,
      system,
      unscoped,
      rescoped,
      applicationCredential,
      trust: trustToken,
      service: serviceToken,
    },
  };
}

/** One application-credential access rule. */
export interface AccessRuleSpec {
  readonly service: string;
  readonly method: string;
  readonly path: string;
}

/**
 * A token of a fresh application credential of alice (project demo) restricted by `rules`,
 * with a `compute` service (and a public endpoint) in the catalog so the rules can apply.
 * Run it before comparisons that must see one catalog: it may add the service.
 */
export async function accessRulesToken(
  info: KeystoneInfo,
  rules: readonly AccessRuleSpec[],
): Promise<string> {
  const admin = (await issueToken(info, { kind: "project", name: "admin", domainId: "default" }))
    .token;
  const compute = await ensure(info, admin, "services", "service", "type=compute", {
    type: "compute",
    name: "nova",
  });
  const endpoints = await api(info, admin, "GET", `/endpoints?service_id=${compute}`);
  if (((endpoints.json.endpoints as unknown[] | undefined) ?? []).length === 0) {
    const made = await api(info, admin, "POST", "/endpoints", {
      endpoint: {
        service_id: compute,
        interface: "public",
        region_id: "RegionOne",
        url: "http://127.0.0.1:8774/v2.1",
      },
    });
    if (made.status !== 201) throw new Error(`compute endpoint: HTTP ${made.status}`);
  }
  const alice = await authenticate(info, {
    identity: {
      methods: ["password"],
      password: { user: { name: "alice", domain: { id: "default" }, password: PASSWORD } },
    },
    scope: { project: { name: "demo", domain: { id: "default" } } },
  });
  const users = await api(info, admin, "GET", "/users?name=alice&domain_id=default");
  const aliceId = ((users.json.users as { id: string }[] | undefined) ?? [])[0]?.id;
  if (aliceId === undefined) throw new Error("alice is missing: run createFixtures first");
  const credential = await api(info, alice, "POST", `/users/${aliceId}/application_credentials`, {
    application_credential: { name: `ac-rules-${Date.now()}`, access_rules: rules },
  });
  if (credential.status !== 201) {
    throw new Error(
      `application credential with access rules: HTTP ${credential.status} ${JSON.stringify(credential.json)}`,
    );
  }
  const ac = credential.json.application_credential as { id: string; secret: string };
  return authenticate(info, {
    identity: {
      methods: ["application_credential"],
      application_credential: { id: ac.id, secret: ac.secret },
    },
  });
}
