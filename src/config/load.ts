/**
 * Loading the configuration: YAML + secret files + environment → a validated, frozen
 * {@link Config}, once, at start-up.
 *
 * Owns: reading the file, resolving each secret from exactly one of `<name>`,
 * `<name>_file` or `<name>_env`, validating against the schema, the cross-field rules the
 * schema cannot say, and turning every problem into a message that names the option and
 * its cause (`keystone.auth.password_file: cannot read /run/secrets/pw (ENOENT)`,
 * `upstream: required`, `upstrem: unknown option (did you mean upstream?)`,
 * `config.yaml:2:12: …` with the line and a caret) — every problem of a file in one pass.
 * Also the offline check (nothing read but the file), and the redacted view of a config,
 * safe to print.
 *
 * Size: the messages need the loader's state (the document as given, the secrets not
 * read), so they are made here rather than in a module of their own.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { isAbsolute, resolve, dirname } from "node:path";
import { LineCounter, parseDocument, type YAMLError } from "yaml";
import type { z } from "zod";
import { editDistance } from "../edit-distance.js";
import { ConfigError } from "../errors.js";
import { configSchema, SECRET_PATHS, type Config } from "./schema.js";

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function at(root: Json, path: readonly string[]): Json | undefined {
  const node = valueAt(root, path);
  return isRecord(node) ? node : undefined;
}

/** The value at `path` (object keys and array indexes); undefined when any step is missing. */
function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (Array.isArray(node) && typeof key === "number") node = node[key];
    else if (isRecord(node) && typeof key === "string") node = node[key];
    else return undefined;
  }
  return node;
}

/**
 * What an unread secret holds in a configuration validated with `offline: true`: it passes
 * every check a real secret of the file would (at least 16 characters), and
 * {@link redactConfig} shows it as it is.
 */
export const OFFLINE_PLACEHOLDER = "<not read: offline>";

/** Configs validated offline → the dotted paths of their secrets that were not read. */
const unreadSecrets = new WeakMap<object, ReadonlySet<string>>();

/** Where to read secrets from; injectable for tests. */
export interface SecretSources {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly readFile: (path: string) => string;
}

const processSources: SecretSources = {
  env: process.env,
  readFile: (path) => readFileSync(path, "utf8"),
};

/**
 * Replaces `<name>_file` / `<name>_env` with `<name>` in place. A file's trailing newline is
 * dropped (what `echo secret > file` and Kubernetes Secrets leave).
 */
function resolveSecrets(
  raw: Json,
  baseDir: string,
  sources: SecretSources,
  offline: boolean,
  problems: string[],
): { failed: Set<string>; unread: Set<string> } {
  /** Dotted paths of secrets whose source failed: already reported, not "missing". */
  const failed = new Set<string>();
  /** Offline: dotted paths of secrets given as a file or a variable, not read. */
  const unread = new Set<string>();
  const fail = (dotted: string, problem: string): void => {
    failed.add(dotted);
    problems.push(problem);
  };
  for (const path of SECRET_PATHS) {
    const parent = at(raw, path.slice(0, -1));
    if (!parent) continue;
    const name = path[path.length - 1] as string;
    const dotted = path.join(".");
    const given = [name, `${name}_file`, `${name}_env`].filter((k) => parent[k] !== undefined);
    const file = parent[`${name}_file`];
    const env = parent[`${name}_env`];
    Reflect.deleteProperty(parent, `${name}_file`);
    Reflect.deleteProperty(parent, `${name}_env`);
    if (given.length > 1) {
      fail(dotted, `${dotted}: give only one of ${given.join(", ")}`);
    } else if (file !== undefined) {
      if (typeof file !== "string" || file.length === 0) {
        fail(dotted, `${dotted}_file: expected a file path`);
        continue;
      }
      if (offline) {
        parent[name] = OFFLINE_PLACEHOLDER;
        unread.add(dotted);
        continue;
      }
      const full = isAbsolute(file) ? file : resolve(baseDir, file);
      try {
        parent[name] = sources.readFile(full).replace(/\r?\n$/, "");
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        fail(dotted, `${dotted}_file: cannot read ${full} (${String(code ?? error)})`);
      }
    } else if (env !== undefined) {
      if (typeof env !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(env)) {
        fail(dotted, `${dotted}_env: expected an environment variable name`);
        continue;
      }
      if (offline) {
        parent[name] = OFFLINE_PLACEHOLDER;
        unread.add(dotted);
        continue;
      }
      const value = sources.env[env];
      if (value === undefined)
        fail(dotted, `${dotted}_env: environment variable ${env} is not set`);
      else parent[name] = value;
    }
  }
  return { failed, unread };
}

