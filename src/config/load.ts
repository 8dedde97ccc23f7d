/**
 * Loading the configuration: YAML + secret files + environment → a validated, frozen
 * {@link Config}, once, at start-up.
 *
 * Owns: reading the file, resolving each secret from exactly one of `<name>`,
 * `<name>_file` or `<name>_env`, validating against the schema, the cross-field rules the
 * schema cannot say, and turning every problem into a message that names the option
 * (`keystone.auth.password_file: cannot read /run/secrets/pw (ENOENT)`). Also the
 * redacted view of a config, safe to print.
 */
import { accessSync, constants, readFileSync } from "node:fs";
import { isAbsolute, resolve, dirname } from "node:path";
import { parseDocument } from "yaml";
import type { z } from "zod";
import { ConfigError } from "../errors.js";
import { configSchema, SECRET_PATHS, type Config } from "./schema.js";

type Json = Record<string, unknown>;

function isRecord(v: unknown): v is Json {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function at(root: Json, path: readonly string[]): Json | undefined {
  let node: unknown = root;
  for (const key of path) {
    if (!isRecord(node)) return undefined;
    node = node[key];
  }
  return isRecord(node) ? node : undefined;
}

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
  problems: string[],
): Set<string> {
  /** Dotted paths of secrets whose source failed: already reported, not "missing". */
  const failed = new Set<string>();
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
      const value = sources.env[env];
      if (value === undefined)
        fail(dotted, `${dotted}_env: environment variable ${env} is not set`);
      else parent[name] = value;
    }
  }
  return failed;
}

function describe(issue: z.core.$ZodIssue): string[] {
  const path = issue.path.map(String).join(".");
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => `${path ? `${path}.` : ""}${k}: unknown option`);
  }
  return [`${path || "(top level)"}: ${issue.message}`];
}

/** Rules across options that the schema cannot express. */
function crossChecks(config: Config, problems: string[]): void {
  const auth = config.keystone.auth;
  if (auth.type === "password") {
    if ((auth.username === undefined) === (auth.user_id === undefined)) {
      problems.push("keystone.auth: give exactly one of username, user_id");
    }
    if ((auth.project_name === undefined) === (auth.project_id === undefined)) {
      problems.push("keystone.auth: give exactly one of project_name, project_id");
    }
  }
  const k = config.keystone;
  if ((k.certfile === null) !== (k.keyfile === null)) {
    problems.push("keystone: certfile and keyfile go together");
  }
  for (const option of ["cafile", "certfile", "keyfile"] as const) {
    readable(`keystone.${option}`, k[option], problems);
  }
  const tls = config.tls;
  if (tls !== undefined) {
    for (const option of ["certfile", "keyfile", "client_cafile"] as const) {
      readable(`tls.${option}`, tls[option], problems);
    }
  }
}

function readable(option: string, path: string | null, problems: string[]): void {
  if (path === null) return;
  try {
    accessSync(path, constants.R_OK);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    problems.push(`${option}: cannot read ${path} (${String(code ?? error)})`);
  }
}

/**
 * Validates an already-parsed document. Relative secret file paths are taken from
 * `baseDir`.
 *
 * @throws ConfigError `invalid_config` listing every problem, each naming its option.
 */
export function validateConfig(
  document: unknown,
  options: { baseDir?: string; sources?: SecretSources; source?: string } = {},
): Readonly<Config> {
  const source = options.source ?? "configuration";
  if (!isRecord(document)) {
    throw new ConfigError("invalid_config", `${source}: expected a mapping of options`, [
      "(top level): expected a mapping of options",
    ]);
  }
  const raw = structuredClone(document);
  const problems: string[] = [];
  const failedSecrets = resolveSecrets(
    raw,
    options.baseDir ?? process.cwd(),
    options.sources ?? processSources,
    problems,
  );
  const parsed = configSchema.safeParse(raw);
  if (parsed.success) crossChecks(parsed.data, problems);
  else {
    const issues = parsed.error.issues.filter((i) => !failedSecrets.has(i.path.join(".")));
    problems.push(...issues.flatMap(describe));
  }
  if (problems.length > 0) {
    throw new ConfigError(
      "invalid_config",
      `${source}: ${problems.length === 1 ? "1 problem" : `${problems.length} problems`}: ${problems.join("; ")}`,
      problems,
    );
  }
  return deepFreeze(parsed.data as Config);
}

/**
 * Reads and validates a YAML configuration file.
 *
 * @throws ConfigError `config_unreadable` (missing file, bad YAML with its line) or
 *   `invalid_config`.
 */
export function loadConfig(
  path: string,
  sources: SecretSources = processSources,
): Readonly<Config> {
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
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (document.errors.length > 0) {
    const problems = document.errors.map((e) => e.message.split("\n")[0] ?? e.message);
    throw new ConfigError(
      "config_unreadable",
      `${path}: not valid YAML: ${problems.join("; ")}`,
      problems,
    );
  }
  return validateConfig(document.toJS(), {
    baseDir: dirname(resolve(path)),
    sources,
    source: path,
  });
}

/** The config with every secret replaced by `"<redacted>"`, safe to print or log. */
export function redactConfig(config: Readonly<Config>): unknown {
  const copy = structuredClone(config) as unknown as Json;
  for (const path of SECRET_PATHS) {
    const parent = at(copy, path.slice(0, -1));
    const name = path[path.length - 1] as string;
    if (parent && parent[name] !== undefined) parent[name] = "<redacted>";
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
