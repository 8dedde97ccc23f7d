/**
 * `npm run bench:revocation`: what the revocation list costs the event loop and the heap as
 * the events it holds grow, against the list it replaced (rebuilt whole on every poll),
 * measured in the same run.
 *
 * Events are a plausible mix for a region under a flood of revocations (Keystone's shapes:
 * audit id 80 %, user 8 %, project 4 %, audit chain on a project 3 %, trust 2 %, consumer,
 * domain, role 1 % each), every one with fresh ids, so all are held. The token checked is a
 * project token (3 roles) none of them revokes: the common case, and the one that must read
 * its candidates only. Figures:
 * - check, memo hit: `isRevoked` on a token object already checked (a cached token between
 *   polls);
 * - check, first after a poll: the full check (`check`), what every cached token pays once
 *   after a poll that brought events;
 * - one poll of 10 new events on top of 100k: apply, prune, cap (new) vs apply + rebuild,
 *   prune scan, newest-`revoked_at` scan (old);
 * - heap held per 100k events (after GC; needs --expose-gc, which the npm script passes);
 * - cold validation at each size: what a token never seen before costs the edge — decrypt
 *   and verify it (Fernet, a 3-key ring), answer it from its user's context
 *   (`answerFromContext`, as the context cache does) and check that fresh answer against
 *   the list (no memo) — the pre-Ocata Keystone's cost grew from 6.8 ms to 2 s at 10k
 *   events (issue 17).
 */
import { arch, cpus, platform, release, totalmem } from "node:os";

import type { KeystoneToken } from "../src/token/body.js";
import { APPLY_SLICE_EVENTS } from "../src/keystone/revocation-feed.js";
import {
  parseEvent,
  tokenValues,
  type RevocationEvent,
  type TokenValues,
} from "../src/revocation/event.js";
import { RevocationList } from "../src/revocation/list.js";
import { matches } from "../src/revocation/matching.js";
import { DEFAULT_MAX_REVOCATION_EVENTS } from "../src/revocation/retention.js";
import { generateFernetKeyText, parseFernetKey } from "../src/fernet/envelope.js";
import { KeyRing, staticKeyRing } from "../src/fernet/key-ring.js";
import { TokenDecoder } from "../src/token/decoder.js";
import { DEFAULT_AUTH_METHODS } from "../src/token/methods.js";
import { randomAuditId } from "../src/token/payload.js";
import type { EpochMicros } from "../src/units.js";
import { answerFromContext } from "../src/validation/context.js";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const SIZES = [0, 1_000, 10_000, 100_000] as const;
const NOW_MICROS = Date.now() * 1000;

const gc = (globalThis as { gc?: () => void }).gc;

// ---- the list as it was before (one full rebuild per change), for the baseline ----

/** The previous RevocationList, as it was: JSON key per event, rebuild on every change. */
class PreviousList {
  private readonly keys = new Map<string, RevocationEvent>();
  private readonly byUser = new Map<string, RevocationEvent[]>();
  private readonly byProject = new Map<string, RevocationEvent[]>();
  private readonly byAudit = new Map<string, RevocationEvent[]>();
  private unindexed: RevocationEvent[] = [];

  latestRevokedAtMicros(): number | undefined {
    let latest: number | undefined;
    for (const e of this.keys.values()) {
      if (latest === undefined || e.revokedAtMicros > latest) latest = e.revokedAtMicros;
    }
    return latest;
  }

  add(events: readonly RevocationEvent[]): RevocationEvent[] {
    const added: RevocationEvent[] = [];
    for (const e of events) {
      const key = JSON.stringify(e);
      if (this.keys.has(key)) continue;
      this.keys.set(key, e);
      added.push(e);
    }
    if (added.length > 0) this.rebuild();
    return added;
  }

  prune(cutoffMicros: number): number {
    let dropped = 0;
    for (const [key, e] of this.keys) {
      if (e.issuedBeforeMicros < cutoffMicros) {
        this.keys.delete(key);
        dropped++;
      }
    }
    if (dropped > 0) this.rebuild();
    return dropped;
  }

  check(token: KeystoneToken): boolean {
    const values = tokenValues(token);
    for (const list of this.candidates(values)) {
      for (const e of list) if (matches(e, values)) return true;
    }
    return false;
  }

