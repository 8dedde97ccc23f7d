/**
 * The revocation list as a data structure: every field an event can set is found through
 * the index, events with the same fields are held once, pruning and the cap remove the
 * oldest, the cap fails closed (a dropped event never lets a token back in), and applying
 * events in batches gives the verdicts of one rebuild and of a plain scan (property test).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import type { KeystoneToken } from "../../../src/token/body.js";
import { tokenValues, type RevocationEvent } from "../../../src/revocation/event.js";
import { RevocationList } from "../../../src/revocation/list.js";
import {
  CONTEXT_CHANGE_MARGIN_MS,
  concernsAnyContext,
  concernsContext,
  matches,
} from "../../../src/revocation/matching.js";
import { retentionCutoffMicros, retentionSeconds } from "../../../src/revocation/retention.js";

/** 2030-03-17T17:46:40Z, µs. */
const T0 = 1_900_000_000_000_000;
const S = 1_000_000;

function iso(micros: number): string {
  return new Date(micros / 1000).toISOString();
}

interface TokenSpec {
  readonly user: string;
  readonly userDomain?: string;
  readonly project?: string;
  readonly domain?: string;
  readonly roles?: readonly string[];
  readonly audit?: string;
  readonly chain?: string;
  readonly trust?: { readonly id: string; readonly trustor: string; readonly trustee: string };
  readonly consumer?: string;
  readonly issuedAtMicros?: number;
  readonly expiresAtMicros?: number;
}

function token(spec: TokenSpec): KeystoneToken {
  const issued = spec.issuedAtMicros ?? T0;
  const body: Record<string, unknown> = {
    methods: ["password"],
    user: { id: spec.user, name: spec.user, domain: { id: spec.userDomain ?? "ud", name: "U" } },
    audit_ids: spec.chain === undefined ? [spec.audit ?? "own"] : [spec.audit ?? "own", spec.chain],
    issued_at: iso(issued),
    expires_at: iso(spec.expiresAtMicros ?? issued + 3600 * S),
    roles: (spec.roles ?? ["r1"]).map((id) => ({ id, name: id })),
  };
  if (spec.project !== undefined) {
    body["project"] = { id: spec.project, name: spec.project, domain: { id: "pd", name: "P" } };
  }
  if (spec.domain !== undefined) body["domain"] = { id: spec.domain, name: spec.domain };
  if (spec.trust !== undefined) {
    body["OS-TRUST:trust"] = {
      id: spec.trust.id,
      trustor_user: { id: spec.trust.trustor },
      trustee_user: { id: spec.trust.trustee },
    };
  }
  if (spec.consumer !== undefined) body["OS-OAUTH1"] = { consumer_id: spec.consumer };
  return body as unknown as KeystoneToken;
}

type Fields = Omit<RevocationEvent, "issuedBeforeMicros" | "revokedAtMicros">;

function event(fields: Fields, issuedBeforeMicros = T0 + S, revokedAtMicros?: number) {
  return {
    ...fields,
    issuedBeforeMicros,
    revokedAtMicros: revokedAtMicros ?? issuedBeforeMicros,
  } as RevocationEvent;
}

