/**
 * The configuration: every option, its type, its default and what it means.
 *
 * Owns: the one description of keystone-edge's YAML file (keys mirror the file, snake case,
 * as Keystone's own options are named). `load.ts` resolves secrets from files and the
 * environment, then validates against this schema once, at start-up; the result is frozen.
 */
import { z } from "zod";
import { DEFAULT_AUTH_METHODS } from "../token/methods.js";

/** `host:port`, `[v6]:port`; port 0 asks the OS for a free one (tests). */
const listenAddress = z.string().refine((v) => parseListenAddress(v) !== undefined, {
  message: 'expected "host:port" (IPv6: "[::1]:port") with a port from 0 to 65535',
});

const httpUrl = z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" });

const nonEmpty = z.string().min(1, "must not be empty");

/** The edge's own service user: a password or an application credential. */
const keystoneAuth = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("password"),
    /** The service user's name (or give `user_id`). */
    username: nonEmpty.optional(),
    user_id: nonEmpty.optional(),
    /** Secret; or `password_file` / `password_env`. */
    password: nonEmpty,
    /** Domain of the user when `username` is used. Default `default`. */
    user_domain_id: nonEmpty.optional(),
    user_domain_name: nonEmpty.optional(),
    /** The project to scope the service token to (or `project_id`). */
    project_name: nonEmpty.optional(),
    project_id: nonEmpty.optional(),
    /** Domain of the project when `project_name` is used. Default `default`. */
    project_domain_id: nonEmpty.optional(),
    project_domain_name: nonEmpty.optional(),
  }),
  z.strictObject({
    type: z.literal("application_credential"),
    application_credential_id: nonEmpty,
    /** Secret; or `application_credential_secret_file` / `_env`. */
    application_credential_secret: nonEmpty,
  }),
]);

