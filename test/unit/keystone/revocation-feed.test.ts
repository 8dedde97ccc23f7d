/**
 * The revocation feed against an in-process fake Keystone (real HTTP on loopback) that
 * answers `GET /v3/OS-REVOKE/events?since=` as Keystone does (`revoked_at > since`): each
 * poll applies only the events it brings, events are pruned by the injected clock once no
 * acceptable token can be older, and the cap drops the oldest, counts and fails closed.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { KeystoneEndpoint } from "../../../src/keystone/endpoint.js";
import { KeystoneEndpoints } from "../../../src/keystone/endpoint-set.js";
import {
  APPLY_SLICE_EVENTS,
  RevocationFeed,
  type FeedUpdate,
  type RevocationFeedOptions,
} from "../../../src/keystone/revocation-feed.js";
import { ServiceToken } from "../../../src/keystone/service-token.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import { isoToMicros, type RevocationEvent } from "../../../src/revocation/event.js";
import { RevocationList } from "../../../src/revocation/list.js";
import { retentionSeconds } from "../../../src/revocation/retention.js";
import { ManualClock, RecordingLogger, T0_MS, tokenBody } from "../../harness/doubles.js";

interface FakeFeed {
  /** Events Keystone holds, as it lists them. */
  readonly events: Record<string, string>[];
  /** The `since` of each poll ("" when none). */
  readonly since: string[];
  /** Events listed per poll. */
  readonly served: number[];
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function fakeKeystone(): Promise<{ url: string; feed: FakeFeed }> {
  const feed: FakeFeed = { events: [], since: [], served: [] };
  const server = createServer((req, res) => {
    req.resume();
    const url = new URL(req.url ?? "/", "http://x");
    if (req.method === "POST" && url.pathname === "/v3/auth/tokens") {
      const expires = new Date(Date.now() + 3_600_000).toISOString();
      res.writeHead(201, { "x-subject-token": "svc-token", "content-type": "application/json" });
      return void res.end(JSON.stringify({ token: { expires_at: expires } }));
    }
    if (req.method === "GET" && url.pathname === "/v3/OS-REVOKE/events") {
      const since = url.searchParams.get("since") ?? "";
      feed.since.push(since);
      const after = since === "" ? -Infinity : isoToMicros(since);
      const listed = feed.events.filter((e) => isoToMicros(e["revoked_at"] ?? "") > after);
      feed.served.push(listed.length);
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(JSON.stringify({ events: listed }));
    }
    res.writeHead(404).end();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}/v3`;
  return { url, feed };
}

/** Keystone's rendering of an event revoked at `ms` (issued_before = revoked_at). */
function keystoneEvent(ms: number, fields: Record<string, string>): Record<string, string> {
  const at = new Date(ms).toISOString().replace("Z", "000Z");
  return { ...fields, issued_before: at, revoked_at: at };
}

function setup(
  url: string,
  clock: ManualClock,
  options: Partial<RevocationFeedOptions> = {},
): {
  feed: RevocationFeed;
  list: RevocationList;
  applied: RevocationEvent[][];
  logger: RecordingLogger;
} {
  const endpoints = new KeystoneEndpoints([new KeystoneEndpoint({ url, timeoutMs: 2_000 })], {
    clock,
  });
  const serviceToken = new ServiceToken({
    auth: {
      type: "password",
      username: "edge",
      password: "pw",
      user_domain_id: "default",
      project_name: "service",
      project_domain_id: "default",
    },
    endpoints: () => endpoints.preferred(),
  });
  const list = options.list ?? new RevocationList();
  const applied: RevocationEvent[][] = [];
  const logger = new RecordingLogger();
  const feed = new RevocationFeed({
    endpoints,
    serviceToken,
    clock,
    logger,
    onEvents: (events) => applied.push([...events]),
    ...options,
    list,
  });
  return { feed, list, applied, logger };
}

/** A token of `user` issued at `issuedAtMs`. */
function tokenOf(user: string, issuedAtMs: number): KeystoneToken {
  return tokenBody(user, {
    issued_at: new Date(issuedAtMs).toISOString(),
    expires_at: new Date(issuedAtMs + 3_600_000).toISOString(),
  });
}

describe("revocation feed", () => {
  it("applies only the events each poll brings, asking Keystone for those since the last", async () => {
    const { url, feed: keystone } = await fakeKeystone();
    const clock = new ManualClock();
    const { feed, list, applied } = setup(url, clock);
    keystone.events.push(
      keystoneEvent(T0_MS - 5_000, { user_id: "u1" }),
      keystoneEvent(T0_MS - 4_000, { audit_id: "a1" }),
    );
    await feed.pollNow();
    expect(keystone.since).toEqual([""]);
    expect(applied.map((a) => a.length)).toEqual([2]);
    expect(list.size).toBe(2);

    // a cached token's verdict is remembered across a poll that brings nothing new
    const cached = tokenOf("u2", T0_MS - 60_000);
    expect(list.isRevoked(cached)).toBe(false);
    const generation = list.generation;
    clock.advance(10_000);
    await feed.pollNow();
    // since trails the newest revoked_at by the overlap: the same two come back, ignored
    expect(keystone.since[1]).toBe(new Date(T0_MS - 4_000 - 60_000).toISOString());
    expect(keystone.served[1]).toBe(2);
    expect(applied).toHaveLength(1);
    expect(list.generation).toBe(generation);

    keystone.events.push(keystoneEvent(T0_MS + 9_000, { user_id: "u2" }));
    clock.advance(10_000);
    await feed.pollNow();
    expect(keystone.served[2]).toBe(3);
    expect(applied.map((a) => a.map((e) => e.userId ?? e.auditId))).toEqual([["u1", "a1"], ["u2"]]);
    expect(list.size).toBe(3);
    expect(list.generation).toBe(generation + 1);
    expect(list.isRevoked(cached)).toBe(true);
    expect(feed.status()).toMatchObject({ kind: "fresh", events: 3 });
  });

  it("applies a long list in slices, letting the event loop run between them", async () => {
    const { url, feed: keystone } = await fakeKeystone();
    const clock = new ManualClock();
    const { feed, list, applied } = setup(url, clock);
    const n = 2 * APPLY_SLICE_EVENTS + 500;
    for (let i = 0; i < n; i++) {
      keystone.events.push(keystoneEvent(T0_MS - 60_000 + i, { audit_id: `a${String(i)}` }));
    }
    const seen: number[] = [];
    let done = false;
    const sample = (): void => {
      seen.push(list.size);
      if (!done) setImmediate(sample);
    };
    const polled = feed.pollNow().then(() => {
      done = true;
    });
    setImmediate(sample);
    await polled;
    expect(list.size).toBe(n);
    expect(applied.map((a) => a.length)).toEqual([n]);
    expect(seen).toContain(APPLY_SLICE_EVENTS);
    expect(seen).toContain(2 * APPLY_SLICE_EVENTS);
  });

  it("prunes by the clock: an event just inside retention still revokes, one just outside is gone", async () => {
    const { url, feed: keystone } = await fakeKeystone();
    const clock = new ManualClock();
    const retention = { tokenExpirationSeconds: 3_600, allowExpiredWindowSeconds: 7_200 };
    const retentionMs = retentionSeconds(retention) * 1000;
    expect(retentionMs).toBe((3_600 + 7_200 + 300) * 1000);
    const { feed, list, applied } = setup(url, clock, retention);
    const insideMs = T0_MS - retentionMs; // issued_before exactly at the cutoff: kept
    keystone.events.push(
      keystoneEvent(insideMs, { user_id: "inside" }),
      keystoneEvent(insideMs - 1_000, { user_id: "outside" }),
    );
    await feed.pollNow();
    expect(applied.flat().map((e) => e.userId)).toEqual(["inside", "outside"]);
    expect(list.size).toBe(1);
    expect(list.isRevoked(tokenOf("inside", insideMs - 60_000))).toBe(true);
    expect(list.isRevoked(tokenOf("outside", insideMs - 60_000))).toBe(false);

    // a second later the first is past retention too, even with the feed failing
    clock.advance(1_000);
    await new Promise<void>((r) => servers[0]?.close(() => r()) ?? r());
    servers[0]?.closeAllConnections();
    await feed.pollNow();
    expect(feed.status().kind).toBe("stale");
    expect(list.size).toBe(0);
    expect(list.isRevoked(tokenOf("inside", insideMs - 60_000))).toBe(false);
  });

  it("holds at most maxEvents: drops the oldest, logs and counts, refuses older tokens until retention passes them", async () => {
    const { url, feed: keystone } = await fakeKeystone();
    const clock = new ManualClock();
    const dropped: number[] = [];
    const { feed, list, logger } = setup(url, clock, {
      maxEvents: 3,
      tokenExpirationSeconds: 3_600,
      allowExpiredWindowSeconds: 0,
      onDropped: (n) => dropped.push(n),
    });
    for (let i = 0; i < 5; i++) {
      keystone.events.push(keystoneEvent(T0_MS - (5 - i) * 1_000, { audit_id: `a${String(i)}` }));
    }
    await feed.pollNow();
    expect(list.size).toBe(3);
    expect(dropped).toEqual([2]);
    const warning = logger.lines.find((l) => l.level === "warn");
    expect(warning?.fields).toMatchObject({ dropped: 2, held: 3, maxEvents: 3 });
    // issued at or before the newest dropped event (a1, T0 − 4 s): refused, whatever it is
    expect(list.isRevoked(tokenOf("anyone", T0_MS - 4_000))).toBe(true);
    expect(list.isRevoked(tokenOf("anyone", T0_MS - 3_999))).toBe(false);

    // retention (1 h + 5 min) passes the dropped events: nothing refused for them any more
    clock.advance(3_900_000 - 4_000 + 1);
    await feed.pollNow();
    expect(list.overflow()).toEqual({ kind: "within_cap" });
    expect(list.isRevoked(tokenOf("anyone", T0_MS - 4_000))).toBe(false);
    expect(logger.lines.some((l) => l.message.includes("past retention: no token refused"))).toBe(
      true,
    );
  });
});

describe("one feed per host (workers > 1)", () => {
  it("the leader shares what each poll learnt; a follower applies it without polling, and polls itself when the leader starts over", async () => {
    const { url, feed: keystone } = await fakeKeystone();
    const clock = new ManualClock(Date.now());
    keystone.events.push(keystoneEvent(clock.nowMs() - 5_000, { user_id: "alice" }));
    const shared: FeedUpdate[] = [];
    const leader = setup(url, clock, { onShare: (u) => shared.push(u) });
    const follower = setup(url, clock, { mode: "follow" });

    // The leader's first poll lists everything: shared as "poll yourselves", not as events.
    await leader.feed.pollNow();
    expect(shared).toEqual([
      { events: [], state: expect.objectContaining({ kind: "fresh" }) as unknown, resync: true },
    ]);
    follower.feed.start(); // a follower polls once at start, never on a timer
    await follower.feed.pollNow();
    const ownPolls = keystone.since.length;
    expect(follower.list.isRevoked(tokenOf("alice", clock.nowMs() - 60_000))).toBe(true);

    // A new event: the leader's poll finds it and shares it; the follower applies it.
    clock.advance(1_000);
    keystone.events.push(keystoneEvent(clock.nowMs(), { user_id: "bob" }));
    await leader.feed.pollNow();
    const update = shared.at(-1);
    expect(update?.events.map((e) => e.userId)).toEqual(["bob"]);
    await follower.feed.receive(update as FeedUpdate);
    expect(follower.list.isRevoked(tokenOf("bob", clock.nowMs() - 60_000))).toBe(true);
    expect(follower.applied.at(-1)?.map((e) => e.userId)).toEqual(["bob"]);
    expect(follower.feed.status()).toMatchObject({
      kind: "fresh",
      lastSuccessMs: clock.nowMs(),
      events: 2,
    });
    expect(keystone.since.length).toBe(ownPolls + 1); // only the leader's poll

    // A failing leader: its state is the followers' (stale since its last success).
    await leader.feed.stop();
    const failing = shared.length;
    await follower.feed.receive({
      events: [],
      state: { kind: "stale", lastSuccessMs: clock.nowMs(), error: "down", events: 0 },
    });
    expect(follower.feed.status()).toMatchObject({ kind: "stale", error: "down", events: 2 });
    expect(shared.length).toBe(failing);

    // A revocation another worker made through its Identity face: applied as local (it
    // does not move where the feed asks from), the feed's state untouched.
    const latest = follower.list.latestRevokedAtMicros();
    const before = follower.feed.status();
    await follower.feed.receive({
      events: [
        {
          auditId: "dave-token-audit-id",
          issuedBeforeMicros: (clock.nowMs() + 3_600_000) * 1000,
          revokedAtMicros: (clock.nowMs() + 10_000) * 1000,
        },
      ],
      state: { kind: "fresh", lastSuccessMs: 0, events: 0 },
      local: true,
    });
    const dave = tokenBody("dave", {
      audit_ids: ["dave-token-audit-id"],
      issued_at: new Date(clock.nowMs() - 60_000).toISOString(),
      expires_at: new Date(clock.nowMs() + 3_000_000).toISOString(),
    });
    expect(follower.list.isRevoked(dave)).toBe(true);
    expect(follower.list.latestRevokedAtMicros()).toBe(latest);
    expect(follower.feed.status()).toMatchObject({
      kind: before.kind,
      error: "down",
      events: 3,
    });

    // A leader that starts over (replaced, reloaded): the followers catch up themselves.
    keystone.events.push(keystoneEvent(clock.nowMs() + 1_000, { user_id: "carol" }));
    await follower.feed.receive({ events: [], state: { kind: "starting" }, resync: true });
    expect(keystone.since.length).toBe(ownPolls + 2);
    expect(follower.list.isRevoked(tokenOf("carol", clock.nowMs() - 60_000))).toBe(true);
    await follower.feed.stop();
  });
});
