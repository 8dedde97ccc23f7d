/**
 * The configuration: every option, its type, its default and what it means.
 *
 * Owns: the one description of keystone-edge's YAML file (keys mirror the file, snake case,
 * as Keystone's own options are named). `load.ts` resolves secrets from files and the
 * environment, then validates against this schema once, at start-up; the result is frozen.
 *
 * Documentation lives in the schema, where `keystone-edge config-reference`
 * (cli/config-reference.ts) reads it to write docs/configuration.md: every option has a
 * `description` (`.describe()` or `.meta()`); an optional option without a default says
 * what leaving it out means in `absent`; `format` (`host:port`, `path`) and `unit` (`s`;
 * `ms` is read from a `_ms` name) sharpen the type shown. Metadata never changes what
 * validates.
 *
 * Size: every option in one schema on purpose: one place to read what can be configured.
 */
import { z } from "zod";
import { DEFAULT_AUTH_METHODS } from "../token/methods.js";
import { DEFAULT_AUDIT_MAX_BUFFERED_BYTES } from "../audit/audit-log.js";
import {
  DEFAULT_L1_MAX_ENTRIES,
  DEFAULT_REVOCATION_POLL_INTERVAL_MS,
  DEFAULT_SHADOW_MAX_IN_FLIGHT,
  DEFAULT_SHADOW_MAX_PER_SECOND,
  DEFAULT_SHADOW_SAMPLE_RATIO,
  DEFAULT_STALE_IF_ERROR_SECONDS,
  DEFAULT_TOKEN_CACHE_TIME_SECONDS,
} from "./defaults.js";

/** `host:port`, `[v6]:port`; port 0 asks the OS for a free one (tests). */
const listenAddress = z
  .string()
  .refine((v) => parseListenAddress(v) !== undefined, {
    message: 'expected "host:port" (IPv6: "[::1]:port") with a port from 0 to 65535',
  })
  .meta({ format: "host:port" });

const httpUrl = z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" });

const nonEmpty = z.string().min(1, "must not be empty");

/** A Keystone endpoint's name: a bounded metric label, never a URL with credentials. */
const endpointName = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,62}$/,
    "expected 1-63 letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
  );

/** `host:port` of a URL: the name of an unnamed endpoint. */
function hostOf(url: string): string {
  return new URL(url).host;
}

/**
 * Cross-field rules run even when another option of the same object is invalid, so that
 * one pass reports every problem of a file. Their checks then see the object as given:
 * each compares only options of the type it expects and passes otherwise (a wrong type is
 * reported on its own).
 */
const inEveryPass = { when: () => true } as const;

/** The option `key` of `value` when `value` is an object and it is a number. */
function numberAt(value: unknown, key: string): number | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const v = (value as Record<string, unknown>)[key];
  return typeof v === "number" ? v : undefined;
}

/** `value[a] <= value[b]`, or true when either is not a number. */
function notAbove(value: unknown, a: string, b: string): boolean {
  const x = numberAt(value, a);
  const y = numberAt(value, b);
  return x === undefined || y === undefined || x <= y;
}

/** Whether the endpoints' names (given or `host:port`) are unique, as far as they are valid. */
function endpointNamesUnique(keystone: unknown): boolean {
  if (typeof keystone !== "object" || keystone === null) return true;
  const endpoints = (keystone as Record<string, unknown>)["endpoints"];
  if (!Array.isArray(endpoints)) return true;
  const names = endpoints.flatMap((e: unknown): string[] => {
    if (typeof e === "object" && e !== null) {
      const name = (e as Record<string, unknown>)["name"];
      return typeof name === "string" ? [name] : [];
    }
    return typeof e === "string" && URL.canParse(e) ? [hostOf(e)] : [];
  });
  return new Set(names).size === names.length;
}

