/**
 * Owns: a multi-region topology on loopback, for the integration test and the sandbox —
 * one master Keystone behind TLS and N regions in front of it, each what a region runs:
 *
 *   master   Keystone (a replica of the given Keystone with a key repository of its own
 *            and its own memcached cache, or that Keystone itself), behind an HTTPS front
 *            (tls.ts) whose certificate a CA made for this run signed
 *   region   its own COPY of the master's key repository (a directory of its own), its own
 *            memcached, its own echo service, and `keystone-edge serve` as a real process,
 *            verifying the master with `keystone.cafile`, reaching it through a TCP relay
 *            of its own (tcp-relay.ts) that can add delay (a far-away master) or drop
 *            everything (a partition)
 *
 * and the operations a multi-region deployment lives by: rotating the master's keys
 * (`keystone-manage fernet_rotate`, the exact command `rotateCommand` prints), syncing one
 * region's copy the documented way (new key files first, then replaced ones, then removals,
 * each written to a temporary name and renamed) — or not, leaving it lagging — issuing,
 * minting, forging and revoking tokens at the master, and reading each edge's `/metrics`.
 * Everything it starts stops with `close()`; edges die with the process that started them.
 */
import { execFileSync } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request, type Agent } from "undici";
import { fernetKeyFromBytes } from "../../src/fernet/envelope.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { KeyRing, staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { adminPasswordAuth, keystoneManage, type KeystoneInfo } from "./client.js";
import { startEchoUpstream, type EchoUpstream } from "./echo-upstream.js";
import { startEdgeProcess, type EdgeProcess } from "./edge-process.js";
import type { PasswordUser } from "./edge-config.js";
import { startKeystoneReplica, type KeystoneReplica } from "./keystone-replica.js";
import { startMemcached, type MemcachedHandle } from "./memcached.js";
import { startTcpRelay, type TcpRelay } from "./tcp-relay.js";
import {
  createTestCertificates,
  startTlsFrontend,
  trustingAgent,
  type TestCertificates,
  type TlsFrontend,
} from "./tls.js";

/** Options of {@link startMultiRegion}. */
export interface MultiRegionOptions {
  /** The Keystone to build the master from (the suite's, from `inject("keystone")`). */
  readonly keystone: KeystoneInfo;
  /** The user each edge authenticates as (e.g. `createFixtures(...).serviceUser`). */
  readonly serviceUser: PasswordUser;
  /** Region names, one edge each. Default `["region-a", "region-b"]`. */
  readonly regions?: readonly string[];
  /**
   * `"replica"` (default): another uwsgi on `keystone`'s database with a key repository of
   * its own (a copy of `keystone`'s) and its own memcached cache, so rotating it disturbs
   * nobody else. `"keystone"`: `keystone` itself, its own repository rotated in place
   * (the sandbox, whose Keystone is its own).
   */
  readonly master?: "replica" | "keystone";
  /** Each edge's `keystone.revocation_poll_interval_ms`. Default 1 000. */
  readonly revocationPollMs?: number;
  /** Each edge's `keystone.timeout_ms`. Default 3 000. */
  readonly timeoutMs?: number;
  /**
   * Each edge's `fernet.lag_check_interval_ms`: how soon a region finds out by itself that
   * its copy lags the master. Default: the product's default.
   */
  readonly lagCheckIntervalMs?: number;
  /** More lines in each edge's `keystone:` block (two-space indent). */
  readonly keystoneYaml?: readonly string[];
  /** More lines in each edge's `fernet:` block (two-space indent). */
  readonly fernetYaml?: readonly string[];
  /** More top-level YAML for each edge. */
  readonly extraYaml?: readonly string[];
  /** Progress messages. Default: silent. */
  readonly log?: (message: string) => void;
}

/** A user with the `member` role on a project of their own, both new. */
export interface Scope {
  readonly name: string;
  readonly userId: string;
  readonly projectId: string;
  readonly password: string;
}

/** One call's answer from the master. */
export interface ApiAnswer {
  readonly status: number;
  readonly json: Record<string, unknown>;
  /** `X-Subject-Token`, when sent. */
  readonly subject: string | null;
}

