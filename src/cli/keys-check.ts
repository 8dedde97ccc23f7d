/**
 * `keystone-edge keys check --config FILE`: the gate of key rotation.
 *
 * Owns: asking Keystone for a token *now* — as the edge's own service user, over the
 * configured endpoints with their TLS settings, through keystone/endpoint.ts and the
 * authentication of keystone/service-token.ts rather than a second client — and telling
 * whether this host's copy of the key repository verifies it, and with which key: its
 * primary (in step), its staged key (one rotation behind), a secondary (the Keystone that
 * answered is behind this copy) or none (the region is behind). The verdict is the exit
 * status, for rotation automation: rotate again only when every region passes. Prints
 * fingerprints only, never the token or a key; the token is not revoked (a revocation
 * event would reach every edge's feed), it expires by itself.
 *
 * Size: the command's checks, its Keystone calls and its report read as one procedure; the
 * pieces have no other user.
 */
import { loadConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import {
  CheckError,
  ConfigError,
  EdgeError,
  ExitStatus,
  exitStatusFor,
  TokenError,
  UsageError,
} from "../errors.js";
import { openEnvelope, tokenBytes } from "../fernet/envelope.js";
import { readKeyRepository } from "../fernet/key-repository.js";
import { staticKeyRing, type KeyRing, type KeyRingEntry } from "../fernet/key-ring.js";
import { KeystoneEndpoint, type CallOptions, type CallOutcome } from "../keystone/endpoint.js";
import { ServiceToken } from "../keystone/service-token.js";
import { TokenDecoder } from "../token/decoder.js";
import { parseCommandArgs, usageLine, type Command, type CommandIO } from "./command.js";

const help = `Usage: keystone-edge keys check --config FILE [--endpoint NAME] [--json]

The gate of key rotation. Asks Keystone for a token now, as the edge's service user
(keystone.auth) over keystone.endpoints in order with their TLS settings (cafile,
certfile, keyfile, insecure), and tries it against this host's copy of the key
repository (fernet.key_repository). Run it in every region, on every edge host, after
each sync; rotate again only when all of them pass (docs/operations.md, "Key rotation
across regions").

Prints the repository's primary index and key count, the endpoint that issued the token,
and which local key verified it (index, role, fingerprint) or that none did. Never prints
the token or a key. The token is not revoked: it expires by itself.

Options:
  --config FILE    the edge's configuration, as serve reads it (required)
  --endpoint NAME  ask only this endpoint of keystone.endpoints (its name), e.g. the
                   master's when a region-local Keystone answers first
  --json           print one JSON object instead of the summary
  -h, --help       show this help

Exit status:
  0  in sync: the repository's primary key verifies what Keystone issues now
  1  behind: no key of the repository verifies it; this region cannot decrypt such
     tokens and asks Keystone for each (rate-limited). Do not rotate again.
  7  not in step: the staged key verifies it (this copy is one rotation behind) or a
     secondary does (the Keystone that answered is behind this copy). Serving now, but
     do not rotate again.
  6  could not check: Keystone unreachable, the service user refused, a token that is
     not Fernet (and any internal failure: from this command, 1 only means behind)
  2  usage, configuration or key repository problem
`;

/** Where this copy stands against what Keystone issues now. */
export type KeysCheckState = "in_sync" | "one_rotation_behind" | "ahead" | "behind";

/** A key, as it may leave the process: its name, role and fingerprint, never its bytes. */
interface KeySummary {
  readonly index: number;
  readonly role: KeyRingEntry["role"];
  readonly fingerprint: string;
}

interface RepositorySummary {
  readonly directory: string;
  readonly primary_index: number;
  readonly key_count: number;
  readonly keys: readonly KeySummary[];
}

/** One endpoint's part in the authentication. */
interface Attempt {
  readonly endpoint: string;
  readonly url: string;
  /** `HTTP <status>`, `timeout`, `connection`, `aborted`, or `not tried`. */
  readonly result: string;
  readonly detail?: string;
}

/** What `--json` prints when the check was made. Snake case: it leaves the process. */
export interface KeysCheckReport {
  readonly state: KeysCheckState;
  /** `state` is `in_sync`: safe to rotate again, as far as this host goes. */
  readonly ok: boolean;
  readonly key_repository: RepositorySummary;
  readonly keystone: {
    readonly endpoint: string;
    readonly url: string;
    /** The token's Fernet timestamp (Keystone's `issued_at`, whole seconds). */
    readonly token_issued_at: string;
  };
  /** The local key whose HMAC matched; null when none did. */
  readonly decrypted_with: KeySummary | null;
  /**
   * The payload read with the configured `fernet.auth_methods` and `default_domain_id`:
   * `valid`, `expired`, or the error code; null when no key decrypted it.
   */
  readonly payload: string | null;
}

const STATUS_OF: Readonly<Record<KeysCheckState, number>> = {
  in_sync: ExitStatus.ok,
  one_rotation_behind: ExitStatus.keysNotInStep,
  ahead: ExitStatus.keysNotInStep,
  behind: ExitStatus.keysBehind,
};

/** A configured endpoint that remembers its last call's outcome: who answered, and how. */
class ObservedEndpoint extends KeystoneEndpoint {
  last: CallOutcome | undefined;

  override async call(options: CallOptions): Promise<CallOutcome> {
    const outcome = await super.call(options);
    this.last = outcome;
    return outcome;
  }
}

/** A URL as it may be printed: without any user information. */
function printableUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.username === "" && parsed.password === "") return url;
    parsed.username = "";
    parsed.password = "";
    return parsed.toString();
  } catch {
    return "(unparsable URL)";
  }
}

