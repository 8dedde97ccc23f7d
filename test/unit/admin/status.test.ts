/**
 * `/status`'s key lag part: the state with its since-when, the last agreement and the last
 * check; the overall status degraded while behind. And the status page shows it.
 */
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { EdgeMetrics } from "../../../src/admin/metrics.js";
import { STATUS_PAGE_HTML, STATUS_PAGE_SCRIPT } from "../../../src/admin/status-page.js";
import { keyLagStatus, StatusReporter } from "../../../src/admin/status.js";
import type { KeyRepositoryStatus } from "../../../src/fernet/key-repository.js";
import type { KeyLagCheck, KeyLagState } from "../../../src/keystone/key-lag.js";
import { ManualClock, T0_MS } from "../../harness/doubles.js";

const iso = (ms: number): string => new Date(ms).toISOString();

const keys: KeyRepositoryStatus = {
  directory: "/etc/keystone/fernet-keys",
  primary_index: 2,
  key_count: 3,
  keys: [],
  loaded_at: iso(T0_MS),
  last_reload: { result: "ok", at: iso(T0_MS) },
  reloads: 1,
  reload_failures: 0,
  watching: "events+poll",
};

function reporter(
  lag: { state: KeyLagState; lastCheck: KeyLagCheck | undefined },
  metrics = new EdgeMetrics(new Registry()),
  memcached = false,
  keysStatus: KeyRepositoryStatus = keys,
) {
  return new StatusReporter({
    metrics,
    memcached,
    endpoints: () => [],
    degradedMode: () => false,
    draining: () => false,
    keys: () => keysStatus,
    keyLag: () => lag,
    feed: () => ({ kind: "starting" }),
    clock: new ManualClock(),
  });
}

