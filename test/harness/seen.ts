/**
 * Owns: what a test app behind an authentication layer (keystonemiddleware or
 * keystone-edge, in front of an echo app) saw of a request — status, identity headers,
 * `WWW-Authenticate` — and tokens that must be refused (expired, forged, revoked), so that
 * tests compare the layers on equal terms.
 */
import { IDENTITY_HEADERS } from "../../src/contract/strip.js";
import { generateFernetKeyText, parseFernetKey } from "../../src/fernet/envelope.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { KeyRing, staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken, type KeystoneInfo } from "./client.js";

export interface Seen {
  status: number;
  identity: Record<string, string>;
  wwwAuthenticate: string | null;
}

/** The identity headers an app received (lower-case names), roles sorted. */
export function identityOf(
  headers: Record<string, string | string[] | undefined>,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (!IDENTITY_HEADERS.has(name) || value === undefined) continue;
    const text = Array.isArray(value) ? value.join(",") : value;
    out[name] = /(^|-)roles?$/.test(name) ? text.split(",").sort().join(",") : text;
  }
  return out;
}

export async function through(
  base: string,
  headers: Record<string, string>,
  request: { method?: string; path?: string } = {},
): Promise<Seen> {
  const res = await fetch(`${base}${request.path ?? "/v2.1/servers?all_tenants=1"}`, {
    headers,
    method: request.method ?? "GET",
  });
  const text = await res.text();
  let identity: Record<string, string> = {};
  if (res.status === 200) {
    const body = JSON.parse(text) as { headers: Record<string, string> };
    identity = identityOf(body.headers);
  }
  return { status: res.status, identity, wwwAuthenticate: res.headers.get("www-authenticate") };
}

/** Tokens every layer must refuse: expired, signed with a foreign key, revoked at Keystone. */
export async function badTokens(
  keystone: KeystoneInfo,
): Promise<{ expired: string; forged: string; revoked: string }> {
  const keys = staticKeyRing(await readKeyRepository(keystone.keyRepository));
  const payload = {
    kind: "project",
    version: 2,
    userId: "0123456789abcdef0123456789abcdef",
    methods: ["password"],
    auditIds: [randomAuditId()],
    projectId: "0123456789abcdef0123456789abcdef",
  } as const;
  const expired = new TokenDecoder({ keys, authMethods: keystone.authMethods }).mint({
    ...payload,
    expiresAtMicros: ((Math.floor(Date.now() / 1000) - 60) * 1e6) as EpochMicros,
  });
  const otherKey = parseFernetKey(generateFernetKeyText());
  if (typeof otherKey === "string") throw new Error(otherKey);
  const forged = new TokenDecoder({
    keys: staticKeyRing(KeyRing.from([{ index: 0, key: otherKey }])),
  }).mint({
    ...payload,
    expiresAtMicros: ((Math.floor(Date.now() / 1000) + 600) * 1e6) as EpochMicros,
  });
  const revoked = (
    await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" })
  ).token;
  const del = await fetch(`${keystone.url}/auth/tokens`, {
    method: "DELETE",
    headers: { "X-Auth-Token": revoked, "X-Subject-Token": revoked },
  });
  if (del.status !== 204) throw new Error(`revoking a token: HTTP ${String(del.status)}`);
  return { expired, forged, revoked };
}