function attemptOf(endpoint: ObservedEndpoint): Attempt {
  const base = { endpoint: endpoint.name, url: printableUrl(endpoint.url) };
  const o = endpoint.last;
  if (o === undefined) return { ...base, result: "not tried" };
  if (o.kind === "failed") return { ...base, result: o.reason, detail: o.detail };
  return { ...base, result: `HTTP ${String(o.status)}` };
}

/** The endpoints to ask, in the configured order, or only the one `--endpoint` names. */
function selectEndpoints(config: Readonly<Config>, name: string | undefined): ObservedEndpoint[] {
  const k = config.keystone;
  const chosen = name === undefined ? k.endpoints : k.endpoints.filter((e) => e.name === name);
  if (chosen.length === 0) {
    throw new UsageError(
      `--endpoint ${name ?? ""}: keystone.endpoints has no endpoint of that name (it has: ${k.endpoints
        .map((e) => e.name)
        .join(", ")})`,
    );
  }
  return chosen.map(
    (e) =>
      new ObservedEndpoint({
        url: e.url,
        name: e.name,
        timeoutMs: k.timeout_ms,
        connections: 1,
        cafile: k.cafile,
        certfile: k.certfile,
        keyfile: k.keyfile,
        insecure: k.insecure,
      }),
  );
}

/** What asking Keystone for a token came to. */
type Issued =
  | { readonly kind: "issued"; readonly token: string; readonly endpoint: ObservedEndpoint }
  | { readonly kind: "failed"; readonly error: CheckError; readonly attempts: readonly Attempt[] };

/**
 * Authenticates once as the service user (service-token.ts: password or application
 * credential, endpoints in order, no further endpoint after a 401/403) and resolves to the
 * token and the endpoint that issued it; or to why none did — `keystone_refused` when an
 * endpoint answered 4xx, else `keystone_unreachable` — with what each endpoint did.
 */
async function freshToken(
  config: Readonly<Config>,
  endpoints: readonly ObservedEndpoint[],
): Promise<Issued> {
  const service = new ServiceToken({ auth: config.keystone.auth, endpoints: () => endpoints });
  try {
    const state = await service.refresh();
    const answered = endpoints.filter((e) => e.last !== undefined);
    const issuer = answered.at(-1);
    if (state.kind === "valid" && issuer !== undefined) {
      return { kind: "issued", token: state.token, endpoint: issuer };
    }
    const attempts = endpoints.map(attemptOf);
    const refused = answered.some(
      (e) => e.last?.kind === "response" && e.last.status >= 400 && e.last.status < 500,
    );
    const summary = attempts
      .map((a) => `${a.endpoint}: ${a.result}${a.detail === undefined ? "" : ` (${a.detail})`}`)
      .join("; ");
    return {
      kind: "failed",
      error: refused
        ? new CheckError(
            "keystone_refused",
            `Keystone refused the service user (keystone.auth): ${summary}`,
          )
        : new CheckError("keystone_unreachable", `no Keystone endpoint issued a token: ${summary}`),
      attempts,
    };
  } finally {
    service.close();
    await Promise.all(endpoints.map((e) => e.close()));
  }
}