  private *candidates(values: TokenValues): Generator<readonly RevocationEvent[]> {
    for (const u of values.userIds) {
      const list = this.byUser.get(u);
      if (list) yield list;
    }
    const project =
      values.projectId === undefined ? undefined : this.byProject.get(values.projectId);
    if (project) yield project;
    const audit = values.auditId === undefined ? undefined : this.byAudit.get(values.auditId);
    if (audit) yield audit;
    yield this.unindexed;
  }

  private rebuild(): void {
    this.byUser.clear();
    this.byProject.clear();
    this.byAudit.clear();
    this.unindexed = [];
    const push = (map: Map<string, RevocationEvent[]>, key: string, e: RevocationEvent): void => {
      const list = map.get(key);
      if (list) list.push(e);
      else map.set(key, [e]);
    };
    for (const e of this.keys.values()) {
      const context =
        e.userId !== undefined ||
        e.projectId !== undefined ||
        e.domainId !== undefined ||
        e.domainScopeId !== undefined ||
        e.roleId !== undefined ||
        e.trustId !== undefined ||
        e.consumerId !== undefined;
      if (e.userId !== undefined) push(this.byUser, e.userId, e);
      else if (e.projectId !== undefined) push(this.byProject, e.projectId, e);
      else if (e.auditId !== undefined && !context) push(this.byAudit, e.auditId, e);
      else this.unindexed.push(e);
    }
  }
}

// ---- inputs ----

let serial = 0;
/** A Keystone-looking id (32 hex), fresh each call. */
function id(): string {
  serial++;
  return (serial * 2_654_435_761).toString(16).padStart(16, "0").repeat(2).slice(0, 32);
}
/** A base64url audit id (22 chars), fresh each call. */
function auditId(): string {
  serial++;
  return Buffer.from(`${String(serial)}-audit-id-pad`.padEnd(16, "x").slice(0, 16)).toString(
    "base64url",
  );
}

/** `n` events of the mix, issued over the last 48 h, oldest first. */
function events(n: number, endMicros = NOW_MICROS): RevocationEvent[] {
  const out: RevocationEvent[] = [];
  const spanMicros = 48 * 3600 * 1e6;
  for (let i = 0; i < n; i++) {
    const at = Math.floor(endMicros - spanMicros + ((i + 1) * spanMicros) / n);
    const times = { issuedBeforeMicros: at, revokedAtMicros: at };
    const r = (i * 7919) % 100;
    let fields: Omit<RevocationEvent, "issuedBeforeMicros" | "revokedAtMicros">;
    if (r < 80) fields = { auditId: auditId() };
    else if (r < 88) fields = { userId: id() };
    else if (r < 92) fields = { projectId: id() };
    else if (r < 95) fields = { auditChainId: auditId(), projectId: id() };
    else if (r < 97) fields = { trustId: id() };
    else if (r < 98) fields = { consumerId: id() };
    else if (r < 99) fields = { domainId: id() };
    else fields = { roleId: id() };
    out.push({ ...fields, ...times });
  }
  return out;
}

/** A project token (3 roles) that none of the events revokes. */
function token(): KeystoneToken {
  const issued = new Date(Date.now() - 600_000);
  return {
    methods: ["password"],
    user: { id: id(), name: "alice", domain: { id: "default", name: "Default" } },
    audit_ids: [auditId()],
    expires_at: new Date(issued.getTime() + 3_600_000).toISOString(),
    issued_at: issued.toISOString(),
    project: { id: id(), name: "demo", domain: { id: "default", name: "Default" } },
    roles: [
      { id: id(), name: "member" },
      { id: id(), name: "reader" },
      { id: id(), name: "load-balancer_member" },
    ],
  };
}

// ---- measuring ----

function median(xs: number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

/** Median over ROUNDS of the mean ns per call of `fn` over `iterations` calls. */
function nsPerCall(iterations: number, fn: (i: number) => unknown): number {
  for (let i = 0; i < Math.min(iterations, 10_000); i++) fn(i); // warm up
  const rounds: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn(i);
    rounds.push(Number(process.hrtime.bigint() - start) / iterations);
  }
  return median(rounds);
}