describe("RevocationList index", () => {
  const alice = token({
    user: "alice",
    project: "demo",
    roles: ["r-member", "r-reader"],
    audit: "a-own",
    chain: "a-parent",
    trust: { id: "t1", trustor: "carol", trustee: "alice" },
    consumer: "c1",
  });
  const domainScoped = token({ user: "dave", domain: "scope-dom", audit: "d-own" });

  it.each<[string, Fields, KeystoneToken]>([
    ["user", { userId: "alice" }, alice],
    ["trustor", { userId: "carol" }, alice],
    ["project", { projectId: "demo" }, alice],
    ["audit id", { auditId: "a-own" }, alice],
    ["audit chain", { auditChainId: "a-parent" }, alice],
    ["chain on a project", { auditChainId: "a-parent", projectId: "demo" }, alice],
    ["trust", { trustId: "t1" }, alice],
    ["consumer", { consumerId: "c1" }, alice],
    ["role", { roleId: "r-reader" }, alice],
    ["user's domain", { domainId: "ud" }, alice],
    ["domain scope (domain_id)", { domainId: "scope-dom" }, domainScoped],
    ["domain scope", { domainScopeId: "scope-dom" }, domainScoped],
    ["expiry", { expiresAtSeconds: (T0 + 3600 * S) / S }, alice],
    ["no field at all", {}, alice],
  ])("finds an event by %s among others that do not match", (_, fields, t) => {
    const list = new RevocationList();
    list.add([
      event({ userId: "bob" }),
      event({ auditId: "other" }),
      event({ roleId: "r-admin" }),
      event({ auditChainId: "a-parent", projectId: "elsewhere" }),
      event({ domainId: "elsewhere" }),
      event({ trustId: "t2" }),
    ]);
    expect(list.check(t)).toBe(false);
    list.add([event(fields)]);
    expect(list.check(t)).toBe(true);
    expect(list.isRevoked(t)).toBe(true);
    // issued after the event: not revoked
    list.add([]);
    const later = { ...t, issued_at: iso(T0 + 2 * S) } as KeystoneToken;
    expect(list.check(later)).toBe(false);
  });

  it("holds events with the same fields once, with their latest times", () => {
    const list = new RevocationList();
    expect(list.add([event({ userId: "u" }, T0), event({ userId: "u" }, T0)])).toHaveLength(1);
    expect(list.size).toBe(1);
    const generation = list.generation;
    expect(list.add([event({ userId: "u" }, T0 - S)])).toEqual([]); // older: nothing changes
    expect(list.generation).toBe(generation);
    const later = event({ userId: "u" }, T0 + 10 * S);
    expect(list.add([later])).toEqual([later]);
    expect(list.size).toBe(1);
    expect(list.generation).toBe(generation + 1);
    expect(list.check(token({ user: "u", issuedAtMicros: T0 + 5 * S }))).toBe(true);
    expect(list.latestRevokedAtMicros()).toBe(T0 + 10 * S);
    // held under its latest issued_before: pruning before it keeps it
    expect(list.prune(T0 + 5 * S)).toBe(0);
    expect(list.prune(T0 + 11 * S)).toBe(1);
    expect(list.size).toBe(0);
    expect(list.latestRevokedAtMicros()).toBe(T0 + 10 * S); // `since` does not go back
  });

  it("does not take back an event older than the last prune", () => {
    const list = new RevocationList();
    list.prune(T0);
    expect(list.add([event({ userId: "u" }, T0 - 1)])).toEqual([]);
    expect(list.add([event({ userId: "u" }, T0)])).toHaveLength(1);
  });

  it("supersedes contexts through every index a context has, not through audit ids", () => {
    const ctx = token({ user: "alice", project: "demo", roles: ["r1"] });
    const learnt = T0 / 1000;
    for (const fields of [
      { userId: "alice" },
      { projectId: "demo" },
      { roleId: "r1" },
      { domainId: "ud" },
      { auditChainId: "x", projectId: "demo" },
    ] as Fields[]) {
      const list = new RevocationList();
      list.add([event(fields, T0 + S)]);
      expect([fields, list.supersedes(ctx, learnt)]).toEqual([fields, true]);
      expect(concernsContext(event(fields), ctx)).toBe(true);
      expect(concernsAnyContext([event({ auditId: "x" }), event(fields)])(ctx)).toBe(true);
    }
    const list = new RevocationList();
    list.add([event({ auditId: "x" }, T0 + S), event({ userId: "bob" }, T0 + S)]);
    expect(list.supersedes(ctx, learnt)).toBe(false);
    expect(concernsAnyContext([event({ auditId: "x" })])(ctx)).toBe(false);
  });
});