/** The entry whose key's HMAC matches the token, if any (constant time per key). */
function signingEntry(bytes: Buffer, ring: KeyRing): KeyRingEntry | undefined {
  const opened = openEnvelope(bytes, ring.keys);
  if (!(opened instanceof TokenError)) return ring.entryAt(opened.keyPosition);
  if (opened.code === "bad_signature") return undefined;
  // A key matched but the envelope did not open past the MAC: find which key it was.
  return ring.entries.find((entry) => {
    const one = openEnvelope(bytes, [entry.key]);
    return !(one instanceof TokenError) || one.code !== "bad_signature";
  });
}

function stateOf(entry: KeyRingEntry | undefined): KeysCheckState {
  if (entry === undefined) return "behind";
  if (entry.role === "primary") return "in_sync";
  return entry.role === "staged" ? "one_rotation_behind" : "ahead";
}

function summarize(entry: KeyRingEntry): KeySummary {
  return { index: entry.index, role: entry.role, fingerprint: entry.key.fingerprint };
}

/**
 * Checks `token` (just issued by `endpoint`) against `ring`. Exported for tests and for
 * callers that already hold a fresh token.
 *
 * @throws CheckError `not_fernet_token` when the token is no Fernet token at all.
 */
export function checkToken(
  token: string,
  ring: KeyRing,
  context: {
    readonly directory: string;
    readonly endpoint: { readonly name: string; readonly url: string };
    readonly fernet: Pick<Config["fernet"], "auth_methods" | "default_domain_id">;
  },
): KeysCheckReport {
  const bytes = tokenBytes(token);
  if (bytes instanceof TokenError) {
    throw new CheckError(
      "not_fernet_token",
      `${context.endpoint.name} issued a token that is not a Fernet token (${bytes.message}): is Keystone's [token] provider fernet?`,
    );
  }
  // The Fernet timestamp is plaintext: bytes 1–8, big-endian.
  const issuedAt = bytes.readUInt32BE(1) * 2 ** 32 + bytes.readUInt32BE(5);
  const entry = signingEntry(bytes, ring);
  let payload: string | null = null;
  if (entry !== undefined) {
    const decoded = new TokenDecoder({
      keys: staticKeyRing(ring),
      authMethods: context.fernet.auth_methods,
      defaultDomainId: context.fernet.default_domain_id,
    }).decode(token);
    payload = decoded.status === "invalid" ? decoded.error.code : decoded.status;
  }
  const state = stateOf(entry);
  return {
    state,
    ok: state === "in_sync",
    key_repository: {
      directory: context.directory,
      primary_index: ring.primary.index,
      key_count: ring.size,
      keys: ring.entries.map(summarize),
    },
    keystone: {
      endpoint: context.endpoint.name,
      url: printableUrl(context.endpoint.url),
      token_issued_at: isoSeconds(issuedAt),
    },
    decrypted_with: entry === undefined ? null : summarize(entry),
    payload,
  };
}

function isoSeconds(seconds: number): string {
  const ms = seconds * 1000;
  return Number.isFinite(ms) && Math.abs(ms) <= 8.64e15
    ? new Date(ms).toISOString().replace(".000Z", "Z")
    : String(seconds);
}

const VERDICT: Readonly<Record<KeysCheckState, string>> = {
  in_sync: "IN SYNC",
  one_rotation_behind: "NOT IN STEP (one rotation behind)",
  ahead: "NOT IN STEP (Keystone behind this copy)",
  behind: "BEHIND",
};

const ADVICE: Readonly<Record<KeysCheckState, string>> = {
  in_sync:
    "This copy's primary key verifies what Keystone issues now. Rotate again only when every region and edge host passes.",
  one_rotation_behind:
    "Keystone signs with this copy's staged key: the copy is one rotation behind. Tokens decrypt now, but the next rotation would put this region behind. Sync it from the master before rotating again.",
  ahead:
    "Keystone signs with a key older than this copy's primary: the Keystone that answered is behind this copy (a Keystone node not synced, or two repositories rotating on their own). Compare fingerprints (keys status) with the master's before rotating again.",
  behind:
    "No key of this copy verifies what Keystone issues now: the region is behind. The edge cannot decrypt such tokens and asks Keystone for each, within its fallback budget (over it: 401). Do not rotate again: sync this copy from the master, then run keys check again.",
};