function heapUsed(): number {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed;
}

// 1. checks at each size, and a cold validation
const tokens = Array.from({ length: 1_000 }, token);
const ringKeys = [0, 1, 2].map((index) => {
  const key = parseFernetKey(generateFernetKeyText());
  if (typeof key === "string") throw new Error(key);
  return { index, key: key };
});
const decoder = new TokenDecoder({
  keys: staticKeyRing(KeyRing.from(ringKeys)),
  authMethods: DEFAULT_AUTH_METHODS,
});
/** The context the fresh tokens are answered from: one known user and project. */
const context = token();
const fresh = Array.from({ length: 1_000 }, () =>
  decoder.mint({
    kind: "project",
    version: 2,
    userId: context.user.id,
    methods: ["password"],
    auditIds: [randomAuditId()],
    projectId: (context.project as { id: string }).id,
    expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3_600) * 1e6) as EpochMicros,
  }),
);
const checkRows: {
  size: number;
  memo: number;
  full: number;
  previous: number;
  cold: number;
}[] = [];
for (const size of SIZES) {
  const list = new RevocationList();
  const previous = new PreviousList();
  const held = events(size);
  list.add(held);
  previous.add(held);
  for (const t of tokens) list.isRevoked(t);
  const at = (i: number): KeystoneToken => tokens[i % tokens.length] as KeystoneToken;
  checkRows.push({
    size,
    memo: nsPerCall(1_000_000, (i) => list.isRevoked(at(i))),
    full: nsPerCall(100_000, (i) => list.check(at(i))),
    previous: nsPerCall(size >= 100_000 ? 2_000 : 20_000, (i) => previous.check(at(i))),
    cold: nsPerCall(20_000, (i) => {
      const decoded = decoder.decode(fresh[i % fresh.length] as string);
      if (decoded.status !== "valid") throw new Error("the fresh token does not decode");
      return list.isRevoked(answerFromContext(context, decoded.token));
    }),
  });
}

// 2. one poll of 10 new events on top of 100k
const BASE = 100_000;
const POLLS_NEW = 2_000;
const POLLS_PREVIOUS = 20;
const polls = (n: number): RevocationEvent[][] =>
  Array.from({ length: n }, (_, p) => events(10, NOW_MICROS + (p + 1) * 10_000_000));
const cutoff = NOW_MICROS - 49 * 3600 * 1e6; // nothing to prune: the poll's own cost
const incremental = new RevocationList();
incremental.add(events(BASE));
const newPolls = polls(POLLS_NEW * ROUNDS + 10_000);
let nextNew = 0;
const pollNew = nsPerCall(POLLS_NEW, () => {
  incremental.latestRevokedAtMicros();
  incremental.add(newPolls[nextNew++] ?? []);
  incremental.prune(cutoff);
  incremental.capAt(DEFAULT_MAX_REVOCATION_EVENTS);
});
const rebuilt = new PreviousList();
rebuilt.add(events(BASE));
const previousPolls = polls(POLLS_PREVIOUS * ROUNDS + 10_000);
let nextPrevious = 0;
const pollPrevious = nsPerCall(POLLS_PREVIOUS, () => {
  rebuilt.latestRevokedAtMicros();
  rebuilt.add(previousPolls[nextPrevious++] ?? []);
  rebuilt.prune(cutoff);
});
// the same for a poll that brings nothing new (every poll of a quiet region)
const emptyNew = nsPerCall(POLLS_NEW, () => {
  incremental.latestRevokedAtMicros();
  incremental.add([]);
  incremental.prune(cutoff);
  incremental.capAt(DEFAULT_MAX_REVOCATION_EVENTS);
});
const emptyPrevious = nsPerCall(POLLS_PREVIOUS, () => {
  rebuilt.latestRevokedAtMicros();
  rebuilt.add([]);
  rebuilt.prune(cutoff);
});
// the first poll after a start: every event Keystone lists, applied at once (the previous
// feed) or one slice of the feed's (parse + apply, then it yields to the loop)
const firstLoad = events(BASE);
const loadNew = nsPerCall(1, () => new RevocationList().add(firstLoad));
const loadPrevious = nsPerCall(1, () => new PreviousList().add(firstLoad));
/** Keystone's JSON for `e`. */
function listed(e: RevocationEvent): Record<string, string> {
  const iso = (micros: number): string => new Date(micros / 1000).toISOString();
  const out: Record<string, string> = {
    issued_before: iso(e.issuedBeforeMicros),
    revoked_at: iso(e.revokedAtMicros),
  };
  if (e.auditId !== undefined) out["audit_id"] = e.auditId;
  if (e.auditChainId !== undefined) out["audit_chain_id"] = e.auditChainId;
  if (e.userId !== undefined) out["user_id"] = e.userId;
  if (e.projectId !== undefined) out["project_id"] = e.projectId;
  if (e.trustId !== undefined) out["OS-TRUST:trust_id"] = e.trustId;
  if (e.consumerId !== undefined) out["OS-OAUTH1:consumer_id"] = e.consumerId;
  if (e.domainId !== undefined) out["domain_id"] = e.domainId;
  if (e.roleId !== undefined) out["role_id"] = e.roleId;
  return out;
}
const slices = Array.from({ length: ROUNDS + 1 }, (_, r) =>
  events(APPLY_SLICE_EVENTS, NOW_MICROS + (r + 1) * 3_600_000_000).map(listed),
);
let nextSlice = 0;
const sliceNew = nsPerCall(1, () => {
  const parsed: RevocationEvent[] = [];
  for (const raw of slices[nextSlice++] ?? []) {
    const e = parseEvent(raw);
    if (e !== undefined) parsed.push(e);
  }
  incremental.add(parsed);
});