describe("RevocationList cap", () => {
  it("drops the oldest and refuses every token issued at or before them (fails closed)", () => {
    const list = new RevocationList();
    list.add([0, 1, 2, 3, 4].map((i) => event({ auditId: `a${String(i)}` }, T0 + i * S)));
    // a5 re-issued later: its held issued_before grew, it is no longer among the oldest
    list.add([event({ auditId: "a0" }, T0 + 9 * S)]);
    const untouched = token({ user: "x", issuedAtMicros: T0 + 2 * S + 1000 });
    const older = token({ user: "x", issuedAtMicros: T0 + 2 * S });
    expect(list.isRevoked(older)).toBe(false);
    expect(list.capAt(3)).toBe(2); // a1 and a2; a0 is now the newest
    expect(list.size).toBe(3);
    expect(list.overflow()).toEqual({
      kind: "overflowed",
      droppedEvents: 2,
      issuedBeforeMicros: T0 + 2 * S,
      revokedAtMicros: T0 + 2 * S,
    });
    expect(list.isRevoked(older)).toBe(true); // the memo was invalidated
    expect(list.isRevoked(untouched)).toBe(false);
    expect(list.check(token({ user: "x", audit: "a0", issuedAtMicros: T0 + 8 * S }))).toBe(true);
    // contexts learnt before a dropped event (less the margin) are superseded
    const ctx = token({ user: "x", project: "p" });
    expect(list.supersedes(ctx, (T0 + 2 * S) / 1000 + CONTEXT_CHANGE_MARGIN_MS)).toBe(true);
    expect(list.supersedes(ctx, (T0 + 3 * S) / 1000 + CONTEXT_CHANGE_MARGIN_MS)).toBe(false);
    expect(list.capAt(3)).toBe(0);
    // once pruning passes the dropped events, nothing is refused for them any more
    list.prune(T0 + 2 * S);
    expect(list.overflow().kind).toBe("overflowed");
    list.prune(T0 + 2 * S + 1);
    expect(list.overflow()).toEqual({ kind: "within_cap" });
    expect(list.isRevoked(older)).toBe(false);
  });
});

describe("retention", () => {
  it("is the token lifetime Keystone allows, or a context's if longer, plus the skew margin", () => {
    expect(retentionSeconds()).toBe(3600 + 172_800 + 300);
    expect(retentionSeconds({ tokenExpirationSeconds: 600, allowExpiredWindowSeconds: 0 })).toBe(
      900,
    );
    expect(
      retentionSeconds({
        tokenExpirationSeconds: 600,
        allowExpiredWindowSeconds: 0,
        contextLifetimeSeconds: 7200,
      }),
    ).toBe(7500);
    expect(retentionCutoffMicros(T0 / 1000, { allowExpiredWindowSeconds: 0 })).toBe(T0 - 3900 * S);
  });
});

/** Small alphabets, so events and tokens collide often. */
const pick = <T>(values: readonly T[]) => fc.constantFrom(...values);
const USERS = ["u1", "u2", "u3"];
const PROJECTS = ["p1", "p2"];
const DOMAINS = ["ud", "d1", "d2"];
const ROLES = ["r1", "r2", "r3"];
const AUDITS = ["a1", "a2", "a3", "a4"];
const opt = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 3 });
const FIELDS = [
  "userId",
  "projectId",
  "auditId",
  "auditChainId",
  "domainId",
  "domainScopeId",
  "roleId",
  "trustId",
  "consumerId",
  "expiresAtSeconds",
] as const;

const eventArb: fc.Arbitrary<RevocationEvent> = fc
  .record({
    values: fc.record({
      userId: pick(USERS),
      projectId: pick(PROJECTS),
      auditId: pick(AUDITS),
      auditChainId: pick(AUDITS),
      domainId: pick(DOMAINS),
      domainScopeId: pick(DOMAINS),
      roleId: pick(ROLES),
      trustId: pick(["t1", "t2"]),
      consumerId: pick(["c1"]),
      expiresAtSeconds: pick([T0 / S + 3600, T0 / S + 3610]),
    }),
    // Keystone's events set one or two fields (an empty one revokes everything: rare here)
    set: fc.oneof(
      { weight: 1, arbitrary: fc.constant<(typeof FIELDS)[number][]>([]) },
      { weight: 20, arbitrary: fc.subarray([...FIELDS], { minLength: 1, maxLength: 2 }) },
    ),
    at: fc.integer({ min: 0, max: 40 }),
  })
  .map(({ values, set, at }) => {
    const fields = Object.fromEntries(set.map((name) => [name, values[name]]));
    // Keystone: revoked_at is issued_before (the property's exactness for supersedes needs
    // the two in the same order)
    return event(fields, T0 + at * S, T0 + at * S + 7);
  });