export const configSchema = z.strictObject({
  /** Where services' clients connect: `host:port`. */
  listen: listenAddress,
  /** The local OpenStack service requests are forwarded to. */
  upstream: httpUrl,
  /** `/metrics`, `/healthz`, `/readyz`. Default `127.0.0.1:9464` (loopback only). */
  admin_listen: listenAddress.default("127.0.0.1:9464"),
  /**
   * Secret; or `admin_secret_file` / `_env`. Bearer secret of the mutating admin API
   * (cache flush, drills). Default: none, and the admin API is off.
   */
  admin_secret: z.string().min(16, "must be at least 16 characters").optional(),
  /**
   * The regional Keystone face: an Identity v3 listener that answers `GET`/`HEAD
   * /v3/auth/tokens` itself and relays the rest to the Keystone endpoints. Default: off.
   */
  identity_listen: listenAddress.optional(),
  /**
   * The Identity URL clients reach the face at, without `/v3` (e.g.
   * `https://identity.region-one.example:5000`), used in version discovery links and
   * `WWW-Authenticate`. Default: `http://` + each request's `Host`.
   */
  identity_public_url: httpUrl.optional(),
  keystone: z
    .strictObject({
      /** Sent in `WWW-Authenticate: Keystone uri="…"` with every 401. */
      www_authenticate_uri: httpUrl,
      /** Identity v3 endpoints, region-local first, master last. Default: `[www_authenticate_uri]`. */
      endpoints: z.array(httpUrl).min(1, "list at least one endpoint").optional(),
      /** CA bundle to verify Keystone's certificate. Default: Node's bundled CAs. */
      cafile: z.string().min(1).nullable().default(null),
      /** Client certificate and key for mutual TLS. Default: none. */
      certfile: z.string().min(1).nullable().default(null),
      keyfile: z.string().min(1).nullable().default(null),
      /** Skip certificate verification. Default `false`; never in production. */
      insecure: z.boolean().default(false),
      /** Deadline of one call to Keystone. Default 2000 ms. */
      timeout_ms: z.number().int().min(1).max(120_000).default(2_000),
      /**
       * Deadline of one validation across every endpoint it fails over to. Default 5000 ms:
       * room for one timed-out endpoint (2 s) and an answer from the next, while a client's
       * usual 30–60 s timeout is far away.
       */
      request_timeout_ms: z.number().int().min(1).max(300_000).default(5_000),
      /**
       * Consecutive failures (timeout, connection error, 5xx) that take an endpoint out of
       * rotation. Default 3: one or two lost packets do not eject an endpoint, three in a
       * row are an outage.
       */
      failure_threshold: z.number().int().min(1).max(1_000).default(3),
      /**
       * How long an endpoint stays out before it is probed. Default 5000 ms: a restarting
       * Keystone is not hammered, a recovered one is back within seconds.
       */
      open_duration_ms: z.number().int().min(0).max(3_600_000).default(5_000),
      /** How often out-of-rotation endpoints are probed (`GET` of the base URL). Default 1000 ms. */
      probe_interval_ms: z.number().int().min(50).max(600_000).default(1_000),
      /**
       * How often Keystone's revocation feed is polled: a revoked token is refused within
       * this, cached or not. Default 10 000 ms (keystonemiddleware: up to token_cache_time).
       */
      revocation_poll_interval_ms: z.number().int().min(100).max(3_600_000).default(10_000),
      auth: keystoneAuth,
    })
    // The default endpoint list is derived once, here, so the loaded config always has one.
    .transform((k) => ({ ...k, endpoints: k.endpoints ?? [k.www_authenticate_uri] })),
  fernet: z.strictObject({
    /** The region's copy of Keystone's `[fernet_tokens] key_repository`. */
    key_repository: nonEmpty,
    /** Keystone's `[auth] methods`, in Keystone's order. Default Keystone's six. */
    auth_methods: z
      .array(nonEmpty)
      .min(1)
      .max(32)
      .refine((l) => new Set(l).size === l.length, { message: "lists a method twice" })
      .default([...DEFAULT_AUTH_METHODS]),
    /** Keystone's `[identity] default_domain_id`. Default `default`. */
    default_domain_id: nonEmpty.default("default"),
  }),
  cache: z
    .strictObject({
      /** `host:port` of each memcached. Empty or absent: in-process LRU only. */
      memcached_servers: z.array(nonEmpty).default([]),
      /** Secret; required with memcached (or `memcache_secret_key_file` / `_env`). */
      memcache_secret_key: z.string().min(16, "must be at least 16 characters").optional(),
      /** Longest a validated token is cached. Default 300 s. */
      token_cache_time: z.number().int().min(0).max(86_400).default(300),
      /** In-process cache size, entries. Default 100 000. */
      lru_max_entries: z.number().int().min(1).max(10_000_000).default(100_000),
      /**
       * How long a user + scope context is reused for new tokens, seconds; 0 turns the
       * context cache off. Default: `token_cache_time`.
       */
      context_cache_time: z.number().int().min(0).max(86_400).optional(),
      /**
       * Degraded mode: while no Keystone endpoint answers, a token that decrypts, has not
       * expired and is not revoked is served when its user + scope context is known, even
       * up to this many seconds past `context_cache_time`. Default 900: a quarter of an
       * hour of master outage without refusing known users. 0 turns it off.
       */
      stale_if_error: z.number().int().min(0).max(86_400).default(900),
    })
    .default({
      memcached_servers: [],
      token_cache_time: 300,
      lru_max_entries: 100_000,
      stale_if_error: 900,
    })
    .refine((c) => c.memcached_servers.length === 0 || c.memcache_secret_key !== undefined, {
      message: "memcache_secret_key is required when memcached_servers is set",
      path: ["memcache_secret_key"],
    }),
  auth_token: z
    .strictObject({
      /** Forward unauthenticated requests with `X-Identity-Status: Invalid`. Default `false`. */
      delay_auth_decision: z.boolean().default(false),
      /** Send `X-Service-Catalog`. Default `true`. */
      include_service_catalog: z.boolean().default(true),
      /** A service token counts only with one of these roles. Default `[service]`. */
      service_token_roles: z.array(nonEmpty).default(["service"]),
      /**
       * Enforce `service_token_roles`. Default `true` (keystonemiddleware defaults to
       * `false` and warns; an edge should not).
       */
      service_token_roles_required: z.boolean().default(true),
      /**
       * The service type of the service behind the edge (`compute`, `image`, …), as in the
       * catalog: needed to honour application-credential access rules. Without it, tokens
       * restricted by access rules are refused (as keystonemiddleware refuses them). Default
       * none.
       */
      service_type: z
        .string()
        .regex(/^[a-z0-9][a-z0-9_-]*$/, "a catalog service type such as compute or image")
        .optional(),
    })
    .default({
      delay_auth_decision: false,
      include_service_catalog: true,
      service_token_roles: ["service"],
      service_token_roles_required: true,
    }),
});

/** A validated configuration (defaults filled in). */
export type Config = z.output<typeof configSchema>;

/** Paths of the options that hold secrets: each may come from `<name>_file` or `<name>_env`. */
export const SECRET_PATHS: readonly (readonly string[])[] = [
  ["keystone", "auth", "password"],
  ["keystone", "auth", "application_credential_secret"],
  ["cache", "memcache_secret_key"],
  ["admin_secret"],
];

/** A listen address, parsed. */
export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

/** Parses `host:port` or `[v6]:port`; undefined when it is neither. */
export function parseListenAddress(value: string): ListenAddress | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65_535) return undefined;
  return { host: m[1] ?? m[2] ?? "", port };
}
