/**
 * `keystone-edge check-config FILE`: validate a configuration without starting anything.
 *
 * Owns: the operator's pre-flight — the YAML, every option's type and range, secrets from
 * files and the environment, readable TLS files, the listeners' certificate and key (they
 * go together, the certificate has not ended), and (unless `--skip-keys`) a loadable key
 * repository — reported as one JSON object on stdout and one line per problem on stderr.
 */
import { redactConfig, loadConfig } from "../config/load.js";
import { ConfigError, EdgeError, ExitStatus, exitStatusFor, UsageError } from "../errors.js";
import { readKeyRepository } from "../fernet/key-repository.js";
import { insecureEndpoints, insecureEndpointWarning } from "../config/warnings.js";
import { loadListenerTls } from "../proxy/tls.js";
import { parseCommandArgs, type Command } from "./command.js";

const help = `Usage: keystone-edge check-config FILE [--skip-keys]

Validates a keystone-edge configuration file as start-up would, without starting
anything or calling Keystone: YAML syntax, unknown options, types and ranges, secrets
given as <name>, <name>_file or <name>_env (exactly one), readable cafile/certfile/keyfile,
with tls: a served certificate that parses, has not ended and goes with its key, and a
client CA bundle that parses; and that fernet.key_repository loads.

Prints one JSON object on stdout: {"ok": true, "config": {…secrets redacted…},
"key_repository": {"primary_index": …, "key_count": …}, "tls": {"subject", "not_after",
"client_certificates"} (with tls), "warnings": […]} or
{"error": {"code", "message", "problems": […]}}, and each problem on its own line on
stderr, naming the option. Warnings (valid but unsafe: a plain-HTTP or unverified
Keystone endpoint, a served certificate ending within 14 days) go to stderr too, with exit
status 0.

Options:
  --skip-keys  do not load fernet.key_repository (e.g. on a build host)
  -h, --help   show this help

Exit status: 0 valid; 2 invalid (or the key repository does not load).
`;

export const checkConfig: Command = {
  path: ["check-config"],
  summary: "validate a configuration file without starting (JSON out)",
  help,
  async run(args, io) {
    try {
      const parsed = parseCommandArgs(args, { "skip-keys": { type: "boolean" } }, true);
      if (parsed.kind === "help") {
        io.stdout(help);
        return ExitStatus.ok;
      }
      const [file, ...rest] = parsed.positionals;
      if (file === undefined || rest.length > 0) throw new UsageError("give exactly one FILE");
      const config = loadConfig(file);
      let keyRepository: { primary_index: number; key_count: number } | undefined;
      if (parsed.values["skip-keys"] !== true) {
        const ring = await readKeyRepository(config.fernet.key_repository);
        keyRepository = { primary_index: ring.primary.index, key_count: ring.size };
      }
      const warnings = insecureEndpoints(config).map(insecureEndpointWarning);
      const tls = config.tls === undefined ? undefined : loadListenerTls(config.tls);
      if (tls !== undefined) warnings.push(...tls.warnings.map((w) => `tls: ${w}`));
      io.stdout(
        JSON.stringify({
          ok: true,
          config: redactConfig(config),
          ...(keyRepository ? { key_repository: keyRepository } : {}),
          ...(tls === undefined
            ? {}
            : {
                tls: {
                  subject: tls.certificate.subject,
                  not_after: new Date(tls.certificate.notAfterMs).toISOString(),
                  client_certificates: tls.clientCertificates,
                },
              }),
          warnings,
        }) + "\n",
      );
      for (const w of warnings) io.stderr(`keystone-edge check-config: warning: ${w}\n`);
      return ExitStatus.ok;
    } catch (error) {
      if (error instanceof EdgeError) {
        const problems = error instanceof ConfigError ? error.problems : [error.message];
        io.stdout(JSON.stringify({ error: { ...error.toJSON(), problems } }) + "\n");
        for (const p of problems.length > 0 ? problems : [error.message]) {
          io.stderr(`keystone-edge check-config: ${p}\n`);
        }
        return exitStatusFor(error);
      }
      throw error;
    }
  },
};
