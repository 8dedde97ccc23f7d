import { describe, expect, it } from "vitest";

import {
  MAX_RELATIVE_TTL_SECONDS,
  MemcachedPool,
  MemcachedServer,
  parseServer,
  type MemcachedClientFactory,
  type MemcachedClientLike,
  type MemcachedOptions,
  type MemcachedSocketOptions,
} from "../../../src/cache/memcached.js";
import { CountingCacheMetrics } from "../../../src/cache/metrics.js";
import { ManualClock, RecordingLogger, T0_MS } from "../../harness/doubles.js";

type Mode = "ok" | "reject" | "hang" | "throw";

/** A memjs stand-in whose behaviour the test switches. */
class FakeMemcached {
  mode: Mode = "ok";
  readonly data = new Map<string, Buffer>();
  readonly expires: number[] = [];
  calls = 0;
  created = 0;
  closed = 0;
  socket: MemcachedSocketOptions | undefined;

  readonly factory: MemcachedClientFactory = (_server, socket) => {
    this.created++;
    this.socket = socket;
    const client: MemcachedClientLike = {
      get: (key) => this.run(() => ({ value: this.data.get(key) ?? null })),
      set: (key, value, options) =>
        this.run(() => {
          this.data.set(key, value);
          this.expires.push(options.expires);
          return true;
        }),
      close: () => {
        this.closed++;
      },
    };
    return client;
  };

  private run<T>(answer: () => T): Promise<T> {
    this.calls++;
    switch (this.mode) {
      case "ok":
        return Promise.resolve(answer());
      case "reject":
        return Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:11211"));
      case "hang":
        return new Promise<T>(() => undefined);
      case "throw":
        throw new RangeError("synchronous surprise");
    }
  }
}

const KEY = "keystone-edge/v1/00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

function setup(options: MemcachedOptions = {}) {
  const fake = new FakeMemcached();
  const clock = new ManualClock();
  const metrics = new CountingCacheMetrics();
  const logger = new RecordingLogger();
  const server = new MemcachedServer("127.0.0.1:11211", {
    createClient: fake.factory,
    clock,
    metrics,
    logger,
    deadlineMs: 20,
    ...options,
  });
  return { fake, clock, metrics, logger, server };
}

async function elapsedMs<T>(run: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await run();
  return [result, performance.now() - started];
}

describe("MemcachedServer, server healthy", () => {
  it("gets what it set; counts hits, misses, writes and latencies", async () => {
    const { fake, metrics, server } = setup();
    expect(await server.get(KEY)).toBeUndefined();
    await server.set(KEY, Buffer.from("v"), 300);
    expect(await server.get(KEY)).toEqual(Buffer.from("v"));
    expect(fake.expires).toEqual([300]);
    expect(metrics.snapshot()).toEqual({ memcached_miss: 1, memcached_set: 1, memcached_hit: 1 });
    expect(metrics.observations.map((o) => `${o.op}:${o.outcome}`)).toEqual([
      "get:miss",
      "set:stored",
      "get:hit",
    ]);
    expect(fake.created).toBe(1); // one client, created on first use
    expect(server.state()).toEqual({ kind: "closed", failures: 0 });
  });

  it("writes whole seconds, caps at 30 days, and skips TTLs memcached would misread", async () => {
    const { fake, metrics, server } = setup();
    await server.set(KEY, Buffer.from("v"), 0.2);
    await server.set(KEY, Buffer.from("v"), 10 * MAX_RELATIVE_TTL_SECONDS);
    await server.set(KEY, Buffer.from("v"), 0); // memcached: "never expires"
    await server.set(KEY, Buffer.from("v"), -5);
    await server.set(KEY, Buffer.from("v"), Number.NaN);
    expect(fake.expires).toEqual([1, MAX_RELATIVE_TTL_SECONDS]);
    expect(metrics.get("memcached_set_skipped")).toBe(3);
  });

  it("does not write values above maxValueBytes", async () => {
    const { fake, metrics, server } = setup({ maxValueBytes: 10 });
    await server.set(KEY, Buffer.alloc(11), 60);
    await server.set(KEY, Buffer.alloc(10), 60);
    expect(fake.expires).toEqual([60]);
    expect(metrics.get("memcached_set_skipped")).toBe(1);
  });

  it("hands memjs its socket timeouts", async () => {
    const { fake, server } = setup({ connectTimeoutMs: 250, socketTimeoutMs: 750 });
    await server.get(KEY);
    expect(fake.socket).toEqual({ connectTimeoutMs: 250, socketTimeoutMs: 750 });
  });
});

