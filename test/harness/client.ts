/**
 * Owns: the plain, JSON-serialisable description of a running test Keystone
 * (`KeystoneInfo`, handed from the vitest globalSetup to test workers through
 * `provide`/`inject`) and the small HTTP / keystone-manage helpers that only
 * need that description. Uses global `fetch` and `node:child_process` only.
 */
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";

/** What a test needs to talk to the harness Keystone; plain JSON. */
export interface KeystoneInfo {
  /** Identity v3 endpoint, e.g. `http://127.0.0.1:41234/v3` (no trailing slash). */
  url: string;
  /** Port Keystone (uwsgi) listens on, on 127.0.0.1. */
  port: number;
  /** Temporary directory holding config, keys, logs and the PostgreSQL cluster. */
  root: string;
  /** Path of the generated keystone.conf. */
  configFile: string;
  /** `[fernet_tokens] key_repository` directory. */
  keyRepository: string;
  adminUsername: string;
  adminPassword: string;
  /** `[auth] methods`, in order; the order defines the method bits in Fernet payloads. */
  authMethods: string[];
}

declare module "vitest" {
  export interface ProvidedContext {
    keystone: KeystoneInfo;
  }
}

/** Scope requested when issuing a token for the admin user. */
export type TokenScope =
  | { kind: "unscoped" }
  | { kind: "project"; name: string; domainId: string }
  | { kind: "domain"; id: string }
  | { kind: "system" };

/** Keystone's `{"token": {...}}` response body (only the parts the harness reads are typed). */
export interface KeystoneTokenBody {
  token: {
    methods: string[];
    user: { id: string; name: string; domain: { id: string; name: string } };
    audit_ids: string[];
    expires_at: string;
    issued_at: string;
    project?: { id: string; name: string; domain: { id: string; name: string } };
    domain?: { id: string; name: string };
    system?: { all: boolean };
    roles?: { id: string; name: string }[];
    [key: string]: unknown;
  };
}

/** A freshly issued token (`X-Subject-Token`) and the JSON body Keystone returned with it. */
export interface IssuedToken {
  token: string;
  body: KeystoneTokenBody;
}

/** Outcome of `GET /v3/auth/tokens`; `body` is parsed JSON, or the raw text if not JSON. */
export interface ValidateResult {
  status: number;
  body: unknown;
}

/** Options for {@link validateToken}. */
export interface ValidateOptions {
  /** Add `?nocatalog`. Default `false`. */
  nocatalog?: boolean;
  /** Add `?allow_expired=1`. Default `false`. */
  allowExpired?: boolean;
}

/** Per-request timeout for harness HTTP calls. */
const REQUEST_TIMEOUT_MS = 30_000;

/** Path of Debian's keystone-manage (runs under /usr/bin/python3). */
export const KEYSTONE_MANAGE = "/usr/bin/keystone-manage";

function scopeBody(scope: TokenScope): Record<string, unknown> | undefined {
  switch (scope.kind) {
    case "unscoped":
      return undefined;
    case "project":
      return { project: { name: scope.name, domain: { id: scope.domainId } } };
    case "domain":
      return { domain: { id: scope.id } };
    case "system":
      return { system: { all: true } };
  }
}