function humanReport(r: KeysCheckReport): string {
  const repo = r.key_repository;
  const key = r.decrypted_with;
  const lines = [
    `keys check: ${VERDICT[r.state]}`,
    `  key repository  ${repo.directory}: primary ${String(repo.primary_index)}, ${String(repo.key_count)} key${repo.key_count === 1 ? "" : "s"}`,
    `  Keystone        ${r.keystone.endpoint} (${r.keystone.url}), token issued ${r.keystone.token_issued_at}`,
    key === null
      ? `  decrypted with  none of the ${String(repo.key_count)} keys (${repo.keys
          .map((k) => `${String(k.index)} ${k.fingerprint}`)
          .join(", ")})`
      : `  decrypted with  key ${String(key.index)} (${key.role}, fingerprint ${key.fingerprint})`,
    ...(r.payload !== null && r.payload !== "valid"
      ? [
          `  payload         ${r.payload}: the keys match, but this edge would refuse the token as issued (clock skew? a payload version it does not know?)`,
        ]
      : []),
    "",
    wrap(ADVICE[r.state], 90),
  ];
  return lines.join("\n") + "\n";
}

function wrap(text: string, width: number): string {
  const out: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    if (line.length > 0 && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else {
      line = line.length === 0 ? word : `${line} ${word}`;
    }
  }
  if (line.length > 0) out.push(line);
  return out.join("\n");
}

function reportError(
  io: CommandIO,
  json: boolean,
  error: EdgeError,
  extra: Readonly<Record<string, unknown>> = {},
): number {
  const problems = error instanceof ConfigError ? error.problems : [];
  if (json) {
    io.stdout(
      JSON.stringify({
        state: "unknown",
        ok: false,
        error: { ...error.toJSON(), ...(problems.length > 0 ? { problems } : {}) },
        ...extra,
      }) + "\n",
    );
  }
  for (const line of problems.length > 0 ? problems : [error.message]) {
    io.stderr(`keystone-edge keys check: ${line}\n`);
  }
  if (error.code === "usage") io.stderr(`${usageLine(help)}\n`);
  return exitStatusFor(error);
}

async function runCheck(args: readonly string[], io: CommandIO): Promise<number> {
  const parsed = parseCommandArgs(
    args,
    {
      config: { type: "string", value: "the edge's configuration FILE" },
      endpoint: { type: "string", value: "the NAME of one of keystone.endpoints" },
      json: { type: "boolean" },
    },
    false,
  );
  if (parsed.kind === "help") {
    io.stdout(help);
    return ExitStatus.ok;
  }
  const json = parsed.values["json"] === true;
  const file = parsed.values["config"];
  const endpointName = parsed.values["endpoint"];
  try {
    if (typeof file !== "string" || file.length === 0) {
      throw new UsageError("--config FILE is required");
    }
    const config = loadConfig(file);
    const directory = config.fernet.key_repository;
    const ring = await readKeyRepository(directory);
    const endpoints = selectEndpoints(
      config,
      typeof endpointName === "string" ? endpointName : undefined,
    );
    const issued = await freshToken(config, endpoints);
    if (issued.kind === "failed") {
      return reportError(io, json, issued.error, {
        key_repository: { directory, primary_index: ring.primary.index, key_count: ring.size },
        keystone: { attempts: issued.attempts },
      });
    }
    const report = checkToken(issued.token, ring, {
      directory,
      endpoint: issued.endpoint,
      fernet: config.fernet,
    });
    io.stdout(json ? JSON.stringify(report) + "\n" : humanReport(report));
    return STATUS_OF[report.state];
  } catch (error) {
    if (error instanceof EdgeError) return reportError(io, json, error);
    throw error;
  }
}

export const keysCheck: Command = {
  path: ["keys", "check"],
  summary: "the rotation gate: does this region's key repository decrypt what Keystone issues now?",
  help,
  async run(args, io) {
    try {
      return await runCheck(args, io);
    } catch (error) {
      if (error instanceof EdgeError) {
        // argument errors, before --json is known
        return reportError(io, args.includes("--json"), error);
      }
      // From this command, 1 means "behind" only: an unexpected failure is "could not check".
      io.stderr(
        `keystone-edge keys check: could not check: internal error: ${
          error instanceof Error ? error.message : String(error)
        }\n`,
      );
      return ExitStatus.checkNotRun;
    }
  },
};