// ---------------------------------------------------------------------------------------
// Messages

type Schema = z.core.$ZodType;

/** A schema without its optional/default/nullable/readonly wrappers and transforms. */
function bare(schema: Schema): Schema {
  let s = schema;
  for (;;) {
    const def = s._zod.def;
    if (
      def.type === "optional" ||
      def.type === "default" ||
      def.type === "prefault" ||
      def.type === "nullable" ||
      def.type === "readonly"
    ) {
      s = (def as unknown as { innerType: Schema }).innerType;
    } else if (def.type === "pipe") {
      s = (def as unknown as { in: Schema }).in;
    } else return s;
  }
}

/**
 * The alternatives `schema` may be: a union's options (a discriminated union's matching
 * variant only, when `given` names one), else itself; each bare.
 */
function alternatives(schema: Schema, given: unknown): Schema[] {
  const s = bare(schema);
  if (s._zod.def.type !== "union") return [s];
  const def = (s as z.core.$ZodUnion)._zod.def as z.core.$ZodUnionDef & { discriminator?: string };
  let options = def.options.map(bare);
  const key = def.discriminator;
  if (key !== undefined && isRecord(given)) {
    const chosen = options.filter((o) => {
      const d = isObjectSchema(o) ? o._zod.def.shape[key] : undefined;
      const literal = d === undefined ? undefined : bare(d);
      return (
        literal?._zod.def.type === "literal" &&
        (literal as z.core.$ZodLiteral)._zod.def.values.includes(given[key] as never)
      );
    });
    if (chosen.length > 0) options = chosen;
  }
  return options.flatMap((o) => alternatives(o, given));
}

function isObjectSchema(schema: Schema): schema is z.core.$ZodObject {
  return schema._zod.def.type === "object";
}

/**
 * The option names the schema knows under `path` of `document` (a secret's `<name>_file`
 * and `<name>_env` included); empty where there is no object.
 */
function knownKeys(document: unknown, path: readonly PropertyKey[]): string[] {
  let schemas: Schema[] = [configSchema];
  for (let i = 0; i < path.length; i++) {
    const key = path[i];
    const given = valueAt(document, path.slice(0, i));
    schemas = schemas
      .flatMap((s) => alternatives(s, given))
      .flatMap((s): Schema[] => {
        if (isObjectSchema(s) && typeof key === "string") {
          const child = s._zod.def.shape[key];
          return child === undefined ? [] : [child];
        }
        if (s._zod.def.type === "array" && typeof key === "number") {
          return [(s as z.core.$ZodArray)._zod.def.element];
        }
        return [];
      });
  }
  const given = valueAt(document, path);
  const keys = schemas
    .flatMap((s) => alternatives(s, given))
    .filter(isObjectSchema)
    .flatMap((s) => Object.keys(s._zod.def.shape));
  const dotted = path.map(String).join(".");
  for (const secret of SECRET_PATHS) {
    const name = secret[secret.length - 1] as string;
    if (secret.slice(0, -1).join(".") === dotted && keys.includes(name)) {
      keys.push(`${name}_file`, `${name}_env`);
    }
  }
  return [...new Set(keys)];
}