async function readBody(res: Response): Promise<unknown> {
  const text = await res.text();
  if (text === "") return null;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * The `auth` object of a password login as the admin user (`POST /v3/auth/tokens` takes
 * `{ auth }`), scoped as `scope` asks (default: the admin project).
 */
export function adminPasswordAuth(
  info: KeystoneInfo,
  scope: TokenScope = { kind: "project", name: "admin", domainId: "default" },
): Record<string, unknown> {
  const scopePart = scopeBody(scope);
  return {
    identity: {
      methods: ["password"],
      password: {
        user: { name: info.adminUsername, domain: { id: "default" }, password: info.adminPassword },
      },
    },
    ...(scopePart === undefined ? {} : { scope: scopePart }),
  };
}

/**
 * Issue a token for the admin user with password auth (`POST /v3/auth/tokens`).
 *
 * @param info  the harness Keystone (from `inject('keystone')` or a handle)
 * @param scope requested scope; `{ kind: 'unscoped' }` sends no `scope`
 * @returns the `X-Subject-Token` and Keystone's JSON body
 * @throws if Keystone does not answer 201 with a subject token
 */
export async function issueToken(info: KeystoneInfo, scope: TokenScope): Promise<IssuedToken> {
  const auth = adminPasswordAuth(info, scope);

  const res = await fetch(`${info.url}/auth/tokens`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json" },
    body: JSON.stringify({ auth }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const body = await readBody(res);
  const token = res.headers.get("x-subject-token");
  if (res.status !== 201 || token === null) {
    throw new Error(
      `issueToken(${JSON.stringify(scope)}): POST ${info.url}/auth/tokens -> ${res.status}: ${JSON.stringify(body)}`,
    );
  }
  return { token, body: body as KeystoneTokenBody };
}

/**
 * Validate `subjectToken` with Keystone (`GET /v3/auth/tokens`), authenticated as `adminToken`.
 * Never throws on an HTTP error status: 404 for an invalid/unknown token is a normal result.
 *
 * @param opts defaults: `nocatalog: false`, `allowExpired: false`
 */
export async function validateToken(
  info: KeystoneInfo,
  adminToken: string,
  subjectToken: string,
  opts: ValidateOptions = {},
): Promise<ValidateResult> {
  const query = new URLSearchParams();
  if (opts.nocatalog === true) query.set("nocatalog", "1");
  if (opts.allowExpired === true) query.set("allow_expired", "1");
  const qs = query.size > 0 ? `?${query.toString()}` : "";
  const res = await fetch(`${info.url}/auth/tokens${qs}`, {
    headers: {
      accept: "application/json",
      "x-auth-token": adminToken,
      "x-subject-token": subjectToken,
    },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  return { status: res.status, body: await readBody(res) };
}

/** Environment for Debian's Python tools: drop pyenv/virtualenv variables that could leak in. */
export function debianPythonEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("PYTHON") || k.startsWith("PYENV") || k === "VIRTUAL_ENV") continue;
    if (k.startsWith("OS_")) continue; // OpenStack client/Keystone variables
    env[k] = v;
  }
  env["PATH"] = `/usr/sbin:/usr/bin:/sbin:/bin${env["PATH"] ? `:${env["PATH"]}` : ""}`;
  return { ...env, ...extra };
}

function tailLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

function tailFile(file: string, n: number): string {
  try {
    return tailLines(readFileSync(file, "utf8"), n);
  } catch {
    return "(no log)";
  }
}

/**
 * Drop the harmless traceback Debian's eventlet prints at interpreter exit
 * ("Exception ignored in: <function _removeHandlerRef ...> ... 'getcurrent'").
 */
function stripEventletNoise(stderr: string): string {
  return stderr.replace(
    /Exception ignored in: <function _removeHandlerRef[\s\S]*?AttributeError: 'NoneType' object has no attribute 'getcurrent'\n?/g,
    "",
  );
}

/**
 * Run `/usr/bin/keystone-manage --config-file <info.configFile> ...args` (cwd: `info.root`),
 * e.g. `["fernet_rotate", "--keystone-user", "root", "--keystone-group", "root"]`.
 *
 * @param timeoutMs default 120 000
 * @returns the command's stdout
 * @throws with the exit status and the tail of stderr if it fails
 */
export function keystoneManage(
  info: Pick<KeystoneInfo, "configFile" | "root">,
  args: readonly string[],
  timeoutMs = 120_000,
): Promise<string> {
  const argv = ["--config-file", info.configFile, ...args];
  return new Promise((resolve, reject) => {
    execFile(
      KEYSTONE_MANAGE,
      argv,
      {
        cwd: info.root,
        env: debianPythonEnv(),
        timeout: timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        if (err) {
          const how =
            err.killed || err.signal
              ? `killed by ${String(err.signal)}`
              : `exit ${String(err.code)}`;
          reject(
            new Error(
              `keystone-manage ${args[0] ?? ""} failed (${how})\n` +
                `--- stderr ---\n${tailLines(stripEventletNoise(stderr), 30)}\n` +
                `--- ${info.root}/keystone.log ---\n${tailFile(`${info.root}/keystone.log`, 30)}`,
              { cause: err },
            ),
          );
          return;
        }
        resolve(stdout);
      },
    );
  });
}