const tokenArb: fc.Arbitrary<KeystoneToken> = fc
  .record({
    user: pick(USERS),
    userDomain: pick(DOMAINS),
    scope: fc.oneof(
      pick(PROJECTS).map((project) => ({ project })),
      pick(DOMAINS).map((domain) => ({ domain })),
    ),
    roles: fc.subarray(ROLES),
    audit: pick(AUDITS),
    chain: opt(pick(AUDITS)),
    trust: opt(fc.record({ id: pick(["t1", "t2"]), trustor: pick(USERS), trustee: pick(USERS) })),
    consumer: opt(pick(["c1"])),
    at: fc.integer({ min: 0, max: 40 }),
    expiresIn: pick([3600, 3610, 3620]),
  })
  .map(({ scope, at, expiresIn, chain, trust, consumer, ...rest }) =>
    token({
      ...rest,
      ...scope,
      ...(chain === undefined ? {} : { chain }),
      ...(trust === undefined ? {} : { trust }),
      ...(consumer === undefined ? {} : { consumer }),
      issuedAtMicros: T0 + at * S,
      expiresAtMicros: T0 + expiresIn * S,
    }),
  );

/** A step of the batched list: a batch of events, or a prune at a later cutoff. */
const stepArb = fc.oneof(
  { weight: 4, arbitrary: fc.array(eventArb, { maxLength: 8 }).map((events) => ({ events })) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 6 }).map((advance) => ({ advance })) },
);

describe("incremental application", () => {
  it("applying events in batches, with prunes between, gives the verdicts of one rebuild and of a scan", () => {
    fc.assert(
      fc.property(
        fc.array(stepArb, { maxLength: 12 }),
        fc.array(tokenArb, { minLength: 1, maxLength: 6 }),
        fc.integer({ min: -40, max: 40 }),
        (steps, tokens, learntAtSeconds) => {
          const batched = new RevocationList();
          const all: RevocationEvent[] = [];
          let cutoff = -Infinity;
          let at = 0;
          for (const step of steps) {
            if ("events" in step) {
              batched.add(step.events);
              all.push(...step.events);
            } else {
              at += step.advance;
              cutoff = T0 + at * S;
              batched.prune(cutoff);
            }
            // verdicts asked between batches: memos must not outlive a change
            for (const t of tokens) batched.isRevoked(t);
          }
          const rebuilt = new RevocationList();
          rebuilt.add(all);
          rebuilt.prune(cutoff);
          const live = all.filter((e) => e.issuedBeforeMicros >= cutoff);
          const learntAtMs = (T0 + learntAtSeconds * S) / 1000;
          const sinceMicros = (learntAtMs - CONTEXT_CHANGE_MARGIN_MS) * 1000;
          for (const t of tokens) {
            const scan = live.some((e) => matches(e, tokenValues(t)));
            expect(batched.isRevoked(t)).toBe(scan);
            expect(batched.check(t)).toBe(scan);
            expect(rebuilt.isRevoked(t)).toBe(scan);
            const superseded = live.some(
              (e) => e.revokedAtMicros >= sinceMicros && concernsContext(e, t),
            );
            expect(batched.supersedes(t, learntAtMs)).toBe(superseded);
            expect(rebuilt.supersedes(t, learntAtMs)).toBe(superseded);
          }
          expect(batched.size).toBe(rebuilt.size);
        },
      ),
      { numRuns: 500 },
    );
  });
});