/** Every option of the schema as a dotted path (lists' elements left out). */
function allOptions(schema: Schema = configSchema, prefix = ""): string[] {
  return alternatives(schema, undefined)
    .filter(isObjectSchema)
    .flatMap((s) =>
      Object.entries(s._zod.def.shape).flatMap(([key, child]) => [
        `${prefix}${key}`,
        ...allOptions(child, `${prefix}${key}.`),
      ]),
    );
}

/**
 * The known option an unknown `name` most likely meant: the sibling nearest in edit
 * distance (at most a third of its length, at least 1), else the one sibling that is
 * `name` plus a suffix (`timeout` → `timeout_ms`), else the same name elsewhere in the
 * schema (`memcached_servers` at the top → `cache.memcached_servers`).
 */
export function suggestOption(
  name: string,
  siblings: readonly string[],
  everywhere: readonly string[] = [],
): string | undefined {
  const lower = name.toLowerCase();
  let best: string | undefined;
  let bestDistance = Math.max(1, Math.floor(name.length / 3)) + 1;
  for (const candidate of siblings) {
    const d = editDistance(lower, candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  if (best !== undefined) return best;
  const extended = siblings.filter((c) => c.toLowerCase().startsWith(`${lower}_`));
  if (extended.length === 1) return extended[0];
  const elsewhere = everywhere.filter((p) => p.split(".").pop() === lower);
  return elsewhere.length === 1 ? elsewhere[0] : undefined;
}

function describe(issue: z.core.$ZodIssue, document: Json): string[] {
  const path = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    const siblings = knownKeys(document, issue.path);
    return issue.keys.map((k) => {
      const suggestion = suggestOption(k, siblings, allOptions());
      const hint = suggestion === undefined ? "" : ` (did you mean ${suggestion}?)`;
      return `${path ? `${path}.` : ""}${k}: unknown option${hint}`;
    });
  }
  const missing =
    (issue.code === "invalid_type" || issue.code === "invalid_union") &&
    issue.path.length > 0 &&
    valueAt(document, issue.path) === undefined &&
    valueAt(document, issue.path.slice(0, -1)) !== undefined;
  if (missing) return [`${path}: ${required(issue)}`];
  return [`${path || "(top level)"}: ${issue.message}`];
}

/** "required", with the ways to give it when there are several. */
function required(issue: z.core.$ZodIssue): string {
  const name = String(issue.path[issue.path.length - 1]);
  const dotted = issue.path.map(String).join(".");
  if (SECRET_PATHS.some((p) => p.join(".") === dotted)) {
    return `required (give ${name}, ${name}_file or ${name}_env)`;
  }
  if (issue.code === "invalid_union" && "options" in issue && Array.isArray(issue.options)) {
    return `required (${issue.options.map(String).join(" or ")})`;
  }
  return "required";
}

// ---------------------------------------------------------------------------------------
// Validation

/**
 * Rules across options that the schema cannot express. They read the document as given
 * (secrets resolved), not the parsed config, so they are reported together with the
 * schema's problems; each rule looks only at options of the type it expects (a wrong type
 * is the schema's to report).
 */
function crossChecks(raw: Json, offline: boolean, problems: string[]): void {
  const k = at(raw, ["keystone"]);
  if (k === undefined) return;
  const auth = at(k, ["auth"]);
  if (auth !== undefined && auth["type"] === "password") {
    if ((auth["username"] === undefined) === (auth["user_id"] === undefined)) {
      problems.push("keystone.auth: give exactly one of username, user_id");
    }
    if ((auth["project_name"] === undefined) === (auth["project_id"] === undefined)) {
      problems.push("keystone.auth: give exactly one of project_name, project_id");
    }
  }
  if (((k["certfile"] ?? null) === null) !== ((k["keyfile"] ?? null) === null)) {
    problems.push("keystone: certfile and keyfile go together");
  }
  if (offline) return; // no file but the configuration is read
  for (const option of ["cafile", "certfile", "keyfile"] as const) {
    readable(`keystone.${option}`, k[option], problems);
  }
  const tls = at(raw, ["tls"]);
  if (tls !== undefined) {
    for (const option of ["certfile", "keyfile", "client_cafile"] as const) {
      readable(`tls.${option}`, tls[option], problems);
    }
  }
}

function readable(option: string, path: unknown, problems: string[]): void {
  if (typeof path !== "string" || path.length === 0) return;
  try {
    accessSync(path, constants.R_OK);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    problems.push(`${option}: cannot read ${path} (${String(code ?? error)})`);
  }
}

/** Options of {@link validateConfig}. */
export interface ValidateOptions {
  /** Relative `<name>_file` paths are taken from here. Default: the working directory. */
  readonly baseDir?: string;
  /** Where secrets are read from. Default: the process's files and environment. */
  readonly sources?: SecretSources;
  /** Names the configuration in the error's message. Default `"configuration"`. */
  readonly source?: string;
  /**
   * Check the document alone, reading nothing else (a build host, CI, a laptop): a secret
   * given as `<name>_file` or `<name>_env` counts as given (still exactly one of the three)
   * but is not read, and holds {@link OFFLINE_PLACEHOLDER}; TLS and CA files are not
   * checked. Such a config is for display, never to serve with. Default `false`.
   */
  readonly offline?: boolean;
}

/**
 * Validates an already-parsed document. Relative secret file paths are taken from
 * `baseDir`.
 *
 * @throws ConfigError `invalid_config` listing every problem, each naming its option.
 */
export function validateConfig(document: unknown, options: ValidateOptions = {}): Readonly<Config> {
  const source = options.source ?? "configuration";
  const offline = options.offline ?? false;
  if (!isRecord(document)) {
    throw new ConfigError("invalid_config", `${source}: expected a mapping of options`, [
      "(top level): expected a mapping of options",
    ]);
  }
  const raw = structuredClone(document);
  const problems: string[] = [];
  const secrets = resolveSecrets(
    raw,
    options.baseDir ?? process.cwd(),
    options.sources ?? processSources,
    offline,
    problems,
  );
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.filter((i) => !secrets.failed.has(i.path.join(".")));
    problems.push(...issues.flatMap((i) => describe(i, raw)));
  }
  crossChecks(raw, offline, problems);
  if (problems.length > 0 || !parsed.success) {
    throw new ConfigError(
      "invalid_config",
      `${source}: ${problems.length === 1 ? "1 problem" : `${problems.length} problems`}: ${problems.join("; ")}`,
      problems,
    );
  }
  const config = deepFreeze(parsed.data);
  if (secrets.unread.size > 0) unreadSecrets.set(config, secrets.unread);
  return config;
}