describe("MemcachedServer, server failing", () => {
  it("turns errors, synchronous throws and timeouts into misses; set never rejects", async () => {
    const { fake, metrics, server } = setup({ failureThreshold: 100 });
    fake.mode = "reject";
    expect(await server.get(KEY)).toBeUndefined();
    await expect(server.set(KEY, Buffer.from("v"), 60)).resolves.toBeUndefined();
    fake.mode = "throw";
    expect(await server.get(KEY)).toBeUndefined();
    await expect(server.set(KEY, Buffer.from("v"), 60)).resolves.toBeUndefined();
    fake.mode = "hang";
    const [value, ms] = await elapsedMs(() => server.get(KEY));
    expect(value).toBeUndefined();
    expect(ms).toBeGreaterThanOrEqual(15);
    expect(ms).toBeLessThan(20 + 40);
    const [, setMs] = await elapsedMs(() => server.set(KEY, Buffer.from("v"), 60));
    expect(setMs).toBeLessThan(20 + 40);
    expect(metrics.snapshot()).toEqual({ memcached_error: 4, memcached_timeout: 2 });
    expect(server.pending).toBe(0);
  });

  it("opens after 5 consecutive failures, then answers at once without calling memcached", async () => {
    const { fake, metrics, logger, server } = setup();
    fake.mode = "reject";
    for (let i = 0; i < 5; i++) await server.get(KEY);
    expect(server.state()).toEqual({ kind: "open", sinceMs: T0_MS, untilMs: T0_MS + 5_000 });
    const calls = fake.calls;
    fake.mode = "hang"; // would cost a deadline each, if it were called
    for (let i = 0; i < 100; i++) {
      const [value, ms] = await elapsedMs(() => server.get(KEY));
      expect(value).toBeUndefined();
      expect(ms).toBeLessThan(15);
    }
    await server.set(KEY, Buffer.from("v"), 60);
    expect(fake.calls).toBe(calls);
    expect(metrics.get("memcached_short_circuit")).toBe(101);
    expect(metrics.transitions).toEqual([{ server: "127.0.0.1:11211", state: "open" }]);
    // logged once, with the server and cause, at warn
    expect(logger.lines).toHaveLength(1);
    expect(logger.lines[0]).toMatchObject({
      level: "warn",
      fields: { server: "127.0.0.1:11211", cause: "connect ECONNREFUSED 127.0.0.1:11211" },
    });
    // the memjs client was dropped (its pending callbacks with it)
    expect(fake.closed).toBe(1);
  });

  it("probes after the cooldown with a fresh client, and closes on success", async () => {
    const { fake, clock, metrics, logger, server } = setup();
    fake.mode = "reject";
    for (let i = 0; i < 5; i++) await server.get(KEY);
    fake.mode = "ok";
    clock.advance(4_999);
    expect(await server.get(KEY)).toBeUndefined();
    expect(fake.created).toBe(1);
    clock.advance(1);
    await server.set(KEY, Buffer.from("back"), 60); // the probe
    expect(fake.created).toBe(2);
    expect(server.state()).toEqual({ kind: "closed", failures: 0 });
    expect(await server.get(KEY)).toEqual(Buffer.from("back"));
    expect(metrics.transitions.map((t) => t.state)).toEqual(["open", "half-open", "closed"]);
    expect(logger.at("info")).toHaveLength(1);
    expect(logger.at("info")[0]?.fields).toMatchObject({
      server: "127.0.0.1:11211",
      downMs: 5_000,
    });
  });

  it("refuses everything but the probe while it is out, and re-opens when it fails", async () => {
    const { fake, clock, metrics, logger, server } = setup({ deadlineMs: 30 });
    fake.mode = "reject";
    for (let i = 0; i < 5; i++) await server.get(KEY);
    clock.advance(5_000);
    fake.mode = "hang";
    const probe = server.get(KEY);
    expect(server.state()).toEqual({ kind: "half-open" });
    const shortCircuits = metrics.get("memcached_short_circuit");
    expect(await server.get(KEY)).toBeUndefined();
    expect(metrics.get("memcached_short_circuit")).toBe(shortCircuits + 1);
    expect(await probe).toBeUndefined();
    expect(server.state()).toEqual({
      kind: "open",
      sinceMs: T0_MS + 5_000,
      untilMs: T0_MS + 10_000,
    });
    expect(logger.at("warn")).toHaveLength(1); // the loss; the failed probe logs at debug
    expect(logger.at("debug").map((l) => l.message)).toHaveLength(2);
  });

  it("keeps at most maxInFlight calls waiting; more are misses at once", async () => {
    const { fake, metrics, server } = setup({ maxInFlight: 2, deadlineMs: 40 });
    fake.mode = "hang";
    const waiting = [server.get(KEY), server.get(KEY)];
    const [value, ms] = await elapsedMs(() => server.get(KEY));
    expect(value).toBeUndefined();
    expect(ms).toBeLessThan(15);
    expect(metrics.get("memcached_overload")).toBe(1);
    expect(server.pending).toBe(2);
    await Promise.all(waiting);
    expect(server.pending).toBe(0);
  });

  it("never logs a key", async () => {
    const { fake, clock, logger, server } = setup({ failureThreshold: 1 });
    fake.mode = "reject";
    await server.get(KEY);
    clock.advance(5_000);
    fake.mode = "ok";
    await server.get(KEY);
    expect(logger.lines.length).toBeGreaterThan(1);
    expect(logger.text()).not.toContain(KEY.slice(17));
  });

  it("is a miss after close, without a call", async () => {
    const { fake, server } = setup();
    await server.get(KEY);
    server.close();
    const calls = fake.calls;
    expect(await server.get(KEY)).toBeUndefined();
    await server.set(KEY, Buffer.from("v"), 60);
    expect(fake.calls).toBe(calls);
    expect(fake.closed).toBe(1);
  });

  it("survives a metrics sink and a logger that throw", async () => {
    const fake = new FakeMemcached();
    fake.mode = "reject";
    const server = new MemcachedServer("m:11211", {
      createClient: fake.factory,
      failureThreshold: 1,
      metrics: {
        count: () => {
          throw new Error("sink");
        },
        observeMemcached: () => {
          throw new Error("sink");
        },
        breakerChanged: () => {
          throw new Error("sink");
        },
      },
      logger: {
        debug: () => undefined,
        info: () => undefined,
        warn: () => {
          throw new Error("log");
        },
        error: () => undefined,
      },
    });
    await expect(server.get(KEY)).resolves.toBeUndefined();
    await expect(server.set(KEY, Buffer.from("v"), 60)).resolves.toBeUndefined();
  });
});