/** The edge's own service user: a password or an application credential. */
const keystoneAuth = z
  .discriminatedUnion("type", [
    z.strictObject({
      type: z
        .literal("password")
        .describe("How the service user authenticates: a password or an application credential."),
      username: nonEmpty
        .optional()
        .meta({ description: "The service user's name.", absent: "give `user_id`" }),
      user_id: nonEmpty
        .optional()
        .meta({ description: "The service user's id.", absent: "give `username`" }),
      password: nonEmpty.describe("The service user's password."),
      user_domain_id: nonEmpty.optional().meta({
        description: "The user's domain, by id, when `username` is given.",
        absent: "`default` (unless `user_domain_name`)",
      }),
      user_domain_name: nonEmpty.optional().meta({
        description:
          "The user's domain, by name, when `username` is given; wins over `user_domain_id`.",
        absent: "`user_domain_id` applies",
      }),
      project_name: nonEmpty.optional().meta({
        description: "The project the service token is scoped to, by name.",
        absent: "give `project_id`",
      }),
      project_id: nonEmpty.optional().meta({
        description: "The project the service token is scoped to, by id.",
        absent: "give `project_name`",
      }),
      project_domain_id: nonEmpty.optional().meta({
        description: "The project's domain, by id, when `project_name` is given.",
        absent: "`default` (unless `project_domain_name`)",
      }),
      project_domain_name: nonEmpty.optional().meta({
        description:
          "The project's domain, by name, when `project_name` is given; wins over `project_domain_id`.",
        absent: "`project_domain_id` applies",
      }),
    }),
    z.strictObject({
      type: z.literal("application_credential"),
      application_credential_id: nonEmpty.describe("The application credential's id."),
      application_credential_secret: nonEmpty.describe("The application credential's secret."),
    }),
  ])
  .describe(
    "The edge's own service user, whose token authorises its calls to Keystone (validations, the revocation feed): `type` chooses the fields that apply. With `type: password`, give exactly one of `username` and `user_id` and exactly one of `project_name` and `project_id`.",
  );

/** The defaults of {@link clientLimits}, one place for the schema and the listeners' tests. */
export const CLIENT_LIMIT_DEFAULTS = Object.freeze({
  max_header_count: 100,
  max_header_bytes: 8_192,
  max_head_bytes: 32_768,
  max_url_bytes: 8_192,
  headers_timeout_ms: 10_000,
  body_timeout_ms: 60_000,
  request_timeout_ms: 0,
  keep_alive_timeout_ms: 75_000,
});

/** What a client may send to `listen` and `identity_listen`, and for how long. */
const clientLimits = z
  .strictObject({
    max_header_count: z
      .number()
      .int()
      .min(8)
      .max(1_000)
      .default(CLIENT_LIMIT_DEFAULTS.max_header_count)
      .meta({
        unit: "headers",
        description:
          "Most header fields in one request (Envoy's default); more → 431 before any validation.",
      }),
    max_header_bytes: z
      .number()
      .int()
      .min(1_024)
      .max(65_536)
      .default(CLIENT_LIMIT_DEFAULTS.max_header_bytes)
      .meta({
        unit: "bytes",
        description:
          "Longest single header field, name and value (nginx's buffer); longer → 431 before any validation.",
      }),
    max_head_bytes: z
      .number()
      .int()
      .min(4_096)
      .max(1_048_576)
      .default(CLIENT_LIMIT_DEFAULTS.max_head_bytes)
      .meta({
        unit: "bytes",
        description:
          "Largest request head, request line and every header field (nginx's 4 × 8 KiB); larger → 431 (414 when the request line alone does not fit), before any validation.",
      }),
    max_url_bytes: z
      .number()
      .int()
      .min(256)
      .max(1_048_576)
      .default(CLIENT_LIMIT_DEFAULTS.max_url_bytes)
      .meta({
        unit: "bytes",
        description: "Longest request target (path and query); longer → 414 before any validation.",
      }),
    headers_timeout_ms: z
      .number()
      .int()
      .min(100)
      .max(600_000)
      .default(CLIENT_LIMIT_DEFAULTS.headers_timeout_ms)
      .describe(
        "Time a client has to send a whole request head; a slower one (slowloris) gets 408 and the connection closed. Envoy's edge guidance; a real client sends its head in one packet.",
      ),
    body_timeout_ms: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(CLIENT_LIMIT_DEFAULTS.body_timeout_ms)
      .describe(
        "Longest silence while a request body is being received (nginx's `client_body_timeout`): the request is answered 408 (or cut off, once the service answered) and its upstream request aborted. 0: no limit.",
      ),
    request_timeout_ms: z
      .number()
      .int()
      .min(0)
      .max(86_400_000)
      .default(CLIENT_LIMIT_DEFAULTS.request_timeout_ms)
      .describe(
        "Longest time to receive a whole request, body included; 0 (the default): no limit, since an image upload to Glance may rightly take an hour — `body_timeout_ms` catches a stalled body.",
      ),
    keep_alive_timeout_ms: z
      .number()
      .int()
      .min(0)
      .max(3_600_000)
      .default(CLIENT_LIMIT_DEFAULTS.keep_alive_timeout_ms)
      .describe(
        "How long an idle keep-alive connection is kept (nginx's `keepalive_timeout`): longer than a load balancer's idle timeout (60 s on most), so the balancer never reuses a connection the edge is closing.",
      ),
  })
  .describe(
    "What a client may send to `listen` and `identity_listen`, and for how long: heads beyond these limits are refused before any validation work. Timeouts and `max_head_bytes` take effect for new connections after a reload.",
  )
  .default({ ...CLIENT_LIMIT_DEFAULTS })
  .refine((c) => notAbove(c, "max_header_bytes", "max_head_bytes"), {
    message: "must not exceed max_head_bytes",
    path: ["max_header_bytes"],
    ...inEveryPass,
  })
  .refine(
    (c) =>
      numberAt(c, "request_timeout_ms") === 0 ||
      notAbove(c, "headers_timeout_ms", "request_timeout_ms"),
    {
      message: "must not exceed request_timeout_ms (unless that is 0)",
      path: ["headers_timeout_ms"],
      ...inEveryPass,
    },
  );

