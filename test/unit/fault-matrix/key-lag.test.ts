/**
 * The fault matrix, the region's key copy lagging the master's (issue 14, items 1–4),
 * through a whole in-process edge (startEdge, the production cache factory) in front of a
 * fake Keystone that issues Fernet tokens — service tokens included — with the master's
 * keys: the region knows it is behind, keeps serving new valid tokens through Keystone
 * within its budget, refuses forgeries at the cost of one call each, and recovers by
 * itself when its copy is synced, decrypting new tokens locally again.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_AUTH_METHODS } from "../../../src/token/methods.js";
import { createCacheFactory } from "../../../src/edge/cache-factory.js";
import { validateConfig } from "../../../src/config/load.js";
import { startEdge, type RunningEdge } from "../../../src/edge/running-edge.js";
import { generateFernetKeyText } from "../../../src/fernet/envelope.js";
import { KeyRing, type KeyRingSource } from "../../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../../src/token/decoder.js";
import { randomAuditId } from "../../../src/token/payload.js";
import type { EpochMicros } from "../../../src/units.js";
import { startEchoUpstream, type EchoUpstream } from "../../harness/echo-upstream.js";
import { startFakeKeystone, type FakeKeystone } from "../../harness/fake-keystone.js";
import { RecordingLogger } from "../../harness/doubles.js";
import { keyFromText, waitUntil } from "../helpers.js";

const hex32 = (n: number): string => n.toString(16).padStart(32, "0");

/** The master's key repository: key files by index; the highest is its primary. */
class Master implements KeyRingSource {
  readonly texts = new Map<number, string>();
  constructor(indexes: readonly number[]) {
    for (const i of indexes) this.texts.set(i, generateFernetKeyText());
  }
  /** Rotation, as far as the region can tell: a new primary key. */
  rotate(): number {
    const index = Math.max(...this.texts.keys()) + 1;
    this.texts.set(index, generateFernetKeyText());
    return index;
  }
  current(): KeyRing {
    return KeyRing.from(
      [...this.texts].map(([index, text]) => ({ index, key: keyFromText(text) })),
    );
  }
}

interface LagRegion {
  readonly edge: RunningEdge;
  readonly keystone: FakeKeystone;
  readonly master: Master;
  readonly logger: RecordingLogger;
  readonly keyRepository: string;
  /** A token the master issues now (its primary key), or with key `keyIndex`. */
  mint(user: number, project: number, keyIndex?: number): string;
  /** A well-formed token signed with a key nobody holds. */
  forged(): string;
  /** Copies the master's key `index` into the region's repository. */
  sync(index: number): Promise<void>;
  request(token: string): Promise<number>;
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  admin(path: string): Promise<unknown>;
  close(): Promise<void>;
}

let region: LagRegion | undefined;
let echo: EchoUpstream | undefined;
afterEach(async () => {
  await region?.close();
  await echo?.stop();
  region = undefined;
  echo = undefined;
});