export interface Master {
  /** Identity v3 URL behind TLS: `https://127.0.0.1:<port>/v3`. */
  readonly url: string;
  /** Keystone's own plain-HTTP URL (uwsgi), behind the HTTPS front. */
  readonly plainUrl: string;
  /** The master's key repository (the one `fernet_rotate` rotates). */
  readonly keyRepository: string;
  readonly frontend: TlsFrontend;
  readonly certificates: TestCertificates;
  /** The master as a `KeystoneInfo` (url, key repository): for harness helpers. */
  readonly info: KeystoneInfo;
  /** The shell command that rotates the master's keys (what {@link rotateKeys} runs). */
  readonly rotateCommand: string;
  /** `keystone-manage fernet_rotate` on the master's repository. */
  rotateKeys(): Promise<void>;
  /** One Identity API call over TLS (verified with the run's CA). */
  api(
    token: string,
    method: string,
    path: string,
    body?: unknown,
    subjectToken?: string,
  ): Promise<ApiAnswer>;
  /** `POST /v3/auth/tokens` with `auth`: the issued token. */
  authenticate(auth: unknown): Promise<string>;
  /** A project-scoped token of the admin user (project `admin`). */
  adminToken(): Promise<string>;
  /** A new user with `member` on a new project. */
  createScope(tag: string): Promise<Scope>;
  /** A token Keystone issues for `scope` (password authentication). */
  issue(scope: Scope): Promise<string>;
  /** A token for `scope` minted as Keystone would, with the master's primary key now. */
  mint(scope: Pick<Scope, "userId" | "projectId">): Promise<string>;
  /** A well-formed Fernet token for `scope`, signed with a key nobody has. */
  forge(scope: Pick<Scope, "userId" | "projectId">): string;
  /** `DELETE /v3/auth/tokens` of `token`. */
  revoke(token: string): Promise<void>;
}

/** A request through a region's edge. */
export interface EdgeAnswer {
  readonly status: number;
  /** Time to the whole answer, ms. */
  readonly ms: number;
  readonly headers: Headers;
  readonly body: string;
}

/** An edge's `/metrics`, parsed. */
export interface Metrics {
  /** The sample named `name` whose labels include `labels`; undefined when absent. */
  value(name: string, labels?: Readonly<Record<string, string>>): number | undefined;
  /** The sum of every sample named `name` (0 when none). */
  sum(name: string): number;
  readonly text: string;
}

export interface Region {
  readonly name: string;
  /** The region's copy of the master's key repository. */
  readonly keyRepository: string;
  readonly memcached: MemcachedHandle;
  readonly echo: EchoUpstream;
  /** Between the edge and the master's HTTPS front. */
  readonly relay: TcpRelay;
  readonly edge: EdgeProcess;
  /** The edge: `http://127.0.0.1:<port>`. */
  readonly url: string;
  /** The edge's admin listener. */
  readonly adminUrl: string;
  /** The edge's YAML. */
  readonly configPath: string;
  /** The shell command that syncs this region's copy (what {@link sync} runs). */
  readonly syncCommand: string;
  /** Copies the master's keys into this region's copy, the documented way (`syncCommand`). */
  sync(): void;
  /** Whether this region's copy equals the master's repository. */
  inSync(): boolean;
  /** Cuts the region off the master (a blackhole: timeouts, not refusals). */
  partition(): void;
  /** Ends the partition. */
  heal(): void;
  /** Adds `ms` to every round trip to the master (0: none). */
  setMasterDelay(ms: number): void;
  /** `GET <path>` through the edge with `X-Auth-Token: token` (none when undefined). */
  request(token: string | undefined, path?: string): Promise<EdgeAnswer>;
  metrics(): Promise<Metrics>;
  /** Validation calls the edge made to Keystone so far (`keystone_edge_keystone_call_duration_seconds_count`). */
  validationCalls(): Promise<number>;
  /** `keystone_edge_key_repository_behind`; undefined when not exported. */
  behind(): Promise<number | undefined>;
}

export interface MultiRegion {
  readonly root: string;
  readonly master: Master;
  readonly regions: readonly Region[];
  region(name: string): Region;
  /** Stops everything and removes `root`. Idempotent. */
  close(): Promise<void>;
}

