/**
 * Multi-region, against real parts (test/harness/multi-region.ts): a master Keystone (a
 * replica of the harness Keystone with a key repository of its own and its memcached cache)
 * behind TLS with a CA made for this run, and two regions, each with its own memcached, its
 * own copy of the master's key repository, its own echo service and `keystone-edge serve`
 * verifying the master with `keystone.cafile` through a relay of its own. Covered (issue
 * 14): both regions serve the master's tokens with no validation call once warm; two
 * rotations with region A synced and B lagging — B finds out by itself (its scheduled key
 * lag check, every 2 s here), A does not, `keystone_edge_key_repository_behind` is 1 in B
 * only, a new master token gets 200 in both (B asks the master once), forged tokens cost
 * the master nothing in A and a replayed one at most one call in B, garbage nothing
 * anywhere; syncing B clears the gauge within seconds and new tokens decrypt locally again;
 * a revoked token is refused in both regions within the revocation poll interval; B
 * partitioned from the master while A keeps validating (B serves what it knows, 503 for the
 * rest) and recovering once healed; a far-away master (100 ms per round trip): known
 * contexts answered with no added latency, a new scope costs about one round trip plus
 * Keystone's own time, over pooled TLS connections (none opened per call).
 */
import { randomBytes } from "node:crypto";
import { request } from "undici";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createFixtures } from "../harness/fixtures.js";
import {
  startMultiRegion,
  type Master,
  type MultiRegion,
  type Region,
  type Scope,
} from "../harness/multi-region.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
const POLL_MS = 1_000;
/** Each edge's `fernet.lag_check_interval_ms`. */
const LAG_CHECK_MS = 2_000;
/** Added to every round trip between region B and the master in the far-away test. */
const FAR_MS = 100;
let topology: MultiRegion | undefined;
let master: Master;
let a: Region;
let b: Region;
/** A user and project both regions know (their context is cached) after the first test. */
let known: Scope;

beforeAll(async () => {
  const fixtures = await createFixtures(keystone);
  topology = await startMultiRegion({
    keystone,
    serviceUser: fixtures.serviceUser,
    revocationPollMs: POLL_MS,
    lagCheckIntervalMs: LAG_CHECK_MS,
  });
  ({ master } = topology);
  a = topology.region("region-a");
  b = topology.region("region-b");
  known = await master.createScope("known");
}, 300_000);

afterAll(async () => {
  await topology?.close();
});

/** Polls `check` every 100 ms until it holds; fails after `ms` naming `what`. */
function until(what: string, check: () => Promise<boolean>, ms: number): Promise<void> {
  return waitUntil(check, ms, what, 100);
}

/** What `work` came to, and the validation calls `region`'s edge made to the master meanwhile. */
async function withCalls<T>(
  region: Region,
  work: () => Promise<T>,
): Promise<{ calls: number; result: T }> {
  const before = await region.validationCalls();
  const result = await work();
  return { calls: (await region.validationCalls()) - before, result };
}

async function statuses(region: Region, tokens: readonly string[]): Promise<number[]> {
  const out: number[] = [];
  for (const token of tokens) out.push((await region.request(token)).status);
  return out;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1
    ? (sorted[mid] ?? NaN)
    : ((sorted[mid - 1] ?? NaN) + (sorted[mid] ?? NaN)) / 2;
}

/** Waits until `region`'s revocation feed has polled successfully after `sinceSeconds`. */
async function feedSucceededAfter(region: Region, sinceSeconds: number): Promise<void> {
  await until(
    `${region.name}'s revocation feed to poll successfully`,
    async () =>
      ((await region.metrics()).value(
        "keystone_edge_revocation_feed_last_success_timestamp_seconds",
      ) ?? 0) > sinceSeconds,
    20_000,
  );
}