describe("status: the key lag", () => {
  it("behind: since when, last agreed, the last check; the edge is degraded", async () => {
    const lag = {
      state: { kind: "behind", sinceMs: T0_MS - 30_000, lastAgreedAtMs: T0_MS - 90_000 } as const,
      lastCheck: { atMs: T0_MS - 1_000, trigger: "undecryptable", result: "behind" } as const,
    };
    const s = await reporter(lag).snapshot();
    expect(s.status).toBe("degraded");
    expect(s.keys.lag).toEqual({
      state: "behind",
      since: iso(T0_MS - 30_000),
      last_agreed: iso(T0_MS - 90_000),
      last_check: { at: iso(T0_MS - 1_000), trigger: "undecryptable", result: "behind" },
      fallbacks: { valid: 0, invalid: 0, unavailable: 0, refused: 0 },
    });
  });

  it("in sync: ok; unknown and a failed check: ok too, with the error", async () => {
    const inSync = await reporter({
      state: { kind: "in_sync", sinceMs: T0_MS - 600_000, agreedAtMs: T0_MS - 5_000 },
      lastCheck: { atMs: T0_MS - 5_000, trigger: "schedule", result: "in_sync" },
    }).snapshot();
    expect(inSync.status).toBe("ok");
    expect(inSync.keys.lag).toMatchObject({
      state: "in_sync",
      since: iso(T0_MS - 600_000),
      last_agreed: iso(T0_MS - 5_000),
    });
    const unknown = await reporter({
      state: { kind: "unknown" },
      lastCheck: { atMs: T0_MS, trigger: "start", result: "failed", error: "HTTP 503" },
    }).snapshot();
    expect(unknown.status).toBe("ok");
    expect(unknown.keys.lag).toEqual({
      state: "unknown",
      since: null,
      last_agreed: null,
      last_check: { at: iso(T0_MS), trigger: "start", result: "failed", error: "HTTP 503" },
      fallbacks: { valid: 0, invalid: 0, unavailable: 0, refused: 0 },
    });
  });

  it("counts the fallbacks to Keystone by result, and the refusals, as /metrics does", async () => {
    const metrics = new EdgeMetrics(new Registry());
    metrics.keyLagFallbacks.inc({ result: "valid" }, 4);
    metrics.keyLagFallbacks.inc({ result: "unavailable" });
    metrics.keyLagFallbackRefusals.inc(2);
    const s = await reporter(
      { state: { kind: "unknown" }, lastCheck: undefined },
      metrics,
    ).snapshot();
    expect(s.keys.lag?.fallbacks).toEqual({ valid: 4, invalid: 0, unavailable: 1, refused: 2 });
  });

  it("without a monitor: unknown, never checked", () => {
    expect(keyLagStatus(undefined)).toEqual({
      state: "unknown",
      since: null,
      last_agreed: null,
      last_check: null,
    });
  });

  it("the status page has a place for each figure and fills it from keys.lag", () => {
    for (const id of ["keys-lag", "keys-lag-since", "keys-lag-agreed", "keys-lag-check"]) {
      expect(STATUS_PAGE_HTML).toContain(`id="${id}"`);
      expect(STATUS_PAGE_SCRIPT).toContain(`"${id}"`);
    }
    expect(STATUS_PAGE_SCRIPT).toContain("s.keys.lag");
  });

  it("the status page's script renders the lag (run against a stand-in DOM)", async () => {
    const status = await reporter({
      state: { kind: "behind", sinceMs: T0_MS - 30_000 },
      lastCheck: { atMs: T0_MS, trigger: "reload", result: "behind" },
    }).snapshot();
    const rendered = await renderPage(status);
    expect(rendered.get("keys-lag")).toMatchObject({
      text: "behind",
      className: "badge degraded",
    });
    expect(rendered.get("keys-lag-since")?.text).toBe(iso(T0_MS - 30_000));
    expect(rendered.get("keys-lag-agreed")?.text).toBe("never");
    expect(rendered.get("keys-lag-check")?.text).toBe(`${iso(T0_MS)} (reload: behind)`);
    expect(rendered.get("status")?.text).toBe("degraded");
    expect(rendered.get("workers-section")?.hidden).toBe(true);
  });

  it("last reload is when the ring in force was loaded, not the last read of the directory", async () => {
    // Loaded an hour ago, re-read (unchanged) a moment ago by the poll: the operator's
    // "last reload" must not move with every poll.
    const polled: KeyRepositoryStatus = {
      ...keys,
      loaded_at: iso(T0_MS - 3_600_000),
      last_reload: { result: "ok", at: iso(T0_MS - 2_000) },
      reloads: 360,
    };
    const lag = { state: { kind: "unknown" } as const, lastCheck: undefined };
    const s = await reporter(lag, undefined, false, polled).snapshot();
    expect(s.keys.last_reload).toBe(iso(T0_MS - 3_600_000));
    expect(s.keys.last_checked).toBe(iso(T0_MS - 2_000));
    const rendered = await renderPage(s);
    expect(rendered.get("keys-reload")?.text).toBe(iso(T0_MS - 3_600_000));
    expect(rendered.get("keys-checked")?.text).toBe(iso(T0_MS - 2_000));
  });

  it("the status page lists the workers when /status has them (workers > 1)", async () => {
    const status = await reporter({ state: { kind: "unknown" }, lastCheck: undefined }).snapshot();
    const rendered = await renderPage({
      ...status,
      workers: [
        { worker: 1, pid: 101, state: "serving", started_at: iso(T0_MS), restarts: 0 },
        { worker: 2, pid: null, state: "waiting", started_at: null, restarts: 3 },
      ],
    });
    expect(rendered.get("workers-section")?.hidden).toBe(false);
    expect(rendered.get("workers")?.rows).toEqual([
      ["1", "101", "serving", iso(T0_MS), "0"],
      ["2", "—", "waiting", "—", "3"],
    ]);
  });
});

interface FakeElement {
  id: string;
  textContent: string;
  className: string;
  hidden: boolean;
  children: FakeElement[];
  dataset: Record<string, string>;
  replaceChildren(): void;
  appendChild(child: FakeElement): FakeElement;
}

