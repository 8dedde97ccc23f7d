import { describe, expect, it } from "vitest";

import type { KeystoneToken } from "../../../src/token/body.js";
import {
  isoToMicros,
  parseEvent,
  tokenValues,
  type RevocationEvent,
} from "../../../src/revocation/event.js";
import { RevocationList } from "../../../src/revocation/list.js";
import { matches } from "../../../src/revocation/matching.js";

const ISSUED = "2030-03-17T17:46:40.000000Z";
const EXPIRES = "2030-03-17T18:46:40.000000Z";

function token(extra: Record<string, unknown> = {}): KeystoneToken {
  const body: unknown = {
    methods: ["password"],
    user: { id: "alice", name: "alice", domain: { id: "users-dom", name: "U" } },
    audit_ids: ["audit-own", "audit-parent"],
    expires_at: EXPIRES,
    issued_at: ISSUED,
    project: { id: "demo", name: "demo", domain: { id: "proj-dom", name: "P" } },
    roles: [
      { id: "r-member", name: "member" },
      { id: "r-reader", name: "reader" },
    ],
    ...extra,
  };
  return body as KeystoneToken;
}

/** An event issued one second after the token, with `fields`. */
function event(
  fields: Record<string, unknown>,
  issuedBefore = "2030-03-17T17:46:41.000000Z",
): RevocationEvent {
  const e = parseEvent({ issued_before: issuedBefore, revoked_at: issuedBefore, ...fields });
  if (e === undefined) throw new Error("unparseable");
  return e;
}

describe("revocation events, as Keystone matches them", () => {
  const values = tokenValues(token());

  it("reads Keystone's times to the microsecond", () => {
    expect(isoToMicros("2030-03-17T17:46:40.000001Z") - isoToMicros(ISSUED)).toBe(1);
    expect(isoToMicros("2030-03-17T17:46:40Z")).toBe(isoToMicros(ISSUED));
    expect(isoToMicros("2030-03-17T17:46:40.5+00:00")).toBe(isoToMicros(ISSUED) + 500_000);
    expect(Number.isNaN(isoToMicros("yesterday"))).toBe(true);
    expect(parseEvent({ user_id: "x" })).toBeUndefined();
  });

  it("revokes by user (or trustor/trustee), project, audit id, only for tokens issued before", () => {
    expect(matches(event({ user_id: "alice" }), values)).toBe(true);
    expect(matches(event({ user_id: "bob" }), values)).toBe(false);
    expect(matches(event({ project_id: "demo" }), values)).toBe(true);
    expect(matches(event({ project_id: "other" }), values)).toBe(false);
    expect(matches(event({ audit_id: "audit-own" }), values)).toBe(true);
    expect(matches(event({ audit_id: "audit-parent" }), values)).toBe(false);
    // issued_before ≥ issued_at: equal counts, a token issued after does not
    expect(matches(event({ user_id: "alice" }, ISSUED), values)).toBe(true);
    expect(matches(event({ user_id: "alice" }, "2030-03-17T17:46:39.999999Z"), values)).toBe(false);
    const trust = tokenValues(
      token({
        user: { id: "bob", name: "bob", domain: { id: "d", name: "d" } },
        "OS-TRUST:trust": { id: "t1", trustor_user: { id: "alice" }, trustee_user: { id: "bob" } },
      }),
    );
    expect(matches(event({ user_id: "alice" }), trust)).toBe(true);
    expect(matches(event({ "OS-TRUST:trust_id": "t1" }), trust)).toBe(true);
    expect(matches(event({ "OS-TRUST:trust_id": "t2" }), trust)).toBe(false);
  });

  it("needs every field an event sets: user and project together, role, chain, expiry", () => {
    expect(matches(event({ user_id: "alice", project_id: "demo" }), values)).toBe(true);
    expect(matches(event({ user_id: "alice", project_id: "other" }), values)).toBe(false);
    expect(matches(event({ role_id: "r-reader" }), values)).toBe(true);
    expect(matches(event({ role_id: "r-admin" }), values)).toBe(false);
    expect(matches(event({ audit_chain_id: "audit-parent" }), values)).toBe(true);
    expect(matches(event({ audit_chain_id: "audit-own" }), values)).toBe(false);
    expect(matches(event({ expires_at: "2030-03-17T18:46:40.123456Z" }), values)).toBe(true);
    expect(matches(event({ expires_at: "2030-03-17T18:46:41.000000Z" }), values)).toBe(false);
  });

  it("keeps Keystone's domain quirk: a project token matches domain_id only by its user's domain", () => {
    expect(matches(event({ domain_id: "users-dom" }), values)).toBe(true);
    expect(matches(event({ domain_id: "proj-dom" }), values)).toBe(false);
    const domainScoped = tokenValues(
      token({ project: undefined, domain: { id: "scope-dom", name: "S" } }),
    );
    expect(matches(event({ domain_id: "scope-dom" }), domainScoped)).toBe(true);
    expect(matches(event({ domain_scope_id: "scope-dom" }), domainScoped)).toBe(true);
    expect(matches(event({ domain_scope_id: "scope-dom" }), values)).toBe(false);
  });
});

describe("RevocationList", () => {
  it("finds a matching event whichever index holds it, and none for others", () => {
    const list = new RevocationList();
    expect(list.isRevoked(token())).toBe(false);
    list.add([
      event({ user_id: "bob" }),
      event({ project_id: "other" }),
      event({ role_id: "r-admin" }),
    ]);
    expect(list.isRevoked(token())).toBe(false);
    for (const fields of [
      { user_id: "alice" },
      { project_id: "demo" },
      { audit_id: "audit-own" },
      { role_id: "r-member" },
      { domain_id: "users-dom" },
    ]) {
      const l = new RevocationList();
      l.add([event({ user_id: "bob" }), event(fields)]);
      expect([fields, l.isRevoked(token())]).toEqual([fields, true]);
    }
  });

  it("remembers a verdict per token object until the list changes, and ignores duplicates", () => {
    const list = new RevocationList();
    const t = token();
    list.add([event({ user_id: "bob" })]);
    expect(list.isRevoked(t)).toBe(false);
    const generation = list.generation;
    expect(list.add([event({ user_id: "bob" })])).toEqual([]);
    expect(list.generation).toBe(generation);
    list.add([event({ user_id: "alice" })]);
    expect(list.generation).toBe(generation + 1);
    expect(list.isRevoked(t)).toBe(true);
    expect(list.size).toBe(2);
  });

  it("drops events no live token can be older than, and knows the newest revoked_at", () => {
    const list = new RevocationList();
    list.add([
      event({ user_id: "alice" }, "2030-03-17T17:46:41.000000Z"),
      event({ user_id: "bob" }, "2030-03-17T19:00:00.000000Z"),
    ]);
    expect(list.latestRevokedAtMicros()).toBe(isoToMicros("2030-03-17T19:00:00Z"));
    expect(list.prune(isoToMicros("2030-03-17T18:00:00Z"))).toBe(1);
    expect(list.isRevoked(token())).toBe(false);
    expect(list.size).toBe(1);
  });
});