/** Parses Prometheus' text format (enough of it for an edge's `/metrics`). */
export function parseMetrics(text: string): Metrics {
  const samples: { name: string; labels: Record<string, string>; value: number }[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      labels[l[1] ?? ""] = l[2] ?? "";
    }
    samples.push({ name: m[1] ?? "", labels, value: Number(m[3]) });
  }
  return {
    text,
    value(name, labels = {}) {
      return samples.find(
        (s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v),
      )?.value;
    },
    sum(name) {
      return samples.filter((s) => s.name === name).reduce((a, s) => a + s.value, 0);
    },
  };
}

/**
 * The sync, as a shell script a person can run too (the sandbox prints it): `from`'s key
 * files → `to`, new files first, then replaced ones, then removals — the order in which the
 * region never lacks a key the master signs with — each file written under a temporary
 * (dot) name and renamed, so that an edge never reads half a key.
 */
const SYNC_SCRIPT = `#!/bin/sh
# sync-keys.sh MASTER_REPOSITORY REGION_COPY: new key files first, then replaced ones,
# then removals; each file copied to a temporary name and renamed into place.
set -e
from="$1"; to="$2"
cd "$from"
for f in *; do [ -e "$to/$f" ] || { cp -p "$f" "$to/.$f.tmp" && mv "$to/.$f.tmp" "$to/$f"; }; done
for f in *; do cmp -s "$f" "$to/$f" || { cp -p "$f" "$to/.$f.tmp" && mv "$to/.$f.tmp" "$to/$f"; }; done
for f in $(ls "$to"); do [ -e "$f" ] || rm "$to/$f"; done
`;

function sameKeys(a: string, b: string): boolean {
  const names = (d: string) =>
    readdirSync(d)
      .filter((n) => !n.startsWith("."))
      .sort();
  const left = names(a);
  const right = names(b);
  return (
    left.length === right.length &&
    left.every(
      (n, i) => n === right[i] && readFileSync(join(a, n)).equals(readFileSync(join(b, n))),
    )
  );
}