// 3. heap per 100k events
function heapOf(build: () => unknown): number {
  const before = heapUsed();
  const kept = build();
  const after = heapUsed();
  if (kept === undefined) throw new Error("nothing kept");
  return after - before;
}
const heapNew = heapOf(() => {
  const l = new RevocationList();
  l.add(events(BASE));
  return l;
});
const heapPrevious = heapOf(() => {
  const l = new PreviousList();
  l.add(events(BASE));
  return l;
});

// ---- report ----
const cpu = cpus()[0]?.model ?? "unknown CPU";
const ns = (n: number): string =>
  (n >= 1e6
    ? `${(n / 1e6).toFixed(2)} ms`
    : n >= 1e4
      ? `${(n / 1e3).toFixed(1)} µs`
      : `${n.toFixed(0)} ns`
  ).padStart(10);
const mb = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MB`.padStart(10);
console.log("keystone-edge revocation list benchmark");
console.log(
  `machine: ${cpu}, ${String(cpus().length)} cores, ${String(Math.round(totalmem() / 2 ** 30))} GiB, ${platform()} ${release()} ${arch()}`,
);
console.log(
  `node ${process.version}, median of ${String(ROUNDS)} rounds, one core${gc ? "" : " (no --expose-gc: heap figures are rough)"}`,
);
console.log("");
console.log("check of a cached token none of the events revokes, per check");
console.log(
  "events held    memo hit   first after a poll   previous list   cold validation (decode + context + check)",
);
for (const row of checkRows) {
  console.log(
    `${row.size.toLocaleString("en-US").padStart(11)}  ${ns(row.memo)}   ${ns(row.full)}           ${ns(row.previous)}      ${ns(row.cold)}`,
  );
}
const row = (label: string, fresh: string, previous: string, extra = ""): void => {
  console.log(`  ${label.padEnd(50)}${fresh}   ${previous}${extra}`);
};
console.log("");
console.log(`${"one poll on top of 100,000 events".padEnd(59)}new     previous`);
row("10 new events", ns(pollNew), ns(pollPrevious), `   ×${(pollPrevious / pollNew).toFixed(0)}`);
row("nothing new", ns(emptyNew), ns(emptyPrevious));
row("first load, all applied at once", ns(loadNew), ns(loadPrevious));
row(
  `first load, one ${APPLY_SLICE_EVENTS.toLocaleString("en-US")}-event slice (parse + apply)`,
  ns(sliceNew),
  "         —",
  "   (the feed yields between slices)",
);
console.log("");
row(`heap held per ${BASE.toLocaleString("en-US")} events`, mb(heapNew), mb(heapPrevious));