/** The client limits, validated. */
export type ClientLimits = z.output<typeof clientLimits>;

/** TLS on the client-facing listeners (`listen`, `identity_listen`). */
const listenerTls = z
  .strictObject({
    certfile: z.string().min(1).meta({
      format: "path",
      description:
        "The certificate `listen` and `identity_listen` serve, PEM, the leaf first then its intermediates. Re-read on SIGHUP: a renewed certificate is served to new connections, open ones are not dropped.",
    }),
    keyfile: z.string().min(1).meta({
      format: "path",
      description: "The private key of `certfile`, PEM, unencrypted; re-read with it.",
    }),
    client_cafile: z.string().min(1).nullable().default(null).meta({
      format: "path",
      description:
        "CA bundle, PEM: when set, every client must present a certificate that chains to it (mutual TLS, for sidecars and balancers), else the handshake fails; re-read on SIGHUP. Turning it on or off needs a restart. `null`: no client certificate asked for.",
    }),
    min_version: z
      .enum(["TLSv1.2", "TLSv1.3"])
      .default("TLSv1.2")
      .describe(
        "Oldest TLS version accepted; Node's modern cipher suites either way (no RC4, 3DES, CBC-SHA1 export ciphers or renegotiation).",
      ),
  })
  .optional()
  .meta({
    description:
      "Serve HTTPS on `listen` and `identity_listen` (the admin listener stays plain HTTP: keep it on loopback or a management network). A TLS handshake must finish within `client.headers_timeout_ms` as at start-up.",
    absent: "plain HTTP",
  });

/** The listeners' TLS options, validated. */
export type ListenerTls = NonNullable<z.output<typeof listenerTls>>;