// ---------------------------------------------------------------------------------------
// The file

/** Options of {@link loadConfig}. */
export interface LoadOptions {
  /** Where secrets are read from. Default: the process's files and environment. */
  readonly sources?: SecretSources;
  /** See {@link ValidateOptions.offline}. Default `false`. */
  readonly offline?: boolean;
}

/**
 * Reads and validates a YAML configuration file. Relative secret file paths are taken
 * from the file's directory.
 *
 * @throws ConfigError `config_unreadable` (missing file, bad YAML: each error as
 *   `FILE:LINE:COLUMN: message` followed by the line and a caret) or `invalid_config`.
 */
export function loadConfig(path: string, options: LoadOptions = {}): Readonly<Config> {
  const { sources, offline } = options;
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new ConfigError(
      "config_unreadable",
      `${path}: cannot read (${String(code ?? error)})`,
      [],
    );
  }
  const lineCounter = new LineCounter();
  const document = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (document.errors.length > 0) {
    const problems = document.errors.map((e) => yamlProblem(path, text, lineCounter, e));
    throw new ConfigError(
      "config_unreadable",
      `${path}: not valid YAML:\n${problems.join("\n")}`,
      problems,
    );
  }
  return validateConfig(document.toJS(), {
    baseDir: dirname(resolve(path)),
    ...(sources === undefined ? {} : { sources }),
    ...(offline === undefined ? {} : { offline }),
    source: path,
  });
}