describe("a master behind TLS and two regions", () => {
  it("both regions serve the master's tokens over verified TLS, with no validation call once warm", async () => {
    // The master's certificate is not one Node trusts: the edges reach it with keystone.cafile.
    const untrusted = await request(`${master.url}/`).then(
      () => "answered",
      (error: unknown) => (error as { code?: string }).code ?? "refused",
    );
    expect(untrusted).toMatch(/CERT|SELF_SIGNED|VERIFY/);
    const first = await master.issue(known);
    for (const region of [a, b]) {
      const res = await region.request(first);
      expect(res.status).toBe(200);
      const seen = (JSON.parse(res.body) as { headers: Record<string, string> }).headers;
      expect(seen["x-user-id"]).toBe(known.userId);
      expect(seen["x-project-id"]).toBe(known.projectId);
      expect(region.relay.accepted).toBeGreaterThan(0); // it went through the region's path
      const m = await region.metrics();
      expect(m.value("keystone_edge_keystone_call_duration_seconds_count", { outcome: "ok" })).toBe(
        1,
      );
      expect(m.sum("keystone_edge_keystone_endpoint_insecure")).toBe(0);
    }
    // Warm: the same token again and new ones Keystone issues for the same user and scope.
    const more = [first, await master.issue(known), await master.issue(known)];
    for (const region of [a, b]) {
      expect(await withCalls(region, () => statuses(region, more))).toEqual({
        calls: 0,
        result: [200, 200, 200],
      });
    }
  });

  describe("two rotations at the master, region A synced, region B lagging", () => {
    let rotatedAt = 0;

    beforeAll(async () => {
      await master.rotateKeys();
      await master.rotateKeys();
      rotatedAt = Date.now() / 1000 + 1.2;
      a.sync();
      // Each edge's own service token was signed with a key the second rotation retired:
      // its revocation feed meets a 401 and renews it. Wait for that, so that the calls
      // counted below are the tokens' own and not a renewal's retry.
      await Promise.all([feedSucceededAfter(a, rotatedAt), feedSucceededAfter(b, rotatedAt)]);
    }, 120_000);

    it("B finds out by itself that it is behind, A that it is not; a new master token gets 200 in both", async () => {
      expect(a.inSync()).toBe(true);
      expect(b.inSync()).toBe(false);
      // The scheduled check (every LAG_CHECK_MS here) asks the master for a token and
      // tries it against the region's keys: no user's token is needed to notice.
      await until(
        "B's key_repository_behind to be 1",
        async () => (await b.behind()) === 1,
        15_000,
      );
      // A lagged too between the rotations and its sync, and may have noticed: not any more.
      await until("A's key_repository_behind to be 0", async () => (await a.behind()) === 0, 5_000);
      const token = await master.issue(known);
      // A decrypts it with its synced copy and answers it from the user's context.
      expect(await withCalls(a, () => statuses(a, [token]))).toEqual({ calls: 0, result: [200] });
      // No key of B's copy decrypts it: B asks the master, once.
      expect(await withCalls(b, () => statuses(b, [token, token, token]))).toEqual({
        calls: 1,
        result: [200, 200, 200],
      });
      expect(await b.behind()).toBe(1);
      expect(await a.behind()).toBe(0);
    });

    it("forged tokens cost the master nothing in A, a replayed one at most one call in B; garbage nothing anywhere", async () => {
      const forged = Array.from({ length: 5 }, () => master.forge(known));
      expect(await withCalls(a, () => statuses(a, forged))).toEqual({
        calls: 0,
        result: forged.map(() => 401),
      });
      const forgery = master.forge(known);
      const replayed = Array.from({ length: 6 }, () => forgery);
      const inB = await withCalls(b, () => statuses(b, replayed));
      expect(inB.result).toEqual(replayed.map(() => 401));
      expect(inB.calls).toBeLessThanOrEqual(1);
      const garbage = [
        "garbage",
        "gAAAAA",
        `A${randomBytes(140).toString("base64url")}`, // no Fernet version byte
        `gAAAAA${"$".repeat(150)}`, // outside the base64url alphabet
        `${(await master.mint(known)).slice(0, 100)}x`, // cut short: not whole cipher blocks
      ];
      for (const region of [a, b]) {
        expect(await withCalls(region, () => statuses(region, garbage))).toEqual({
          calls: 0,
          result: garbage.map(() => 401),
        });
      }
      expect(await b.behind()).toBe(1);
      expect(await a.behind()).toBe(0);
    });

    it("B synced: the gauge returns to 0 within seconds and new tokens decrypt locally again", async () => {
      b.sync();
      expect(b.inSync()).toBe(true);
      const synced = Date.now();
      await until(
        "B's key_repository_behind to be 0",
        async () => (await b.behind()) === 0,
        15_000,
      );
      console.log(`region B: behind cleared ${String(Date.now() - synced)} ms after the sync`);
      const issued = await master.issue(known);
      const minted = await master.mint(known);
      expect(await withCalls(b, () => statuses(b, [issued, minted]))).toEqual({
        calls: 0,
        result: [200, 200],
      });
      expect(await a.behind()).toBe(0);
    });
  });

  it("a token revoked at the master is refused in both regions within the poll interval", async () => {
    const scope = await master.createScope("revoked");
    const victim = await master.issue(scope);
    const bystander = await master.issue(scope);
    for (const region of [a, b]) {
      expect(await statuses(region, [victim, victim, bystander])).toEqual([200, 200, 200]);
    }
    await master.revoke(victim);
    const revokedAt = Date.now();
    const refusedAfter = await Promise.all(
      [a, b].map(async (region) => {
        for (;;) {
          if ((await region.request(victim)).status === 401) return Date.now() - revokedAt;
          if (Date.now() - revokedAt > POLL_MS + 2_000) return Infinity;
          await new Promise((r) => setTimeout(r, 50));
        }
      }),
    );
    console.log(`revoked token refused after ${refusedAfter.map(String).join(" / ")} ms (A / B)`);
    for (const ms of refusedAfter) expect(ms).toBeLessThanOrEqual(POLL_MS + 2_000);
    for (const region of [a, b]) expect((await region.request(bystander)).status).toBe(200);
  });

  it("B cut off the master: A keeps validating, B serves what it knows and 503 for the rest, then recovers", async () => {
    const seen = await master.issue(known);
    expect((await b.request(seen)).status).toBe(200);
    const stranger = await master.createScope("partition");
    b.partition();
    try {
      // A validates a scope it has never seen at the master.
      const strangerToken = await master.mint(stranger);
      expect(await withCalls(a, () => statuses(a, [strangerToken]))).toEqual({
        calls: 1,
        result: [200],
      });
      // B: a token it has seen, and a new token of a user and scope it knows.
      expect((await b.request(seen)).status).toBe(200);
      expect((await b.request(await master.issue(known))).status).toBe(200);
      // B: a scope only the master could vouch for.
      const unknown = await b.request(await master.mint(stranger));
      expect(unknown.status).toBe(503);
      expect(unknown.headers.get("retry-after")).toMatch(/^\d+$/);
      // A, meanwhile, is untouched.
      expect((await a.request(await master.mint(stranger))).status).toBe(200);
    } finally {
      b.heal();
    }
    await until(
      "B to validate a new scope at the master again",
      async () => (await b.request(await master.mint(stranger))).status === 200,
      30_000,
    );
  });

  it("a far-away master: known contexts with no added latency, a new scope about one round trip more, no TLS connection per call", async () => {
    const ROUNDS = 7;
    const scopes = [];
    for (let i = 0; i < 2 * ROUNDS + 8; i++)
      scopes.push(await master.createScope(`far-${String(i)}`));
    const tokens = await Promise.all(scopes.map((s) => master.mint(s)));
    const warmA = tokens.slice(0, 4);
    const warmB = tokens.slice(4, 8);
    const newA = tokens.slice(8, 8 + ROUNDS);
    const newB = tokens.slice(8 + ROUNDS);
    b.setMasterDelay(FAR_MS);
    try {
      // Warm each pool: four validations at once, so that it holds the connections a
      // validation and a revocation poll in flight together need.
      await Promise.all([
        ...warmA.map(async (t) => expect((await a.request(t)).status).toBe(200)),
        ...warmB.map(async (t) => expect((await b.request(t)).status).toBe(200)),
      ]);

      // Known contexts: answered in the region, the master's distance does not show.
      const knownA: number[] = [];
      const knownB: number[] = [];
      const callsBefore = [await a.validationCalls(), await b.validationCalls()];
      for (let i = 0; i < 15; i++) {
        const [ta, tb] = [await master.mint(known), await master.mint(known)];
        const ra = await a.request(ta);
        const rb = await b.request(tb);
        expect([ra.status, rb.status]).toEqual([200, 200]);
        knownA.push(ra.ms);
        knownB.push(rb.ms);
      }
      expect([await a.validationCalls(), await b.validationCalls()]).toEqual(callsBefore);

      // New scopes: one validation each, over the connections already open.
      const connections = master.frontend.connections;
      const accepted = [a.relay.accepted, b.relay.accepted];
      const freshA: number[] = [];
      const freshB: number[] = [];
      const calls = [await a.validationCalls(), await b.validationCalls()];
      for (let i = 0; i < ROUNDS; i++) {
        const ra = await a.request(newA[i] ?? "");
        const rb = await b.request(newB[i] ?? "");
        expect([ra.status, rb.status]).toEqual([200, 200]);
        freshA.push(ra.ms);
        freshB.push(rb.ms);
      }
      const callsAfter = [await a.validationCalls(), await b.validationCalls()];
      expect(callsAfter.map((n, i) => n - (calls[i] ?? 0))).toEqual([ROUNDS, ROUNDS]);
      expect(master.frontend.connections - connections).toBe(0);
      expect([a.relay.accepted, b.relay.accepted]).toEqual(accepted);

      const knownExtra = median(knownB) - median(knownA);
      const newExtra = median(freshB) - median(freshA);
      console.log(
        `far-away master (+${String(FAR_MS)} ms per round trip): known context ` +
          `${median(knownA).toFixed(1)} ms near / ${median(knownB).toFixed(1)} ms far; ` +
          `new scope ${median(freshA).toFixed(1)} ms near / ${median(freshB).toFixed(1)} ms far ` +
          `(TLS connections at the master: ${String(master.frontend.connections)}, ` +
          `${String(master.frontend.resumed)} resumed)`,
      );
      expect(knownExtra).toBeLessThan(FAR_MS * 0.3);
      // one round trip more than near the master: not two (a handshake), not none
      expect(newExtra).toBeGreaterThan(FAR_MS * 0.6);
      expect(newExtra).toBeLessThan(FAR_MS * 1.7);
    } finally {
      b.setMasterDelay(0);
    }
  });
});