export const configSchema = z.strictObject({
  listen: listenAddress.describe("Where clients connect; IPv6 as `[::1]:8774`."),
  upstream: httpUrl.describe("The local OpenStack service requests are forwarded to."),
  upstream_timeout_ms: z
    .number()
    .int()
    .min(100)
    .max(3_600_000)
    .default(60_000)
    .describe(
      "How long the service may take to send its answer's head, and to fall silent within its body: past it the client gets 504 (or, mid-answer, a cut connection). nginx's `proxy_read_timeout`.",
    ),
  upstream_max_connections: z
    .number()
    .int()
    .min(1)
    .max(65_536)
    .default(1_024)
    .describe(
      "Most connections open to `upstream` at once (Envoy's default per cluster); requests beyond wait for one. Each request in flight holds one for its whole life, a slow image upload included, so keep it above the uploads a region runs at once.",
    ),
  workers: z
    .union([z.number().int().min(1).max(256), z.literal("auto")])
    .default(1)
    .describe(
      "Worker processes sharing `listen` and `identity_listen` (Node's cluster), each with its own in-process caches, all with the shared memcached; `auto`: one per core this process may run on (its CPU affinity; a container's CPU quota is not counted: give a number there). Above 1, a supervisor process holds the admin listener (one scrape aggregates every worker) and replaces a worker that dies. Changes need a restart.",
    ),
  admin_listen: listenAddress
    .default("127.0.0.1:9464")
    .describe(
      "The admin listener: status page at `/`, `/status`, `/metrics`, `/healthz`, `/readyz` and the admin API. Keep it on loopback or a management network.",
    ),
  admin_secret: z.string().min(16, "must be at least 16 characters").optional().meta({
    description:
      "Bearer secret of the mutating admin API on `admin_listen` (`POST /cache/flush`, drills), compared in constant time.",
    absent: "none: the admin API is off (404)",
  }),
  admin_allowed_hosts: z
    .array(
      z
        .string()
        .regex(/^[A-Za-z0-9.-]{1,253}$/, "a DNS name such as keystone-edge.mgmt.example")
        .transform((h) => h.toLowerCase()),
    )
    .max(64)
    .default([])
    .describe(
      "DNS names the admin listener answers to in `Host`, besides IP literals and `localhost` (always accepted): any other name is refused 421, so a web page cannot reach a loopback admin API by DNS rebinding.",
    ),
  identity_listen: listenAddress.optional().meta({
    description:
      "The regional Keystone face: an Identity v3 listener that answers `GET`/`HEAD /v3/auth/tokens` itself and relays the rest of the Identity API to `keystone.endpoints`; when on, validations fetch the catalog.",
    absent: "off",
  }),
  tls: listenerTls,
  identity_public_url: httpUrl.optional().meta({
    description:
      "The face's Identity root as clients reach it, without `/v3` (e.g. `https://identity.region-one.example:5000`), for version discovery links and `WWW-Authenticate`.",
    absent: "each request's scheme (`https` with `tls`) + `Host`",
  }),
  identity_relay: z
    .strictObject({
      connections: z.number().int().min(1).max(1_024).default(8).meta({
        unit: "connections",
        description:
          "Pooled connections to each Keystone endpoint for the relay, apart from the validations' own: relayed traffic never takes a validation's socket.",
      }),
      max_in_flight: z.number().int().min(1).max(100_000).default(64).meta({
        unit: "requests",
        description:
          "Relayed requests with Keystone at once; one more is answered 503 with `Retry-After` at once (no queue). Above `connections`, the surplus waits for a socket, within `timeout_ms`.",
      }),
      timeout_ms: z.number().int().min(100).max(600_000).default(60_000).meta({
        unit: "ms",
        description:
          "Deadline of one relayed Identity request, from the first endpoint tried until Keystone's answer has come (its headers, then each gap in its body); not the validations' deadline: issuing a token hashes a password and takes seconds on a busy Keystone (keystoneauth's clients wait far longer). Connecting to an endpoint still has `keystone.timeout_ms`. A POST is never sent twice; a timed-out one is answered 504.",
      }),
      max_body_bytes: z
        .number()
        .int()
        .min(1)
        .max(64 * 1024 * 1024)
        .default(1_048_576)
        .meta({
          unit: "bytes",
          description: "Largest request body relayed; a larger one is answered 413.",
        }),
      max_buffered_bytes: z
        .number()
        .int()
        .min(1)
        .max(4 * 1024 * 1024 * 1024)
        .default(16 * 1_048_576)
        .meta({
          unit: "bytes",
          description:
            "Request body bytes the relay holds at once, all requests together; a body that would go over is answered 503 with `Retry-After` and never buffered. At least `max_body_bytes`.",
        }),
    })
    .describe(
      "The Identity face's relay (`identity_listen`): its own connections to Keystone and its limits, so that unauthenticated traffic there cannot starve validations or fill memory.",
    )
    .default({
      connections: 8,
      max_in_flight: 64,
      timeout_ms: 60_000,
      max_body_bytes: 1_048_576,
      max_buffered_bytes: 16 * 1_048_576,
    })
    .refine((r) => notAbove(r, "max_body_bytes", "max_buffered_bytes"), {
      message: "max_buffered_bytes must be at least max_body_bytes",
      path: ["max_buffered_bytes"],
      ...inEveryPass,
    }),
  keystone: z
    .strictObject({
      www_authenticate_uri: httpUrl.describe(
        'Sent in `WWW-Authenticate: Keystone uri="…"` with every 401.',
      ),
      endpoints: z
        .array(z.union([httpUrl, z.strictObject({ name: endpointName, url: httpUrl })]))
        .min(1, "list at least one endpoint")
        .optional()
        .meta({
          description:
            "Identity v3 endpoints, region-local first, master last: each a URL, or `{ name, url }` to give it the name metrics, logs, `/status` and drills use; an unnamed endpoint is named after its `host:port`.",
          absent: "`[www_authenticate_uri]`",
        }),
      cafile: z.string().min(1).nullable().default(null).meta({
        format: "path",
        description: "CA bundle to verify Keystone's certificate; `null`: Node's bundled CAs.",
      }),
      certfile: z.string().min(1).nullable().default(null).meta({
        format: "path",
        description: "Client certificate for mutual TLS with Keystone; goes with `keyfile`.",
      }),
      keyfile: z
        .string()
        .min(1)
        .nullable()
        .default(null)
        .meta({ format: "path", description: "The private key of `certfile`." }),
      insecure: z
        .boolean()
        .default(false)
        .describe("Skip verification of Keystone's certificate; never in production."),
      timeout_ms: z
        .number()
        .int()
        .min(1)
        .max(120_000)
        .default(2_000)
        .describe("Deadline of one call to Keystone."),
      request_timeout_ms: z
        .number()
        .int()
        .min(1)
        .max(300_000)
        .default(5_000)
        .describe(
          "Deadline of one validation across every endpoint it fails over to: the default leaves room for one timed-out endpoint and an answer from the next, far below a client's usual 30–60 s timeout.",
        ),
      connections: z.number().int().min(1).max(1_024).default(16).meta({
        unit: "connections",
        description:
          "Pooled keep-alive connections to each Keystone endpoint for validations, the revocation feed and the service token; beyond them calls wait for a socket, within their deadline. Keep it at or below the threads the endpoint's server can give this edge if it holds a thread per idle keep-alive connection, as uwsgi's `--http11-socket` does (for up to its socket timeout, 4 s): requests sent on connections past its threads wait seconds. Count every edge (and every worker) against a shared master.",
      }),
      failure_threshold: z
        .number()
        .int()
        .min(1)
        .max(1_000)
        .default(3)
        .describe(
          "Consecutive failures (timeout, connection error, 5xx) that take an endpoint out of rotation: with the default, one or two lost packets do not, three in a row are an outage.",
        ),
      open_duration_ms: z
        .number()
        .int()
        .min(0)
        .max(3_600_000)
        .default(5_000)
        .describe(
          "How long an endpoint stays out of rotation before it is probed: a restarting Keystone is not hammered, a recovered one is back within seconds.",
        ),
      probe_interval_ms: z
        .number()
        .int()
        .min(50)
        .max(600_000)
        .default(1_000)
        .describe(
          "How often out-of-rotation endpoints are probed (`GET` of the base URL, no authentication); any answer below 500 puts one back.",
        ),
      revocation_poll_interval_ms: z
        .number()
        .int()
        .min(100)
        .max(3_600_000)
        .default(DEFAULT_REVOCATION_POLL_INTERVAL_MS)
        .describe(
          "How often Keystone's revocation feed (`GET /v3/OS-REVOKE/events`) is polled: a revoked token is refused within this, cached or not (keystonemiddleware: up to `token_cache_time`).",
        ),
      revocation_max_events: z.number().int().min(1_000).max(100_000_000).default(1_000_000).meta({
        unit: "events",
        description:
          "Most revocation events held (about 35 MB of heap per 100,000). Beyond it (a flood of revocations) the oldest are dropped and counted (`keystone_edge_revocation_events_dropped_total`), and every cached token issued at or before them is refused, never let back in; the refusal ends once those events would have been pruned.",
      }),
      auth: keystoneAuth,
    })
    // Before the transform: a transform never runs on an invalid object, this check does.
    .refine(endpointNamesUnique, {
      message: "endpoint names must be unique (unnamed ones are named after host:port)",
      path: ["endpoints"],
      ...inEveryPass,
    })
    .describe(
      "How the edge reaches Keystone: its endpoints, TLS, deadlines, circuit breakers, the revocation feed and the edge's own service user.",
    )
    // The default endpoint list is derived once, here, so the loaded config always has one.
    .transform((k) => ({
      ...k,
      endpoints: (k.endpoints ?? [k.www_authenticate_uri]).map((e) =>
        typeof e === "string" ? { name: hostOf(e), url: e } : e,
      ),
    })),
  fernet: z
    .strictObject({
      key_repository: nonEmpty.meta({
        format: "path",
        description: "The region's copy of Keystone's `[fernet_tokens] key_repository`.",
      }),
      auth_methods: z
        .array(nonEmpty)
        .min(1)
        .max(32)
        .refine((l) => new Set(l).size === l.length, { message: "lists a method twice" })
        .default([...DEFAULT_AUTH_METHODS])
        .describe(
          "Keystone's `[auth] methods`, in Keystone's order (the order sets the bits in a token), each once.",
        ),
      default_domain_id: nonEmpty
        .default("default")
        .describe("Keystone's `[identity] default_domain_id`."),
      token_expiration: z.number().int().min(60).max(31_536_000).default(3_600).meta({
        unit: "s",
        description:
          "Keystone's `[token] expiration`: how long after issue a token expires. With `allow_expired_window`, how long a revocation event is kept: past both (and a 5-minute clock-skew margin) after its `issued_before`, no token it revokes is acceptable.",
      }),
      allow_expired_window: z.number().int().min(0).max(31_536_000).default(172_800).meta({
        unit: "s",
        description:
          "Keystone's `[token] allow_expired_window`: how long past expiry a token is still honoured with `allow_expired` (a service token's request). Revocation events are kept `token_expiration` + this + 5 minutes after their `issued_before` (longer if `context_cache_time` + `stale_if_error` is).",
      }),
      lag_check_interval_ms: z.number().int().min(1_000).max(86_400_000).default(60_000).meta({
        unit: "ms",
        description:
          "How often the edge checks that its key ring decrypts a token Keystone issues now (it authenticates as the service user and tries the new token's signature): a copy of the key repository that lags the master (rotation ran twice before the copy arrived) shows as `keystone_edge_key_repository_behind` 1. The check also runs at start and after every reload that changed the ring.",
      }),
      lag_check_min_interval_ms: z.number().int().min(0).max(3_600_000).default(5_000).meta({
        unit: "ms",
        description:
          "A well-formed token that no local key verifies triggers the key lag check too, at most once per this interval (and not sooner than `lag_check_interval_ms` after a check that failed).",
      }),
      lag_fallback_per_second: z.number().min(0).max(100_000).default(20).meta({
        unit: "tokens/s",
        description:
          "While the key ring is behind, tokens no local key decrypts are asked of Keystone: this many per second at most on average (a token bucket); over budget they are refused (401) and counted. 0 with `lag_fallback_burst` 0 refuses them all, as while in sync.",
      }),
      lag_fallback_burst: z.number().int().min(0).max(1_000_000).default(100).meta({
        unit: "tokens",
        description:
          "Size of that token bucket: how many such tokens may be asked of Keystone at once before `lag_fallback_per_second` paces them.",
      }),
    })
    .describe(
      "The region's copy of Keystone's Fernet keys and the Keystone settings that decoding a token depends on: they must match the master's.",
    ),
  cache: z
    .strictObject({
      memcached_servers: z
        .array(nonEmpty.meta({ format: "host:port" }))
        .default([])
        .describe(
          "The memcached servers the region's edges share; empty: the in-process cache only.",
        ),
      memcache_secret_key: z.string().min(16, "must be at least 16 characters").optional().meta({
        description:
          "Derives the keys that name, encrypt and authenticate memcached entries (docs/security.md); the same on every edge sharing the memcached servers.",
        absent: "none; required when `memcached_servers` is set",
      }),
      token_cache_time: z
        .number()
        .int()
        .min(0)
        .max(86_400)
        .default(DEFAULT_TOKEN_CACHE_TIME_SECONDS)
        .meta({ unit: "s", description: "Longest a validated token is cached." }),
      lru_max_entries: z
        .number()
        .int()
        .min(1)
        .max(10_000_000)
        .default(DEFAULT_L1_MAX_ENTRIES)
        .meta({ unit: "entries", description: "Size of the in-process cache." }),
      context_cache_time: z.number().int().min(0).max(86_400).optional().meta({
        unit: "s",
        description:
          "How long a user + scope context answers new tokens of that user and scope with no Keystone call; 0 turns the context cache off.",
        absent: "`token_cache_time`",
      }),
      stale_if_error: z
        .number()
        .int()
        .min(0)
        .max(86_400)
        .default(DEFAULT_STALE_IF_ERROR_SECONDS)
        .meta({
          unit: "s",
          description:
            "Degraded mode: while no Keystone endpoint answers, a token that decrypts, has not expired and is not revoked is served when its user + scope context is known, up to this many seconds past `context_cache_time`; the rest get 503. The default rides out a quarter of an hour of master outage. 0 turns it off.",
        }),
      revocation_markers: z.boolean().default(true).meta({
        description:
          "Read-your-writes revocation across the region (with `memcached_servers`): a token revoked through an edge's Identity face (`DELETE /v3/auth/tokens`) leaves a sealed marker in memcached, and every edge looks for it before it calls a token valid — one small memcached read per validation, the in-process cache's hits included. Off: only the edge that relayed the revocation refuses the token at once; the others do within `keystone.revocation_poll_interval_ms`.",
      }),
    })
    .describe(
      "The validation caches: in-process, memcached shared by the region's edges (sealed), the per-scope context cache and degraded mode.",
    )
    .default({
      memcached_servers: [],
      token_cache_time: DEFAULT_TOKEN_CACHE_TIME_SECONDS,
      lru_max_entries: DEFAULT_L1_MAX_ENTRIES,
      stale_if_error: DEFAULT_STALE_IF_ERROR_SECONDS,
      revocation_markers: true,
    })
    .refine(
      (c: unknown) =>
        typeof c !== "object" ||
        c === null ||
        !Array.isArray((c as Record<string, unknown>)["memcached_servers"]) ||
        (c as { memcached_servers: unknown[] }).memcached_servers.length === 0 ||
        (c as Record<string, unknown>)["memcache_secret_key"] !== undefined,
      {
        message: "memcache_secret_key is required when memcached_servers is set",
        path: ["memcache_secret_key"],
        ...inEveryPass,
      },
    ),
  auth_token: z
    .strictObject({
      delay_auth_decision: z
        .boolean()
        .default(false)
        .describe(
          "Forward unauthenticated requests with `X-Identity-Status: Invalid` instead of answering 401.",
        ),
      include_service_catalog: z.boolean().default(true).describe("Send `X-Service-Catalog`."),
      service_token_roles: z
        .array(nonEmpty)
        .default(["service"])
        .describe("A service token counts only with one of these roles."),
      service_token_roles_required: z
        .boolean()
        .default(true)
        .describe(
          "Enforce `service_token_roles` (keystonemiddleware defaults to `false` and warns; an edge should not).",
        ),
      service_type: z
        .string()
        .regex(/^[a-z0-9][a-z0-9_-]*$/, "a catalog service type such as compute or image")
        .optional()
        .meta({
          description:
            "The catalog type of the service behind the edge (`compute`, `image`, …): application-credential access rules are enforced for it (as keystonemiddleware does).",
          absent: "none: tokens restricted by access rules are refused",
        }),
    })
    .describe(
      "keystonemiddleware's `[keystone_authtoken]` options that the edge honours, under the same names.",
    )
    .default({
      delay_auth_decision: false,
      include_service_catalog: true,
      service_token_roles: ["service"],
      service_token_roles_required: true,
    }),
  shadow_validation: z
    .strictObject({
      sample_ratio: z.number().min(0).max(1).default(DEFAULT_SHADOW_SAMPLE_RATIO).meta({
        unit: "ratio",
        description:
          "Fraction of the verdicts the edge reaches without Keystone (in-process cache, contexts, memcached, local decryption, remembered refusals, the revocation list) asked again of the master in the background, off the request path; 0 turns shadow validation off. A difference is looked at again after `confirm_after_ms` and counted a disagreement only if the edge still differs (`keystone_edge_shadow_validations_total`).",
      }),
      max_per_second: z.number().min(0).max(1_000).default(DEFAULT_SHADOW_MAX_PER_SECOND).meta({
        unit: "calls/s",
        description:
          "Ceiling of shadow validations started per second, per process (each worker has its own): what shadow validation may cost the master at most, whatever the traffic. Samples beyond it are skipped and counted.",
      }),
      max_in_flight: z.number().int().min(1).max(64).default(DEFAULT_SHADOW_MAX_IN_FLIGHT).meta({
        unit: "calls",
        description:
          "Shadow validations waiting for the master at once, at most: a slow master holds this many of the pool's connections, never more.",
      }),
      confirm_after_ms: z.number().int().min(0).max(3_600_000).optional().meta({
        description:
          "How long after a difference the edge is asked again: a token revoked or expired between the two looks is refused by then, and counts as agreement.",
        absent: "twice `keystone.revocation_poll_interval_ms`",
      }),
    })
    .describe(
      "Trust, but verify: a sampled fraction of the edge's own verdicts is validated again at the master (the last of `keystone.endpoints`), never while it is out of rotation or the region is in degraded mode.",
    )
    .default({
      sample_ratio: DEFAULT_SHADOW_SAMPLE_RATIO,
      max_per_second: DEFAULT_SHADOW_MAX_PER_SECOND,
      max_in_flight: DEFAULT_SHADOW_MAX_IN_FLIGHT,
    }),
  tracing: z
    .strictObject({
      otlp_endpoint: httpUrl.optional().meta({
        description:
          "The OpenTelemetry collector's base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT` (e.g. `http://127.0.0.1:4318`): spans are sent over OTLP/HTTP to `<otlp_endpoint>/v1/traces`.",
        absent: "tracing off",
      }),
      sample_ratio: z.number().min(0).max(1).default(0.01).meta({
        unit: "ratio",
        description:
          "Fraction of requests traced when the client sends no `traceparent`; a client's sampled `traceparent` is always honoured (parent-based), an unsampled one never.",
      }),
      service_name: nonEmpty.default("keystone-edge").describe("The `service.name` of the spans."),
    })
    .describe(
      "OpenTelemetry tracing: W3C `traceparent`/`tracestate` accepted and passed on to the service and to Keystone; spans for the request, the validation tiers, Keystone calls and the forward. A span never holds a token.",
    )
    .default({ sample_ratio: 0.01, service_name: "keystone-edge" }),
  audit_log: z
    .strictObject({
      path: z.string().min(1).optional().meta({
        format: "path",
        description:
          "A JSON-lines file every authentication decision is appended to (time, request id, user, scope, method, path without its query, outcome and reason, tier, latency, the token's short hash — never a token), written off the request path. Reopened on reload (SIGHUP), for log rotation.",
        absent: "no audit log",
      }),
      sample_ratio: z
        .number()
        .min(0)
        .max(1)
        .default(1)
        .meta({ unit: "ratio", description: "Fraction of decisions written; 1: every one." }),
      max_buffered_bytes: z
        .number()
        .int()
        .min(65_536)
        .max(1_073_741_824)
        .default(DEFAULT_AUDIT_MAX_BUFFERED_BYTES)
        .meta({
          unit: "bytes",
          description:
            "Audit lines held in memory while the disk catches up; beyond it lines are dropped and counted (`keystone_edge_audit_dropped_total`), never waited for.",
        }),
    })
    .describe("An audit log of authentication decisions, for security review and forensics.")
    .default({ sample_ratio: 1, max_buffered_bytes: DEFAULT_AUDIT_MAX_BUFFERED_BYTES }),
  client: clientLimits,
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