/** Option names whose values are secrets: never echoed from a line of the file. */
const SECRET_NAMES = new Set(SECRET_PATHS.map((p) => p[p.length - 1] as string));

/** A line that sets an option: its text up to the colon, and the option's name. */
const KEY_LINE = /^(\s*(?:-\s+)?["']?([A-Za-z0-9_]+)["']?\s*:)/;

const indentOf = (line: string): number => /^\s*/.exec(line)?.[0].length ?? 0;

/**
 * Line `index` (from 0) of `all` as an error may show it: a line that sets a secret shows
 * `<redacted>` for its value, and a line that continues a secret's value (a multi-line
 * scalar) shows nothing of it.
 */
function shownLine(all: readonly string[], index: number): string {
  const line = all[index] ?? "";
  const key = KEY_LINE.exec(line);
  if (key?.[1] !== undefined && key[2] !== undefined) {
    return SECRET_NAMES.has(key[2]) ? `${key[1]} <redacted>` : line;
  }
  // Not an option: the option it continues is the nearest line above indented less.
  const indent = indentOf(line);
  for (let i = index - 1; i >= 0; i--) {
    const above = all[i] ?? "";
    if (above.trim() === "" || indentOf(above) >= indent) continue;
    const owner = KEY_LINE.exec(above)?.[2];
    return owner !== undefined && SECRET_NAMES.has(owner)
      ? `${line.slice(0, indent)}<redacted>`
      : line;
  }
  return line;
}

/**
 * `FILE:LINE:COLUMN: message`, then the line (numbered; the one before too when the
 * column is at the start of the line, as where the parser noticed a problem is often just
 * past it) and a caret under the column. A secret's value is never shown (`<redacted>`):
 * a quoting mistake in a password must not print the password.
 */
function yamlProblem(file: string, text: string, lines: LineCounter, error: YAMLError): string {
  const message = error.message.split("\n")[0] ?? error.message;
  const offset = error.pos[0];
  if (offset < 0) return `${file}: ${message}`;
  const { line, col } = lines.linePos(offset);
  const all = text.split(/\r?\n/);
  const source = shownLine(all, line - 1);
  // In a redacted line, the caret points at the value it hides.
  const caret = source === all[line - 1] ? col - 1 : source.indexOf("<redacted>");
  const width = String(line).length;
  const numbered = (n: number, content: string): string =>
    `  ${String(n).padStart(width)} | ${content}`.trimEnd();
  const before = source.slice(0, Math.min(caret, source.length));
  const shown = [numbered(line, source)];
  if (line > 1 && before.trim() === "") shown.unshift(numbered(line - 1, shownLine(all, line - 2)));
  return [
    `${file}:${line}:${col}: ${message}`,
    ...shown,
    `  ${" ".repeat(width)} | ${before.replace(/[^\t]/g, " ")}^`,
  ].join("\n");
}

// ---------------------------------------------------------------------------------------
// Showing a config

/**
 * The config with every secret replaced by `"<redacted>"`, safe to print or log; a secret
 * not read (validated offline) shows {@link OFFLINE_PLACEHOLDER}.
 */
export function redactConfig(config: Readonly<Config>): unknown {
  const unread = unreadSecrets.get(config) ?? new Set<string>();
  const copy = structuredClone(config) as unknown as Json;
  for (const path of SECRET_PATHS) {
    const parent = at(copy, path.slice(0, -1));
    const name = path[path.length - 1] as string;
    if (parent && parent[name] !== undefined) {
      parent[name] = unread.has(path.join(".")) ? OFFLINE_PLACEHOLDER : "<redacted>";
    }
  }
  return copy;
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
