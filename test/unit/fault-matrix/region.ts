/**
 * Owns: a whole keystone-edge in process, wired as `serve` wires it (startEdge, the
 * production cache factory, a recording logger), in front of a fake Keystone
 * (test/harness/fake-keystone.ts) over a key repository of fresh random keys, for the fault
 * matrix's unit tests; and what those tests ask of it: fresh tokens signed with the
 * region's keys, forged ones, a request with its status and time, a metric's value, the
 * `/readyz` report.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_AUTH_METHODS } from "../../../src/token/methods.js";
import { createCacheFactory } from "../../../src/edge/cache-factory.js";
import { validateConfig } from "../../../src/config/load.js";
import type { Config } from "../../../src/config/schema.js";
import { startEdge, type RunningEdge } from "../../../src/edge/running-edge.js";
import { generateFernetKeyText } from "../../../src/fernet/envelope.js";
import { readKeyRepository } from "../../../src/fernet/key-repository.js";
import { KeyRing, staticKeyRing } from "../../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../../src/token/decoder.js";
import { randomAuditId } from "../../../src/token/payload.js";
import type { EpochMicros } from "../../../src/units.js";
import { startFakeKeystone, type FakeKeystone } from "../../harness/fake-keystone.js";
import { RecordingLogger } from "../../harness/doubles.js";
import { keyFromText } from "../helpers.js";

export interface ReadyReport {
  readonly ready: boolean;
  readonly degraded: boolean;
  readonly checks: readonly {
    readonly name: string;
    readonly ok: boolean;
    readonly degraded?: boolean;
    readonly detail?: string;
  }[];
}

export interface Answer {
  readonly status: number;
  readonly retryAfter: string | null;
  readonly body: string;
  readonly ms: number;
}

export interface Region {
  readonly edge: RunningEdge;
  /** The configuration the edge started with (for reloads). */
  readonly config: Readonly<Config>;
  /** The proxy, `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly adminUrl: string;
  readonly keystone: FakeKeystone;
  readonly logger: RecordingLogger;
  /** The edge's key repository. */
  readonly keyRepository: string;
  /** A fresh project token signed with the region's primary key (a new audit id each time). */
  mint(user?: number, project?: number): string;
  /** A well-formed token of the same shape signed with a key the region does not hold. */
  forged(): string;
  /** A GET through the edge with `token` (none when undefined). */
  request(token: string | undefined, path?: string): Promise<Answer>;
  /** The sum of the samples of `name` whose labels include `labels`, from `/metrics`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  readyz(): Promise<ReadyReport>;
  close(): Promise<void>;
}

export interface RegionOptions {
  /** The service behind the edge. */
  readonly upstream: string;
  /** `keystone` options over the defaults here. */
  readonly keystone?: Record<string, unknown>;
  /** `cache` options. */
  readonly cache?: Record<string, unknown>;
  /** `client` options (the listeners' limits). */
  readonly client?: Record<string, unknown>;
  /** `tls` options (HTTPS on the listeners); `url` is then `https://`. */
  readonly tls?: Record<string, unknown>;
  /** Whether the Identity face listens (`identity_listen` on a free port). */
  readonly identity?: boolean;
}

const hex32 = (n: number): string => n.toString(16).padStart(32, "0");

function ringWithFreshKeys(): { texts: string[]; ring: KeyRing } {
  const texts = [0, 1, 2].map(() => generateFernetKeyText());
  return {
    texts,
    ring: KeyRing.from(texts.map((text, index) => ({ index, key: keyFromText(text) }))),
  };
}

/** Starts the fake Keystone and the edge in front of `options.upstream`. */
export async function startRegion(options: RegionOptions): Promise<Region> {
  const keyRepository = await mkdtemp(join(tmpdir(), "ke-fault-keys-"));
  const { texts } = ringWithFreshKeys();
  for (const [index, text] of texts.entries()) {
    await writeFile(join(keyRepository, String(index)), text);
  }
  // Captured once: tests may break the repository on disk; Keystone's keys stay good.
  const keys = staticKeyRing(await readKeyRepository(keyRepository));
  const decoder = new TokenDecoder({ keys, authMethods: DEFAULT_AUTH_METHODS });
  const foreign = new TokenDecoder({
    keys: staticKeyRing(ringWithFreshKeys().ring),
    authMethods: DEFAULT_AUTH_METHODS,
  });
  const keystone = await startFakeKeystone((token) => {
    const decoded = decoder.decode(token);
    return decoded.status === "valid" ? decoded.token : undefined;
  });
  const logger = new RecordingLogger();
  const config = validateConfig({
    listen: "127.0.0.1:0",
    upstream: options.upstream,
    admin_listen: "127.0.0.1:0",
    shadow_validation: { sample_ratio: 0 },
    keystone: {
      www_authenticate_uri: keystone.url,
      endpoints: [keystone.url],
      timeout_ms: 500,
      request_timeout_ms: 1_000,
      failure_threshold: 2,
      open_duration_ms: 200,
      probe_interval_ms: 50,
      revocation_poll_interval_ms: 60_000,
      auth: {
        type: "password",
        username: "edge",
        password: "service-user-password",
        user_domain_id: "default",
        project_name: "service",
        project_domain_id: "default",
      },
      ...options.keystone,
    },
    fernet: { key_repository: keyRepository, auth_methods: [...DEFAULT_AUTH_METHODS] },
    ...(options.cache === undefined ? {} : { cache: options.cache }),
    ...(options.client === undefined ? {} : { client: options.client }),
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.identity === true ? { identity_listen: "127.0.0.1:0" } : {}),
  });
  let edge: RunningEdge;
  try {
    edge = await startEdge(config, { cache: createCacheFactory(), logger });
  } catch (error) {
    await keystone.close();
    await rm(keyRepository, { recursive: true, force: true });
    throw error;
  }
  await edge.serviceToken.ensure();
  const url = `${options.tls === undefined ? "http" : "https"}://127.0.0.1:${String(edge.address.port)}`;
  const adminUrl = `http://127.0.0.1:${String(edge.adminAddress.port)}`;

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

  return {
    edge,
    config,
    url,
    adminUrl,
    keystone,
    logger,
    keyRepository,
    mint: (user = 1, project = 1) => decoder.mint(payload(user, project)),
    forged: () => foreign.mint(payload(1, 1)),
    async request(token, path = "/v2.1/servers") {
      const started = performance.now();
      const res = await fetch(`${url}${path}`, {
        headers: token === undefined ? {} : { "X-Auth-Token": token },
      });
      const body = await res.text();
      return {
        status: res.status,
        retryAfter: res.headers.get("retry-after"),
        body,
        ms: performance.now() - started,
      };
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
    async readyz() {
      return (await (await fetch(`${adminUrl}/readyz`)).json()) as ReadyReport;
    },
    async close() {
      await edge.close(500);
      await keystone.close();
      await rm(keyRepository, { recursive: true, force: true });
    },
  };
}
