/**
 * Owns: an in-process stand-in for Keystone's Identity v3 API, just enough for a whole
 * keystone-edge, for the faults a real Keystone will not produce on demand (flapping many
 * times a second, refusing the edge's own credentials at will):
 *
 * - `GET /v3`: the version document (the edge's endpoint probe);
 * - `POST /v3/auth/tokens`: the edge's service token (an opaque `svc-<n>`, or what the
 *   `serviceToken` option mints: a Fernet token signed with the master's keys, for the
 *   edge's key lag check), or 401 when `credentials` is `refused` (a changed password, a
 *   disabled service user);
 * - `GET /v3/auth/tokens`: the subject decoded with the region's keys and answered as
 *   Keystone would for a project or unscoped token; 404 for a token that does not decode or
 *   that `revoke()` named; 401 when the `X-Auth-Token` is not a live service token (after
 *   `revokeServiceTokens()`, as Keystone answers once a password change revoked it);
 * - `GET /v3/OS-REVOKE/events`: no events (401 for a dead service token, as above).
 *
 * `stop()`/`start()` close and reopen the listener on the same port (connection refused in
 * between, open connections cut).
 * Counts every kind of call. Only node: built-ins and the edge's own token decoder.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Token } from "../../src/token/decoder.js";
import { keystoneTime } from "../../src/token/render.js";

export interface FakeKeystoneCounts {
  authentications: number;
  validations: number;
  probes: number;
  feedPolls: number;
  /** Validations and feed polls refused with 401 (a dead service token). */
  unauthorized: number;
}

export interface FakeKeystone {
  /** The Identity v3 URL, `http://127.0.0.1:<port>/v3`. */
  readonly url: string;
  readonly port: number;
  /** `refused`: `POST /v3/auth/tokens` answers 401. */
  credentials: "accepted" | "refused";
  readonly counts: FakeKeystoneCounts;
  /** Every service token issued so far is refused from now on (401), as after a password change. */
  revokeServiceTokens(): void;
  /** `token` is answered 404 from now on. */
  revoke(token: string): void;
  readonly running: boolean;
  /** Closes the listener and cuts every connection: connecting is refused. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  close(): Promise<void>;
}

/** Keystone's answer for a decoded token (project or unscoped scope; others unscoped). */
function tokenBody(token: Token): Record<string, unknown> {
  const p = token.payload;
  const domain = { id: "default", name: "Default" };
  return {
    methods: [...p.methods],
    user: { id: p.userId, name: `user-${p.userId.slice(0, 8)}`, domain, password_expires_at: null },
    audit_ids: [...p.auditIds],
    expires_at: keystoneTime(token.expiresAtSeconds),
    issued_at: keystoneTime(token.issuedAtSeconds),
    ...(p.kind === "project"
      ? {
          project: { id: p.projectId, name: `project-${p.projectId.slice(0, 8)}`, domain },
          is_domain: false,
          roles: [
            { id: "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0", name: "member" },
            { id: "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0", name: "reader" },
          ],
          catalog: [],
        }
      : {}),
  };
}

function send(res: ServerResponse, status: number, body?: unknown, headers = {}): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    ...(body === undefined ? {} : { "content-type": "application/json" }),
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** Options of {@link startFakeKeystone}. */
export interface FakeKeystoneOptions {
  /** Mints each service token issued. Default: `svc-<n>` (not a Fernet token). */
  readonly serviceToken?: () => string;
}

/**
 * Starts the fake on 127.0.0.1 (a free port). `decode` reads a subject token with the
 * region's keys (a `TokenDecoder` over the edge's repository): undefined when it does not
 * decode or has expired.
 */
export async function startFakeKeystone(
  decode: (token: string) => Token | undefined,
  options: FakeKeystoneOptions = {},
): Promise<FakeKeystone> {
  const counts: FakeKeystoneCounts = {
    authentications: 0,
    validations: 0,
    probes: 0,
    feedPolls: 0,
    unauthorized: 0,
  };
  const live = new Set<string>();
  const revoked = new Set<string>();
  let issued = 0;
  const state: { credentials: "accepted" | "refused" } = { credentials: "accepted" };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const authorised = (): boolean => {
      const service = req.headers["x-auth-token"];
      if (typeof service === "string" && live.has(service)) return true;
      counts.unauthorized++;
      send(res, 401, { error: { code: 401, title: "Unauthorized", message: "no" } });
      return false;
    };
    if (req.method === "GET" && (path === "/v3" || path === "/v3/")) {
      counts.probes++;
      send(res, 200, { version: { id: "v3.14", status: "stable" } });
      return;
    }
    if (req.method === "POST" && path === "/v3/auth/tokens") {
      counts.authentications++;
      if (state.credentials === "refused") {
        send(res, 401, { error: { code: 401, title: "Unauthorized", message: "bad" } });
        return;
      }
      const n = ++issued;
      const token = options.serviceToken?.() ?? `svc-${String(n)}`;
      live.add(token);
      const expires = keystoneTime(Date.now() / 1000 + 3_600);
      send(
        res,
        201,
        { token: { expires_at: expires, methods: ["password"] } },
        {
          "x-subject-token": token,
        },
      );
      return;
    }
    if (req.method === "GET" && path === "/v3/auth/tokens") {
      counts.validations++;
      if (!authorised()) return;
      const subject = req.headers["x-subject-token"];
      const token =
        typeof subject === "string" && !revoked.has(subject) ? decode(subject) : undefined;
      if (token === undefined) {
        send(res, 404, { error: { code: 404, title: "Not Found", message: "no token" } });
        return;
      }
      send(res, 200, { token: tokenBody(token) });
      return;
    }
    if (req.method === "GET" && path === "/v3/OS-REVOKE/events") {
      counts.feedPolls++;
      if (!authorised()) return;
      send(res, 200, { events: [] });
      return;
    }
    send(res, 404, { error: { code: 404, title: "Not Found", message: path } });
  };

  const server: Server = createServer((req, res) => {
    // Read the whole request first, as a WSGI server does.
    req.resume();
    req.on("end", () => {
      handle(req, res);
    });
  });
  server.keepAliveTimeout = 30_000;
  let port = 0;
  let running = false;
  const listen = (): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port, exclusive: true }, () => {
        server.off("error", reject);
        const a = server.address();
        if (a !== null && typeof a === "object") port = a.port;
        running = true;
        resolve();
      });
    });
  const stop = async (): Promise<void> => {
    if (!running) return;
    running = false;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  };
  await listen();
  return {
    get url() {
      return `http://127.0.0.1:${String(port)}/v3`;
    },
    get port() {
      return port;
    },
    get credentials() {
      return state.credentials;
    },
    set credentials(value: "accepted" | "refused") {
      state.credentials = value;
    },
    counts,
    revokeServiceTokens() {
      live.clear();
    },
    revoke(token) {
      revoked.add(token);
    },
    get running() {
      return running;
    },
    stop,
    async start() {
      if (!running) await listen();
    },
    close: stop,
  };
}
