/**
 * Owns: a tiny stand-in for the master Keystone's `POST /v3/auth/tokens` that issues *real*
 * Fernet tokens, signed with a key the test chooses (and changes, as a rotation would),
 * over HTTP or HTTPS: what `keystone-edge keys check` needs to tell a region whose copy
 * decrypts what the master issues now from one that lags. It can refuse the credentials
 * (401), fail (500), or issue a token that is not Fernet. It records every token it issued
 * and every authentication body, so a test can check that none of them leaks into output.
 * Only node: built-ins and the edge's own token encoder.
 */
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { FernetKey } from "../../src/fernet/envelope.js";
import { KeyRing, staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { keystoneTime } from "../../src/token/render.js";
import type { EpochMicros } from "../../src/units.js";

/** What `POST /v3/auth/tokens` answers. */
export type FernetKeystoneMode =
  /** 201 with a Fernet token signed by `signingKey`. */
  | "issue"
  /** 401: the service user's credentials are refused. */
  | "refuse"
  /** 500: Keystone is broken. */
  | "fail"
  /** 201 with an opaque token (a Keystone whose provider is not Fernet). */
  | "opaque";

export interface FernetKeystone {
  /** The Identity v3 URL, `http(s)://127.0.0.1:<port>/v3`. */
  readonly url: string;
  mode: FernetKeystoneMode;
  /** The key new tokens are signed with: the master's primary. */
  signingKey: FernetKey;
  /** Every token issued, in order. */
  readonly issued: readonly string[];
  /** Every `POST /v3/auth/tokens` body received, parsed. */
  readonly authentications: readonly unknown[];
  close(): Promise<void>;
}

/** Options of {@link startFernetKeystone}. */
export interface FernetKeystoneOptions {
  readonly signingKey: FernetKey;
  /** PEM server certificate and key: serve HTTPS. Default: plain HTTP. */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Keystone's `[auth] methods`, for the token's methods bitmask. Default Keystone's six. */
  readonly authMethods?: readonly string[];
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** Starts the stand-in on 127.0.0.1, a free port. */
export async function startFernetKeystone(options: FernetKeystoneOptions): Promise<FernetKeystone> {
  const issued: string[] = [];
  const authentications: unknown[] = [];
  const state: { mode: FernetKeystoneMode; signingKey: FernetKey } = {
    mode: "issue",
    signingKey: options.signingKey,
  };

  const mint = (): { token: string; expiresAtSeconds: number } => {
    const expiresAtSeconds = Math.floor(Date.now() / 1000) + 3_600;
    const decoder = new TokenDecoder({
      keys: staticKeyRing(KeyRing.from([{ index: 1, key: state.signingKey }])),
      ...(options.authMethods ? { authMethods: options.authMethods } : {}),
    });
    const token = decoder.mint({
      kind: "project",
      version: 2,
      userId: "5e4f6a1b2c3d4e5f6a7b8c9d0e1f2a3b",
      methods: ["password"],
      auditIds: ["c2VydmljZS1hdWRpdC1pZA"],
      projectId: "0123456789abcdef0123456789abcdef",
      expiresAtMicros: (expiresAtSeconds * 1e6) as EpochMicros,
    });
    return { token, expiresAtSeconds };
  };

  const handle = (req: IncomingMessage, body: string, res: ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    if (req.method !== "POST" || path !== "/v3/auth/tokens") {
      send(res, 404, { error: { code: 404, title: "Not Found", message: path } });
      return;
    }
    try {
      authentications.push(JSON.parse(body));
    } catch {
      authentications.push(body);
    }
    switch (state.mode) {
      case "refuse":
        send(res, 401, {
          error: {
            code: 401,
            title: "Unauthorized",
            message: "The request you have made requires authentication.",
          },
        });
        return;
      case "fail":
        send(res, 500, { error: { code: 500, title: "Internal Server Error", message: "boom" } });
        return;
      case "opaque": {
        const token = `opaque-${String(issued.length + 1)}-not-fernet`;
        issued.push(token);
        send(
          res,
          201,
          { token: { expires_at: keystoneTime(Date.now() / 1000 + 3_600), methods: ["password"] } },
          { "x-subject-token": token },
        );
        return;
      }
      case "issue": {
        const { token, expiresAtSeconds } = mint();
        issued.push(token);
        send(
          res,
          201,
          {
            token: {
              expires_at: keystoneTime(expiresAtSeconds),
              issued_at: keystoneTime(Date.now() / 1000),
              methods: ["password"],
            },
          },
          { "x-subject-token": token },
        );
        return;
      }
    }
  };

  const listener = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      handle(req, Buffer.concat(chunks).toString("utf8"), res);
    });
  };
  const server = options.tls
    ? createHttpsServer({ cert: options.tls.cert, key: options.tls.key }, listener)
    : createHttpServer(listener);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  const port = address !== null && typeof address === "object" ? address.port : 0;
  const scheme = options.tls ? "https" : "http";
  return {
    url: `${scheme}://127.0.0.1:${String(port)}/v3`,
    get mode() {
      return state.mode;
    },
    set mode(value: FernetKeystoneMode) {
      state.mode = value;
    },
    get signingKey() {
      return state.signingKey;
    },
    set signingKey(key: FernetKey) {
      state.signingKey = key;
    },
    issued,
    authentications,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
        server.closeAllConnections();
      }),
  };
}
