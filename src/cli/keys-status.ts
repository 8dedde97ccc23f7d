/**
 * `keystone-edge keys status`: print a key repository's status.
 *
 * Owns: the one-shot read an operator or a config-management check runs to see which keys
 * the edge would load: count, primary index, each key's role, fingerprint and age — only
 * what one read knows (no reload counters, no watching: those are the daemon's, in its
 * `/status`); and, with `--admin`, what the running edge itself reports of its keys — the
 * ring it holds and whether it knows its keys to be behind what Keystone issues now (the
 * key-lag state of its `/status`), read defensively so that an edge without that field
 * still answers. A readable summary by default, one JSON object with `--json`.
 */
import { request } from "undici";
import { CheckError, EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { KeyRepository, type KeyRepositoryStatus } from "../fernet/key-repository.js";
import { ADMIN_URL_EXAMPLE, parseAdminUrl } from "./admin-url.js";
import { errorLines, parseCommandArgs, type Command } from "./command.js";

const help = `Usage: keystone-edge keys status --key-repository DIR [--admin URL] [--json]

Reads a Keystone key repository as keystone-edge would and prints its directory, primary
index, key count, and for each key its index, role (primary, secondary, staged),
fingerprint (a short SHA-256 of the key, safe to compare between hosts to check that
keys are in sync) and age (from the file's mtime).

With --admin, adds what the running edge reports on its admin listener's /status: its
status, the ring it holds (primary index, key count, healthy) and its key lag: whether it
knows its keys to be behind what Keystone issues now (in_sync, behind or unknown), since
when, when a fresh token last decrypted, and its last check. The edge's in_sync means
some key decrypts; to gate a rotation (the primary must), use keys check.

--json prints one JSON object instead: directory, primary_index, key_count, keys
[{index, role, fingerprint, age_seconds}], and with --admin "edge": {"admin", "status",
"keys": {"primary_index", "key_count", "healthy"}, "lag": {"state", "since",
"last_agreed", "last_check": {"at", "trigger", "result"}} or null from an edge that does
not report it} ({"admin", "error"} when /status could not be read); on a problem,
{"error": {"code", "message"}}.

Options:
  --key-repository DIR  Keystone's [fernet_tokens] key_repository (required)
  --admin URL           the running edge's admin listener (admin_listen), e.g.
                        ${ADMIN_URL_EXAMPLE} (no secret needed)
  --json                print one JSON object (for machines)
  -h, --help            show this help

Exit status: 0 the repository loads (and the edge answered); 2 it is missing, empty or
holds an invalid key file (the message names the file); 6 --admin given and the edge's
/status could not be read.
`;

/** Deadline of the `/status` read, ms. */
const ADMIN_TIMEOUT_MS = 5_000;
/** Largest `/status` answer read, bytes: an edge's is a few kilobytes. */
const MAX_STATUS_BYTES = 1_048_576;

type Scalar = string | number | boolean | null;
/** A field of the edge's lag report: a scalar, or an object of scalars (`last_check`). */
type LagField = Scalar | Readonly<Record<string, Scalar>>;

/**
 * The edge's key-lag state as its `/status` reports it (`keys.lag`, admin/status.ts):
 * whether its ring decrypts what Keystone issues now — any key, the staged one included;
 * `keys check` is stricter and wants the primary.
 */
export interface EdgeKeyLag {
  /** `in_sync`, `behind` or `unknown` (anything else is passed on as the edge said it). */
  readonly state: string;
  /** Since when the state holds (ISO 8601); null while unknown. */
  readonly since: string | null;
  /** When a fresh Keystone token last decrypted locally (ISO 8601); null: never. */
  readonly last_agreed: string | null;
  /** The edge's last check: `at`, `trigger`, `result`, `error`; null before the first. */
  readonly last_check: Readonly<Record<string, Scalar>> | null;
  /** Any other field the edge reports there (scalars, objects of scalars), as is. */
  readonly [field: string]: LagField;
}

/** What `--admin` adds to the output. Snake case: it leaves the process. */
export interface EdgeKeysView {
  readonly admin: string;
  /** The edge's overall status (`ok`, `degraded`, `draining`), null when absent. */
  readonly status: string | null;
  /** The ring the edge holds, as it reports it; null when absent. */
  readonly keys: {
    readonly primary_index: number | null;
    readonly key_count: number | null;
    readonly healthy: boolean | null;
  } | null;
  /** Null: the edge does not report key lag (a version before it did). */
  readonly lag: EdgeKeyLag | null;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function stringOrNull(v: unknown): string | null {
  return typeof v === "string" ? v : null;
}

function numberOrNull(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function isScalar(v: unknown): v is Scalar {
  return v === null || ["string", "number", "boolean"].includes(typeof v);
}

/** The scalar fields of `v`, or null when it is not an object. */
function scalarsOf(v: unknown): Record<string, Scalar> | null {
  if (!isRecord(v)) return null;
  const out: Record<string, Scalar> = {};
  for (const [field, value] of Object.entries(v)) if (isScalar(value)) out[field] = value;
  return out;
}

/** Reads `keys.lag` from a `/status` document, tolerating its absence and odd fields. */
export function lagOf(keys: unknown): EdgeKeyLag | null {
  if (!isRecord(keys) || !isRecord(keys["lag"])) return null;
  const lag = keys["lag"];
  const extra: Record<string, LagField> = {};
  for (const [field, value] of Object.entries(lag)) {
    if (isScalar(value)) extra[field] = value;
    else if (isRecord(value)) extra[field] = scalarsOf(value) ?? {};
  }
  return {
    ...extra,
    state: stringOrNull(lag["state"]) ?? "unknown",
    since: stringOrNull(lag["since"]),
    last_agreed: stringOrNull(lag["last_agreed"]),
    last_check: scalarsOf(lag["last_check"]),
  };
}

/** Turns a `/status` document into what `--admin` prints. */
export function edgeKeysView(admin: string, status: unknown): EdgeKeysView {
  if (!isRecord(status)) {
    throw new CheckError("admin_bad_answer", `${admin}/status: not a JSON object`);
  }
  const keys = status["keys"];
  return {
    admin,
    status: stringOrNull(status["status"]),
    keys: isRecord(keys)
      ? {
          primary_index: numberOrNull(keys["primary_index"]),
          key_count: numberOrNull(keys["count"] ?? keys["key_count"]),
          healthy: typeof keys["healthy"] === "boolean" ? keys["healthy"] : null,
        }
      : null,
    lag: lagOf(keys),
  };
}

/**
 * Reads the running edge's `/status` (unauthenticated, read-only).
 *
 * @throws CheckError `admin_unreachable` (no answer within 5 s) or `admin_bad_answer`
 *   (not 200, not JSON, too large).
 */
export async function readEdgeKeys(admin: string): Promise<EdgeKeysView> {
  const base = parseAdminUrl(admin);
  let response;
  try {
    response = await request(`${base}/status`, {
      method: "GET",
      headers: { accept: "application/json" },
      signal: AbortSignal.timeout(ADMIN_TIMEOUT_MS),
    });
  } catch (error) {
    throw new CheckError(
      "admin_unreachable",
      `cannot reach the edge's admin listener at ${base}: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
  }
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of response.body) {
      chunks.push(chunk as Buffer);
      total += (chunk as Buffer).length;
      if (total > MAX_STATUS_BYTES) {
        response.body.destroy();
        throw new CheckError("admin_bad_answer", `${base}/status: answer too large`);
      }
    }
  } catch (error) {
    if (error instanceof CheckError) throw error;
    throw new CheckError(
      "admin_unreachable",
      `${base}/status: the answer was cut off (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  if (response.statusCode !== 200) {
    throw new CheckError(
      "admin_bad_answer",
      `${base}/status: HTTP ${String(response.statusCode)}: is this a keystone-edge admin listener?`,
    );
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch {
    throw new CheckError(
      "admin_bad_answer",
      `${base}/status: not JSON: is this a keystone-edge admin listener?`,
    );
  }
  return edgeKeysView(base, body);
}

/** What one read of a repository knows: the repository's fields of {@link KeyRepositoryStatus}. */
export type RepositoryView = Pick<
  KeyRepositoryStatus,
  "directory" | "primary_index" | "key_count" | "keys"
>;

function repositoryView(status: KeyRepositoryStatus): RepositoryView {
  const { directory, primary_index, key_count, keys } = status;
  return { directory, primary_index, key_count, keys };
}

/**
 * An age to compare at a glance: its largest unit and the next one when not zero — `59s`,
 * `2m 5s`, `1d 1h` (90061 s), `3d` (259205 s: the seconds are dropped).
 */
export function formatAge(seconds: number): string {
  const units = [
    ["d", 86_400],
    ["h", 3_600],
    ["m", 60],
    ["s", 1],
  ] as const;
  const total = Math.max(0, Math.round(seconds));
  const first = units.findIndex(([, size]) => total >= size);
  if (first === -1) return "0s";
  const [unit, size] = units[first] ?? ["s", 1];
  const text = `${String(Math.floor(total / size))}${unit}`;
  const next = units[first + 1];
  if (next === undefined) return text;
  const more = Math.floor((total % size) / next[1]);
  return more === 0 ? text : `${text} ${String(more)}${next[0]}`;
}

/** Rows of cells, each column padded to its widest cell. */
function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join("  ")
      .trimEnd(),
  );
}

/** The repository, to read. */
function repositoryText(view: RepositoryView): string {
  const count = `${String(view.key_count)} key${view.key_count === 1 ? "" : "s"}`;
  const rows = table([
    ["index", "role", "fingerprint", "age"],
    ...view.keys.map((k) => [String(k.index), k.role, k.fingerprint, formatAge(k.age_seconds)]),
  ]);
  return [
    `key repository ${view.directory}: primary ${String(view.primary_index)}, ${count}`,
    ...rows.map((r) => `  ${r}`),
  ].join("\n");
}

/** A lag field's value as text. */
function scalarText(value: Scalar | undefined): string {
  return value === null || value === undefined ? "-" : String(value);
}

/** What the running edge says, to read. */
function edgeText(edge: EdgeKeysView): string {
  const keys = edge.keys;
  const ring =
    keys === null
      ? "not reported"
      : [
          `primary ${scalarText(keys.primary_index)}`,
          `${scalarText(keys.key_count)} keys`,
          keys.healthy === null ? "health not reported" : keys.healthy ? "healthy" : "NOT healthy",
        ].join(", ");
  const lag = edge.lag;
  const check = lag?.last_check ?? null;
  const lines = table([
    ["ring", ring],
    [
      "key lag",
      lag === null
        ? "not reported (an edge version before it did)"
        : `${lag.state}${lag.since === null ? "" : ` since ${lag.since}`}`,
    ],
    ...(lag === null
      ? []
      : [
          ["last agreed", lag.last_agreed ?? "never"],
          [
            "last check",
            check === null
              ? "none yet"
              : `${scalarText(check["at"])} (${scalarText(check["trigger"])}): ${scalarText(check["result"])}`,
          ],
        ]),
  ]);
  return [
    `edge at ${edge.admin}: ${edge.status ?? "status not reported"}`,
    ...lines.map((l) => `  ${l}`),
  ].join("\n");
}

export const keysStatus: Command = {
  path: ["keys", "status"],
  summary: "print a key repository's status: keys, primary, fingerprints, ages",
  help,
  async run(args, io) {
    // Known before the arguments are read, so that even a usage error prints as asked.
    const json = args.includes("--json");
    try {
      const parsed = parseCommandArgs(
        args,
        {
          "key-repository": { type: "string", value: "a DIR: Keystone's key repository" },
          admin: { type: "string", value: `a URL such as ${ADMIN_URL_EXAMPLE}` },
          json: { type: "boolean" },
        },
        false,
      );
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      const directory = parsed.values["key-repository"];
      if (typeof directory !== "string" || directory.length === 0) {
        throw new UsageError("--key-repository DIR is required");
      }
      const admin = parsed.values["admin"];
      if (admin !== undefined && typeof admin !== "string") {
        throw new UsageError("--admin takes a URL");
      }
      if (admin !== undefined) parseAdminUrl(admin); // a bad URL is a usage error before any read
      const repository = await KeyRepository.open({ directory, watch: false, pollIntervalMs: 0 });
      repository.close();
      const view = repositoryView(repository.status());
      if (admin === undefined) {
        io.stdout(json ? JSON.stringify(view, null, 2) + "\n" : repositoryText(view) + "\n");
        return ExitStatus.ok;
      }
      try {
        const edge = await readEdgeKeys(admin);
        io.stdout(
          json
            ? JSON.stringify({ ...view, edge }, null, 2) + "\n"
            : `${repositoryText(view)}\n\n${edgeText(edge)}\n`,
        );
        if (edge.lag === null && json) {
          io.stderr(
            `keystone-edge keys status: the edge at ${edge.admin} does not report key lag (a version before it did)\n`,
          );
        }
        return ExitStatus.ok;
      } catch (error) {
        if (!(error instanceof CheckError)) throw error;
        // The repository was read: print it, with why the edge's view is missing.
        const base = parseAdminUrl(admin);
        io.stdout(
          json
            ? JSON.stringify({ ...view, edge: { admin: base, error: error.toJSON() } }, null, 2) +
                "\n"
            : `${repositoryText(view)}\n\nedge at ${base}: could not read /status (below)\n`,
        );
        io.stderr(errorLines(keysStatus.path, error, help));
        return exitStatusFor(error);
      }
    } catch (error) {
      if (error instanceof EdgeError) {
        if (json) io.stdout(JSON.stringify({ error: error.toJSON() }) + "\n");
        io.stderr(errorLines(keysStatus.path, error, help));
        return exitStatusFor(error);
      }
      throw error;
    }
  },
};