describe("MemcachedPool", () => {
  it("spreads keys over the servers, each with its own breaker", async () => {
    const fakes = new Map<string, FakeMemcached>();
    const factory: MemcachedClientFactory = (server, socket) => {
      let fake = fakes.get(server);
      if (fake === undefined) {
        fake = new FakeMemcached();
        fakes.set(server, fake);
      }
      return fake.factory(server, socket);
    };
    const pool = new MemcachedPool(["a:1", "b:2", "c:3"], {
      createClient: factory,
      failureThreshold: 1,
    });
    const keys = Array.from(
      { length: 300 },
      (_, i) => `${KEY.slice(0, -4)}${i.toString(16).padStart(4, "0")}`,
    );
    const owners = new Map<string, number>();
    for (const key of keys) {
      const owner = pool.serverFor(key).server;
      owners.set(owner, (owners.get(owner) ?? 0) + 1);
      expect(pool.serverFor(key)).toBe(pool.serverFor(key));
    }
    expect([...owners.keys()].sort()).toEqual(["a:1", "b:2", "c:3"]);
    for (const n of owners.values()) expect(n).toBeGreaterThan(50);

    for (const key of keys) await pool.set(key, Buffer.from(key), 60);
    const onB = keys.find((k) => pool.serverFor(k).server === "b:2") ?? "";
    const onA = keys.find((k) => pool.serverFor(k).server === "a:1") ?? "";
    const b = fakes.get("b:2");
    if (b) b.mode = "reject";
    expect(await pool.get(onB)).toBeUndefined();
    expect(await pool.get(onA)).toEqual(Buffer.from(onA));
    expect(pool.state().map((s) => `${s.server}=${s.state.kind}`)).toEqual([
      "a:1=closed",
      "b:2=open",
      "c:3=closed",
    ]);
    pool.close();
    expect([...fakes.values()].every((f) => f.closed === 1)).toBe(true);
  });

  it("places keys by rendezvous hashing: even shares, the same on every edge whatever the list's order, and only a removed server's keys move", () => {
    const keys = Array.from({ length: 30_000 }, (_, i) => `keystone-edge/v1/tok/${String(i)}`);
    const three = new MemcachedPool(["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]);
    const reordered = new MemcachedPool(["10.0.0.3:11211", "10.0.0.1:11211", "10.0.0.2:11211"]);
    const two = new MemcachedPool(["10.0.0.1:11211", "10.0.0.3:11211"]);
    const four = new MemcachedPool([
      "10.0.0.1:11211",
      "10.0.0.2:11211",
      "10.0.0.3:11211",
      "10.0.0.4:11211",
    ]);
    const shares = new Map<string, number>();
    let movedOnRemoval = 0;
    let movedOnAddition = 0;
    for (const key of keys) {
      const owner = three.serverFor(key).server;
      shares.set(owner, (shares.get(owner) ?? 0) + 1);
      expect(reordered.serverFor(key).server).toBe(owner);
      const afterRemoval = two.serverFor(key).server;
      if (owner !== "10.0.0.2:11211") expect(afterRemoval).toBe(owner);
      else movedOnRemoval++;
      const afterAddition = four.serverFor(key).server;
      if (afterAddition !== owner) {
        expect(afterAddition).toBe("10.0.0.4:11211");
        movedOnAddition++;
      }
    }
    for (const n of shares.values()) expect(Math.abs(n / keys.length - 1 / 3)).toBeLessThan(0.02);
    expect(movedOnRemoval).toBe(shares.get("10.0.0.2:11211"));
    expect(Math.abs(movedOnAddition / keys.length - 1 / 4)).toBeLessThan(0.02);
    for (const pool of [three, reordered, two, four]) pool.close();
  });

  it("needs at least one server", () => {
    expect(() => new MemcachedPool([])).toThrow(RangeError);
  });
});

describe("parseServer", () => {
  it("reads host:port, [v6]:port and a bare host", () => {
    expect(parseServer("10.0.0.5:11211")).toEqual({ host: "10.0.0.5", port: 11211 });
    expect(parseServer("memcached.svc")).toEqual({ host: "memcached.svc", port: 11211 });
    expect(parseServer("[fd00::5]:11212")).toEqual({ host: "fd00::5", port: 11212 });
  });

  it("refuses anything else", () => {
    for (const bad of ["", "a:b", "a:0", "a:70000", "a b:1", "[x]:1", "fd00::5:11211"]) {
      expect(() => parseServer(bad), bad).toThrow(RangeError);
    }
    expect(() => new MemcachedServer("a b")).toThrow(RangeError);
  });
});