/** Runs the page's script once against elements made on demand; their text and class by id. */
async function renderPage(
  status: unknown,
): Promise<Map<string, { text: string; className: string; hidden: boolean; rows: string[][] }>> {
  const elements = new Map<string, FakeElement>();
  const element = (id = ""): FakeElement => {
    const e: FakeElement = {
      id,
      textContent: "",
      className: "",
      hidden: false,
      children: [],
      dataset: {},
      replaceChildren: () => {
        e.children = [];
      },
      appendChild: (child) => {
        e.children.push(child);
        return child;
      },
    };
    return e;
  };
  const body = element();
  const document = {
    body,
    getElementById(id: string): FakeElement {
      let e = elements.get(id);
      if (e === undefined) {
        e = element(id);
        elements.set(id, e);
      }
      return e;
    },
    createElement: () => element(),
  };
  const fetch = () => Promise.resolve({ json: () => Promise.resolve(status) });
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- the page's own static script
  const run = new Function("document", "fetch", "setInterval", STATUS_PAGE_SCRIPT) as (
    ...args: unknown[]
  ) => void;
  run(document, fetch, () => 0);
  const deadline = Date.now() + 2_000;
  while (body.dataset["loaded"] !== "1") {
    if (Date.now() > deadline)
      throw new Error(`the page did not render: ${elements.get("error")?.textContent ?? ""}`);
    await new Promise((r) => setImmediate(r));
  }
  return new Map(
    [...elements].map(([id, e]) => [
      id,
      {
        text: e.textContent,
        className: e.className,
        hidden: e.hidden,
        rows: e.children.map((row) => row.children.map((c) => c.textContent)),
      },
    ]),
  );
}

describe("status: memcached", () => {
  const lag = { state: { kind: "unknown" } as const, lastCheck: undefined };

  it("null when no memcached is configured", async () => {
    expect((await reporter(lag).snapshot()).memcached).toBeNull();
  });

  it("each server's breaker state and the failures since start, as /metrics shows them", async () => {
    const metrics = new EdgeMetrics(new Registry());
    metrics.memcachedBreaker.set({ server: "10.0.0.1:11211", state: "closed" }, 1);
    metrics.memcachedBreaker.set({ server: "10.0.0.2:11211", state: "closed" }, 0);
    metrics.memcachedBreaker.set({ server: "10.0.0.2:11211", state: "open" }, 1);
    metrics.memcachedErrors.inc({ kind: "timeout" }, 3);
    metrics.memcachedErrors.inc({ kind: "error" }, 2);
    const s = await reporter(lag, metrics, true).snapshot();
    expect(s.memcached).toEqual({
      servers: [
        { server: "10.0.0.1:11211", state: "closed" },
        { server: "10.0.0.2:11211", state: "open" },
      ],
      errors: 5,
    });
  });
});

describe("docs/operations.md documents /status field by field", () => {
  it("names every field a snapshot has", async () => {
    const { readFileSync } = await import("node:fs");
    const doc = readFileSync(new URL("../../../docs/operations.md", import.meta.url), "utf8");
    const start = doc.indexOf("## `/status`, field by field");
    expect(start).toBeGreaterThan(-1);
    const section = doc.slice(start, doc.indexOf("\n## ", start + 1));
    const lag = {
      state: { kind: "behind", sinceMs: T0_MS - 30_000, lastAgreedAtMs: T0_MS - 90_000 } as const,
      lastCheck: { atMs: T0_MS - 1_000, trigger: "undecryptable", result: "behind" } as const,
    };
    const s = await reporter(lag).snapshot();
    const full = {
      ...s,
      memcached: { servers: [{ server: "m:11211", state: "closed" }], errors: 0 },
      workers: [{ worker: 1, pid: 1, state: "serving", started_at: iso(T0_MS), restarts: 0 }],
      drill: {
        id: "d1",
        scenario: "master-outage",
        fault: "keystone_blackhole",
        endpoints: ["master"],
        started_at: iso(T0_MS),
        expires_at: iso(T0_MS + 60_000),
      },
    };
    /** Every field's name, nested ones too, but not the keys of maps (windows, tiers). */
    const names = new Set<string>();
    const walk = (value: unknown, key: string): void => {
      if (key === "hit_rates" || key === "keystone_offload") return;
      if (Array.isArray(value)) {
        for (const item of value) walk(item, "");
      } else if (typeof value === "object" && value !== null) {
        for (const [k, v] of Object.entries(value)) {
          names.add(k);
          walk(v, k);
        }
      }
    };
    walk(full, "");
    expect(names.size).toBeGreaterThan(20);
    // as the table writes a field: in backticks, alone or as a step of a dotted path
    // (`keys.lag.since`, `hit_rates.<window>`, `servers[]`), never a word in passing
    const missing = [...names].filter((name) => !new RegExp(`[\`.]${name}[\`.[]`).test(section));
    expect(missing).toEqual([]);
  });
});
