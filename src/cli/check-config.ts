/**
 * `keystone-edge check-config FILE`: validate a configuration without starting anything.
 *
 * Owns: the operator's pre-flight — the YAML, every option's type and range, secrets from
 * files and the environment, readable TLS files, the listeners' certificate and key (they
 * go together, the certificate has not ended), and (unless `--skip-keys`) a loadable key
 * repository; with `--offline`, the file alone (nothing it points to is read). Reported
 * as a readable summary and the effective configuration on stdout (`--json`: one JSON
 * object), and one line per problem on stderr.
 */
import { Document, isScalar } from "yaml";
import { derivedDefaults } from "../config/derived.js";
import { loadConfig, redactConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { ConfigError, EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { readKeyRepository } from "../fernet/key-repository.js";
import { insecureEndpoints, insecureEndpointWarning } from "../config/warnings.js";
import { loadListenerTls } from "../proxy/tls.js";
import { parseCommandArgs, type Command } from "./command.js";

const help = `Usage: keystone-edge check-config FILE [--offline | --skip-keys] [--json]

Validates a keystone-edge configuration file as start-up would, without starting
anything or calling Keystone: YAML syntax, unknown options, types and ranges, the rules
between options, secrets given as <name>, <name>_file or <name>_env (exactly one),
readable cafile/certfile/keyfile, with tls: a served certificate that parses, has not
ended and goes with its key, and a client CA bundle that parses; and that
fernet.key_repository loads. Every problem of the file is reported at once.

Prints "configuration OK: FILE", the key repository loaded, the TLS certificate served,
warnings (valid but unsafe: a plain-HTTP or unverified Keystone endpoint, a served
certificate ending within 14 days), then the effective configuration as YAML: every
default filled in, every secret shown as <redacted>. A problem is printed on stderr,
one per line, naming the option and its cause (a YAML error as FILE:LINE:COLUMN, with
the line and a caret under the column).

With --json, stdout is one JSON object instead: {"ok": true, "config": {…secrets
redacted…}, "key_repository": {"primary_index": …, "key_count": …}, "tls": {"subject",
"not_after", "client_certificates"} (with tls), "warnings": […]} or {"error": {"code",
"message", "problems": […]}}; problems and warnings are also on stderr, one per line.

Options:
  --offline    check the file alone, e.g. on a build host or in CI: read no secret file
               or variable (one given counts as given; shown as "<not read: offline>"),
               no TLS or CA file, not the key repository (implies --skip-keys)
  --skip-keys  do not load fernet.key_repository (everything else is checked)
  --json       print one JSON object on stdout instead of the summary
  -h, --help   show this help

Exit status: 0 valid (warnings included); 2 invalid, or the key repository does not
load.
`;

/** What a successful check found, beyond the configuration itself. */
interface Checked {
  readonly file: string;
  readonly config: Readonly<Config>;
  readonly keyRepository:
    | { readonly primary_index: number; readonly key_count: number }
    | { readonly skipped: "--offline" | "--skip-keys" };
  readonly tls:
    | { readonly subject: string; readonly not_after: string; readonly client_certificates: string }
    | undefined;
  readonly offline: boolean;
  readonly warnings: readonly string[];
}

export const checkConfig: Command = {
  path: ["check-config"],
  summary: "validate a configuration file without starting",
  help,
  async run(args, io) {
    let json = false;
    try {
      const parsed = parseCommandArgs(
        args,
        {
          "skip-keys": { type: "boolean" },
          offline: { type: "boolean" },
          json: { type: "boolean" },
        },
        true,
      );
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      json = parsed.values["json"] === true;
      const offline = parsed.values["offline"] === true;
      const [file, ...rest] = parsed.positionals;
      if (file === undefined || rest.length > 0) throw new UsageError("give exactly one FILE");
      const config = loadConfig(file, { offline });
      let keyRepository: Checked["keyRepository"];
      if (offline) keyRepository = { skipped: "--offline" };
      else if (parsed.values["skip-keys"] === true) keyRepository = { skipped: "--skip-keys" };
      else {
        const ring = await readKeyRepository(config.fernet.key_repository);
        keyRepository = { primary_index: ring.primary.index, key_count: ring.size };
      }
      const warnings = insecureEndpoints(config).map(insecureEndpointWarning);
      // Offline, the certificate and key are not read: they are files on the edge's host.
      const loaded = config.tls === undefined || offline ? undefined : loadListenerTls(config.tls);
      if (loaded !== undefined) warnings.push(...loaded.warnings.map((w) => `tls: ${w}`));
      const tls =
        loaded === undefined
          ? undefined
          : {
              subject: loaded.certificate.subject,
              not_after: new Date(loaded.certificate.notAfterMs).toISOString(),
              client_certificates: loaded.clientCertificates,
            };
      const checked: Checked = { file, config, keyRepository, tls, offline, warnings };
      if (json) {
        io.stdout(JSON.stringify(asJson(checked)) + "\n");
        for (const w of warnings) io.stderr(`keystone-edge check-config: warning: ${w}\n`);
      } else {
        io.stdout(report(checked));
      }
      return ExitStatus.ok;
    } catch (error) {
      if (error instanceof EdgeError) {
        const problems = error instanceof ConfigError ? error.problems : [error.message];
        if (json) io.stdout(JSON.stringify({ error: { ...error.toJSON(), problems } }) + "\n");
        for (const p of problems.length > 0 ? problems : [error.message]) {
          io.stderr(`keystone-edge check-config: ${p}\n`);
        }
        return exitStatusFor(error);
      }
      throw error;
    }
  },
};

/** The `--json` object: the shape scripts have read since the first release. */
function asJson(checked: Checked): Record<string, unknown> {
  const { keyRepository, tls } = checked;
  return {
    ok: true,
    config: redactConfig(checked.config),
    ...("skipped" in keyRepository ? {} : { key_repository: keyRepository }),
    ...(tls === undefined ? {} : { tls }),
    warnings: checked.warnings,
  };
}

/** The readable report: what was checked, what was found, then the effective config. */
function report(checked: Checked): string {
  const { config, keyRepository, tls } = checked;
  const lines = [`configuration OK: ${checked.file}`];
  if (checked.offline) {
    lines.push(
      "offline: secret files and variables, TLS and CA files and the key repository were not read",
    );
  }
  lines.push(
    "skipped" in keyRepository
      ? `key repository: ${config.fernet.key_repository}: not read (${keyRepository.skipped})`
      : `key repository: ${config.fernet.key_repository}: primary key ${keyRepository.primary_index}, ${keyRepository.key_count} keys`,
  );
  if (tls !== undefined) {
    lines.push(
      `tls: serving ${tls.subject} until ${tls.not_after}; client certificates ${tls.client_certificates}`,
    );
  }
  for (const w of checked.warnings) lines.push(`warning: ${w}`);
  lines.push("", "# effective configuration: defaults filled in, secrets redacted");
  return `${lines.join("\n")}\n${effectiveYaml(config)}`;
}

/**
 * The redacted config as YAML; an option whose default comes from another option is
 * shown with its value and a comment saying so.
 */
function effectiveYaml(config: Readonly<Config>): string {
  const document = new Document(redactConfig(config));
  for (const d of derivedDefaults(config)) {
    const node = document.createNode(d.value);
    if (isScalar(node)) node.comment = ` default: ${d.from}`;
    document.setIn(d.path, node);
  }
  return document.toString({ lineWidth: 0 });
}