async function startLagRegion(
  master: Master,
  regionKeys: readonly number[],
  fernet: Record<string, unknown> = {},
): Promise<LagRegion> {
  echo = await startEchoUpstream();
  const keyRepository = await mkdtemp(join(tmpdir(), "ke-lag-keys-"));
  for (const index of regionKeys) {
    await writeFile(join(keyRepository, String(index)), master.texts.get(index) ?? "");
  }
  const masterDecoder = new TokenDecoder({ keys: master, authMethods: DEFAULT_AUTH_METHODS });
  const foreign = new TokenDecoder({ keys: new Master([0]), authMethods: DEFAULT_AUTH_METHODS });
  const payload = (user: number, project: number) =>
    ({
      kind: "project",
      version: 2,
      userId: hex32(user),
      methods: ["password"],
      auditIds: [randomAuditId()],
      projectId: hex32(project + 0x1000),
      expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3_600) * 1e6) as EpochMicros,
    }) as const;
  const keystone = await startFakeKeystone(
    (token) => {
      const decoded = masterDecoder.decode(token);
      return decoded.status === "valid" ? decoded.token : undefined;
    },
    // The service user's tokens, issued with the master's primary key of the moment.
    { serviceToken: () => masterDecoder.mint(payload(0xedce, 0xedce)) },
  );
  const logger = new RecordingLogger();
  const config = validateConfig({
    listen: "127.0.0.1:0",
    upstream: echo.url,
    admin_listen: "127.0.0.1:0",
    shadow_validation: { sample_ratio: 0 },
    keystone: {
      www_authenticate_uri: keystone.url,
      endpoints: [keystone.url],
      timeout_ms: 1_000,
      request_timeout_ms: 2_000,
      revocation_poll_interval_ms: 60_000,
      auth: {
        type: "password",
        username: "edge",
        password: "service-user-password",
        user_domain_id: "default",
        project_name: "service",
        project_domain_id: "default",
      },
    },
    fernet: { key_repository: keyRepository, auth_methods: [...DEFAULT_AUTH_METHODS], ...fernet },
  });
  const edge = await startEdge(config, { cache: createCacheFactory(), logger });
  await edge.serviceToken.ensure();
  const url = `http://127.0.0.1:${String(edge.address.port)}`;
  const adminUrl = `http://127.0.0.1:${String(edge.adminAddress.port)}`;
  return {
    edge,
    keystone,
    master,
    logger,
    keyRepository,
    mint: (user, project, keyIndex) =>
      masterDecoder.mint(payload(user, project), keyIndex === undefined ? {} : { keyIndex }),
    forged: () => foreign.mint(payload(1, 1)),
    async sync(index) {
      await writeFile(join(keyRepository, String(index)), master.texts.get(index) ?? "");
    },
    async request(token) {
      const res = await fetch(`${url}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
      await res.arrayBuffer();
      return res.status;
    },
    async metric(name, labels = {}) {
      const text = await (await fetch(`${adminUrl}/metrics`)).text();
      let sum = 0;
      for (const line of text.split("\n")) {
        const m = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (m?.[1] !== name) continue;
        const have = new Map(
          [...(m[2] ?? "").matchAll(/([a-z_]+)="([^"]*)"/g)].map((l) => [l[1], l[2]]),
        );
        if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) sum += Number(m[3]);
      }
      return sum;
    },
    async admin(path) {
      return (await fetch(`${adminUrl}${path}`)).json();
    },
    async close() {
      await edge.close(500);
      await keystone.close();
      await rm(keyRepository, { recursive: true, force: true });
    },
  };
}

interface KeysReady {
  readonly checks: readonly { name: string; ok: boolean; degraded?: boolean; detail?: string }[];
}
interface KeysStatus {
  readonly status: string;
  readonly keys: { readonly lag: { state: string; since: string | null } };
}

describe("fault matrix: the region's key copy lags the master's", () => {
  it("knows it is behind, serves new tokens through Keystone (forgeries: one call each, garbage: none), and recovers by itself when synced", async () => {
    // Rotation ran twice on the master; the region's copy holds the keys from before.
    const master = new Master([0, 1, 2]);
    master.rotate();
    const newest = master.rotate();
    const r = (region = await startLagRegion(master, [0, 1, 2]));

    // 1. Known: the start check (a fresh service token, signed with the newest key).
    await waitUntil(
      async () => (await r.metric("keystone_edge_key_repository_behind")) === 1,
      10_000,
      "the region to know it is behind",
    );
    expect(
      await r.metric("keystone_edge_key_lag_checks_total", { trigger: "start", result: "behind" }),
    ).toBe(1);
    const ready = (await r.admin("/readyz")) as KeysReady;
    const keys = ready.checks.find((c) => c.name === "keys");
    expect(keys).toMatchObject({ ok: true, degraded: true });
    expect(keys?.detail).toMatch(/behind the master since/);
    const status = (await r.admin("/status")) as KeysStatus;
    expect(status.status).toBe("degraded");
    expect(status.keys.lag.state).toBe("behind");
    expect(status.keys.lag.since).not.toBeNull();
    expect(r.logger.at("warn").some((l) => l.message.startsWith("key ring behind Keystone"))).toBe(
      true,
    );
    // Tokens signed with a key the region holds decrypt as ever (their contexts are learnt).
    expect(await r.request(r.mint(1, 1, 2))).toBe(200);
    expect(await r.request(r.mint(2, 2, 2))).toBe(200);
    const first = r.mint(1, 1);

    // 2. Serving: new valid tokens answered through Keystone, one call each, then cached.
    const validationsBefore = r.keystone.counts.validations;
    const fresh = Array.from({ length: 5 }, (_, i) => r.mint(10 + i, 10 + i));
    for (const token of [first, ...fresh]) expect(await r.request(token)).toBe(200);
    for (const token of fresh) expect(await r.request(token)).toBe(200);
    expect(r.keystone.counts.validations - validationsBefore).toBe(6);
    expect(await r.metric("keystone_edge_key_lag_fallbacks_total", { result: "valid" })).toBe(6);

    // A forgery replayed: one call; garbage: none.
    const forged = r.forged();
    for (let i = 0; i < 5; i++) expect(await r.request(forged)).toBe(401);
    for (let i = 0; i < 5; i++) expect(await r.request("not-a-token")).toBe(401);
    expect(r.keystone.counts.validations - validationsBefore).toBe(7);
    expect(await r.metric("keystone_edge_key_lag_fallbacks_total", { result: "invalid" })).toBe(1);

    // 4. Synced: the copy catches up; the ring reloads, the check clears the lag.
    await r.sync(newest - 1);
    await r.sync(newest);
    await waitUntil(
      async () => (await r.metric("keystone_edge_key_repository_behind")) === 0,
      15_000,
      "the lag to clear",
    );
    expect(r.edge.keys.current().primary.index).toBe(newest);
    expect(
      await r.metric("keystone_edge_key_lag_checks_total", {
        trigger: "reload",
        result: "in_sync",
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(await r.metric("keystone_edge_key_repository_agreed_timestamp_seconds")).toBeGreaterThan(
      Date.now() / 1000 - 60,
    );
    expect(r.logger.at("info").some((l) => l.message.startsWith("key ring back in sync"))).toBe(
      true,
    );
    expect(((await r.admin("/status")) as KeysStatus).keys.lag.state).toBe("in_sync");
    const readyAfter = (await r.admin("/readyz")) as KeysReady;
    expect(readyAfter.checks.find((c) => c.name === "keys")?.degraded).not.toBe(true);

    // New tokens of known users + scopes decrypt locally: no Keystone call, no fallback.
    const validationsSynced = r.keystone.counts.validations;
    for (let i = 0; i < 10; i++)
      expect(await r.request(r.mint(1 + (i % 2), 1 + (i % 2)))).toBe(200);
    expect(r.keystone.counts.validations).toBe(validationsSynced);
    expect(await r.metric("keystone_edge_key_lag_fallbacks_total")).toBe(7);
    // In sync again, a forgery costs no validation call.
    expect(await r.request(r.forged())).toBe(401);
    expect(r.keystone.counts.validations).toBe(validationsSynced);
    // No token in any log line.
    const logged = r.logger.text();
    for (const token of [first, ...fresh, forged]) expect(logged).not.toContain(token);
  });

  it("in sync, then the master rotates twice: the first new token waits for the check it sets off and is served", async () => {
    const master = new Master([0, 1, 2]);
    const r = (region = await startLagRegion(master, [0, 1, 2], { lag_check_min_interval_ms: 0 }));
    await waitUntil(
      async () =>
        (await r.metric("keystone_edge_key_lag_checks_total", {
          trigger: "start",
          result: "in_sync",
        })) === 1,
      10_000,
      "the start check",
    );
    expect(await r.metric("keystone_edge_key_repository_behind")).toBe(0);
    // In sync: forged tokens cost no validation call.
    const validationsBefore = r.keystone.counts.validations;
    expect(await r.request(r.forged())).toBe(401);
    expect(r.keystone.counts.validations).toBe(validationsBefore);
    // (It triggered a check, which still finds the ring in sync.)
    await waitUntil(
      async () =>
        (await r.metric("keystone_edge_key_lag_checks_total", {
          trigger: "undecryptable",
          result: "in_sync",
        })) === 1,
      10_000,
      "the forged token's check",
    );

    master.rotate();
    master.rotate();
    const token = r.mint(5, 5);
    // The edge still believes it is in sync: the token sets off a check, waits for it, and
    // is served through Keystone once the check finds the region behind.
    expect(await r.request(token)).toBe(200);
    expect(await r.metric("keystone_edge_key_repository_behind")).toBe(1);
    expect(
      await r.metric("keystone_edge_key_lag_checks_total", {
        trigger: "undecryptable",
        result: "behind",
      }),
    ).toBe(1);
    expect(r.keystone.counts.validations).toBe(validationsBefore + 1);
    // Cached: its next use costs nothing.
    expect(await r.request(token)).toBe(200);
    expect(r.keystone.counts.validations).toBe(validationsBefore + 1);
  });

  it("the fallback budget spent: refused (401) and counted", async () => {
    const master = new Master([0, 1, 2]);
    master.rotate();
    master.rotate();
    const r = (region = await startLagRegion(master, [0, 1, 2], {
      lag_fallback_per_second: 0,
      lag_fallback_burst: 2,
    }));
    await waitUntil(
      async () => (await r.metric("keystone_edge_key_repository_behind")) === 1,
      10_000,
      "the start check",
    );
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push(await r.request(r.mint(20 + i, 20 + i)));
    expect(statuses).toEqual([200, 200, 401, 401]);
    expect(await r.metric("keystone_edge_key_lag_fallback_refusals_total")).toBe(2);
    expect(await r.metric("keystone_edge_key_lag_fallbacks_total", { result: "valid" })).toBe(2);
  });
});