/** Starts a master and its regions; see the module comment. */
export async function startMultiRegion(options: MultiRegionOptions): Promise<MultiRegion> {
  const log = options.log ?? ((): void => undefined);
  const { keystone } = options;
  const root = mkdtempSync(join(tmpdir(), "keystone-edge-multi-region-"));
  const stops: (() => Promise<unknown>)[] = [];
  let agent: Agent | undefined;
  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      for (const stop of stops.reverse()) await stop().catch(() => undefined);
      await agent?.close().catch(() => undefined);
      rmSync(root, { recursive: true, force: true });
    })();
    return closed;
  };
  try {
    // --- the master: Keystone, its key repository, TLS in front ----------------
    mkdirSync(join(root, "tls"), { mode: 0o700 });
    const syncScript = join(root, "sync-keys.sh");
    writeFileSync(syncScript, SYNC_SCRIPT, { mode: 0o755 });
    const certificates = await createTestCertificates(join(root, "tls"));
    const mode = options.master ?? "replica";
    let keyRepository = keystone.keyRepository;
    let plainPort = keystone.port;
    let rotateArgs = ["fernet_rotate", "--keystone-user", "root", "--keystone-group", "root"];
    let rotateCommand = `keystone-manage --config-file ${keystone.configFile} ${rotateArgs.join(" ")}`;
    if (mode === "replica") {
      keyRepository = join(root, "master-keys");
      cpSync(keystone.keyRepository, keyRepository, { recursive: true });
      const cache = await startMemcached();
      stops.push(() => cache.stop());
      log(`multi-region: starting the master Keystone (keys in ${keyRepository})`);
      const replica: KeystoneReplica = await startKeystoneReplica(keystone, {
        keyRepository,
        cacheServer: cache.address,
      });
      stops.push(() => replica.close());
      plainPort = Number(new URL(replica.url).port);
      // What fernet_rotate reads of the replica's override: its repository, its key count.
      const fernetConf = join(root, "master-fernet.conf");
      writeFileSync(
        fernetConf,
        `[fernet_tokens]\nkey_repository = ${keyRepository}\nmax_active_keys = 3\n`,
      );
      rotateArgs = ["--config-file", fernetConf, ...rotateArgs];
      rotateCommand = `keystone-manage --config-file ${keystone.configFile} ${rotateArgs.join(" ")}`;
    }
    const frontend = await startTlsFrontend({
      target: { host: "127.0.0.1", port: plainPort },
      certificates,
    });
    stops.push(() => frontend.close());
    const trusted = trustingAgent(certificates.ca);
    agent = trusted;
    const url = `${frontend.origin}/v3`;
    const info: KeystoneInfo = { ...keystone, url, port: frontend.port, keyRepository };
    log(`multi-region: master at ${url} (TLS, CA ${certificates.caFile})`);

    const api = async (
      token: string,
      method: string,
      path: string,
      body?: unknown,
      subjectToken?: string,
    ): Promise<ApiAnswer> => {
      const res = await request(`${url}${path}`, {
        method: method as "GET",
        dispatcher: trusted,
        headers: {
          ...(token === "" ? {} : { "x-auth-token": token }),
          "content-type": "application/json",
          ...(subjectToken === undefined ? {} : { "x-subject-token": subjectToken }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const text = await res.body.text();
      const subject = res.headers["x-subject-token"];
      return {
        status: res.statusCode,
        json: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
        subject: typeof subject === "string" ? subject : null,
      };
    };
    const authenticate = async (auth: unknown): Promise<string> => {
      const res = await api("", "POST", "/auth/tokens", { auth });
      if (res.status !== 201 || res.subject === null) {
        throw new Error(`authentication at the master: HTTP ${String(res.status)}`);
      }
      return res.subject;
    };
    const adminToken = (): Promise<string> => authenticate(adminPasswordAuth(keystone));
    let admin: { token: string; memberRole: string } | undefined;
    const createScope = async (tag: string): Promise<Scope> => {
      if (admin === undefined) {
        const token = await adminToken();
        const roles = await api(token, "GET", "/roles?name=member");
        const memberRole = (roles.json["roles"] as { id: string }[] | undefined)?.[0]?.id;
        if (memberRole === undefined) throw new Error("the master has no `member` role");
        admin = { token, memberRole };
      }
      const { token, memberRole } = admin;
      const name = `mr-${tag}-${randomBytes(4).toString("hex")}`;
      const password = randomBytes(12).toString("base64url");
      const project = await api(token, "POST", "/projects", {
        project: { name, domain_id: "default" },
      });
      const user = await api(token, "POST", "/users", {
        user: { name, domain_id: "default", password },
      });
      if (project.status !== 201 || user.status !== 201) {
        throw new Error(`creating ${name}: HTTP ${String(project.status)}/${String(user.status)}`);
      }
      const projectId = (project.json["project"] as { id: string }).id;
      const userId = (user.json["user"] as { id: string }).id;
      const grant = await api(
        token,
        "PUT",
        `/projects/${projectId}/users/${userId}/roles/${memberRole}`,
      );
      if (grant.status !== 204) throw new Error(`granting ${name}: HTTP ${String(grant.status)}`);
      return { name, userId, projectId, password };
    };
    const payload = (scope: Pick<Scope, "userId" | "projectId">) =>
      ({
        kind: "project",
        version: 2,
        userId: scope.userId,
        methods: ["password"],
        auditIds: [randomAuditId()],
        projectId: scope.projectId,
        expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
      }) as const;
    const nobodysKey = new TokenDecoder({
      keys: staticKeyRing(KeyRing.from([{ index: 1, key: fernetKeyFromBytes(randomBytes(32)) }])),
      authMethods: keystone.authMethods,
    });
    const master: Master = {
      url,
      plainUrl: `http://127.0.0.1:${String(plainPort)}/v3`,
      keyRepository,
      frontend,
      certificates,
      info,
      rotateCommand,
      async rotateKeys() {
        await keystoneManage(keystone, rotateArgs);
      },
      api,
      authenticate,
      adminToken,
      createScope,
      issue: (scope) =>
        authenticate({
          identity: {
            methods: ["password"],
            password: { user: { id: scope.userId, password: scope.password } },
          },
          scope: { project: { id: scope.projectId } },
        }),
      async mint(scope) {
        const keys = staticKeyRing(await readKeyRepository(keyRepository));
        return new TokenDecoder({ keys, authMethods: keystone.authMethods }).mint(payload(scope));
      },
      forge: (scope) => nobodysKey.mint(payload(scope)),
      async revoke(token) {
        const res = await api(await adminToken(), "DELETE", "/auth/tokens", undefined, token);
        if (res.status !== 204) throw new Error(`revoking: HTTP ${String(res.status)}`);
      },
    };

    // --- the regions ------------------------------------------------------------
    const names = options.regions ?? ["region-a", "region-b"];
    const secret = randomBytes(24).toString("hex");
    const started = await Promise.allSettled(
      names.map(async (name): Promise<Region> => {
        const keys = join(root, name, "keys");
        mkdirSync(join(root, name), { recursive: true });
        cpSync(keyRepository, keys, { recursive: true });
        const memcached = await startMemcached();
        stops.push(() => memcached.stop());
        const echo = await startEchoUpstream();
        stops.push(() => echo.stop());
        const relay = await startTcpRelay({ host: "127.0.0.1", port: frontend.port });
        stops.push(() => relay.close());
        const edge = await startEdgeProcess({
          keystone: {
            ...info,
            url: `https://127.0.0.1:${String(relay.port)}/v3`,
            keyRepository: keys,
          },
          upstream: echo.url,
          serviceUser: options.serviceUser,
          timeoutMs: options.timeoutMs ?? 3_000,
          keystoneYaml: [
            `  cafile: ${certificates.caFile}`,
            `  revocation_poll_interval_ms: ${String(options.revocationPollMs ?? 1_000)}`,
            "  open_duration_ms: 1000",
            "  probe_interval_ms: 200",
            ...(options.keystoneYaml ?? []),
          ],
          fernetYaml: [
            ...(options.lagCheckIntervalMs === undefined
              ? []
              : [`  lag_check_interval_ms: ${String(options.lagCheckIntervalMs)}`]),
            ...(options.fernetYaml ?? []),
          ],
          extraYaml: [
            "cache:",
            `  memcached_servers: ["${memcached.address}"]`,
            `  memcache_secret_key: "${secret}-${name}"`,
            ...(options.extraYaml ?? []),
          ],
          dieWithParent: true,
        });
        stops.push(() => edge.stop());
        log(`multi-region: ${name}: edge ${edge.url}, admin ${edge.adminUrl}, keys ${keys}`);
        const metrics = async (): Promise<Metrics> => {
          const res = await fetch(`${edge.adminUrl}/metrics`);
          return parseMetrics(await res.text());
        };
        return {
          name,
          keyRepository: keys,
          memcached,
          echo,
          relay,
          edge,
          url: edge.url,
          adminUrl: edge.adminUrl,
          configPath: edge.configPath,
          syncCommand: `sh ${syncScript} ${keyRepository} ${keys}`,
          sync: () => {
            execFileSync("/bin/sh", [syncScript, keyRepository, keys], { stdio: "pipe" });
          },
          inSync: () => sameKeys(keyRepository, keys),
          partition: () => {
            relay.blackhole = true;
          },
          heal: () => {
            relay.blackhole = false;
          },
          setMasterDelay: (ms) => {
            relay.delayMs = ms;
          },
          async request(token, path = "/v2.1/servers") {
            const started = performance.now();
            const res = await fetch(`${edge.url}${path}`, {
              headers: token === undefined ? {} : { "x-auth-token": token },
              signal: AbortSignal.timeout(30_000),
            });
            const body = await res.text();
            return {
              status: res.status,
              ms: performance.now() - started,
              headers: res.headers,
              body,
            };
          },
          metrics,
          async validationCalls() {
            return (await metrics()).sum("keystone_edge_keystone_call_duration_seconds_count");
          },
          async behind() {
            return (await metrics()).value("keystone_edge_key_repository_behind");
          },
        };
      }),
    );
    const regions: Region[] = [];
    for (const s of started) {
      if (s.status === "rejected") throw s.reason;
      regions.push(s.value);
    }
    return {
      root,
      master,
      regions,
      region(name) {
        const r = regions.find((x) => x.name === name);
        if (r === undefined) throw new Error(`no region ${name}`);
        return r;
      },
      close,
    };
  } catch (error) {
    await close();
    throw error;
  }
}
