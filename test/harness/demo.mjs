#!/usr/bin/env node
// `npm run demo`: the product, for real, in a minute. Creates a throwaway Keystone key
// repository (with Keystone's own `keystone-manage fernet_setup` + `fernet_rotate` when
// Keystone is installed, else three fresh keys in the same format), mints a project-scoped
// token signed by the primary key, and runs the built CLI on it: `keys status`, then
// `token decode` with the token on stdin, then a forged token. Replaced by
// `npm run sandbox` (a whole region on loopback) in the proxy issue.
import { execFileSync, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { generateFernetKeyText } from "../../dist/src/fernet/envelope.js";
import { readKeyRepository } from "../../dist/src/fernet/key-repository.js";
import { staticKeyRing } from "../../dist/src/fernet/key-ring.js";
import { TokenDecoder } from "../../dist/src/token/decoder.js";
import { randomAuditId } from "../../dist/src/token/payload.js";

const bin = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
const root = mkdtempSync(join(tmpdir(), "keystone-edge-demo-"));
const keys = join(root, "fernet-keys");

function cli(args, input) {
  console.log(`\n$ keystone-edge ${args.join(" ")}${input ? " <<< $TOKEN" : ""}`);
  const r = spawnSync(process.execPath, [bin, ...args], { input, encoding: "utf8" });
  process.stdout.write(r.stdout);
  process.stderr.write(r.stderr);
  console.log(`(exit ${r.status})`);
  return r.status;
}

try {
  const manage = "/usr/bin/keystone-manage";
  if (existsSync(manage)) {
    const conf = join(root, "keystone.conf");
    writeFileSync(conf, `[fernet_tokens]\nkey_repository = ${keys}\nmax_active_keys = 3\n`);
    const run = (...a) =>
      execFileSync(
        manage,
        ["--config-file", conf, ...a, "--keystone-user", "root", "--keystone-group", "root"],
        {
          stdio: "ignore",
        },
      );
    run("fernet_setup");
    run("fernet_rotate");
    console.log(`key repository made by Keystone's keystone-manage: ${keys}`);
  } else {
    execFileSync("mkdir", ["-m", "0700", keys]);
    for (const i of [0, 1, 2]) {
      writeFileSync(join(keys, String(i)), generateFernetKeyText());
      chmodSync(join(keys, String(i)), 0o600);
    }
    console.log(`key repository (Keystone's format; keystone-manage not installed): ${keys}`);
  }

  const decoder = new TokenDecoder({ keys: staticKeyRing(await readKeyRepository(keys)) });
  const token = decoder.mint({
    kind: "project",
    version: 2,
    userId: "3ec3164f750146be97f21559ee4d9c51",
    methods: ["password"],
    auditIds: [randomAuditId()],
    projectId: "9438ea8b15eb47a2a2a29269380c8c38",
    expiresAtMicros: (Math.floor(Date.now() / 1000) + 3600) * 1e6,
  });
  console.log(`minted a project-scoped token (${token.length} characters) with the primary key`);

  const statuses = [
    cli(["keys", "status", "--key-repository", keys]),
    cli(["token", "decode", "--key-repository", keys, "-"], token),
  ];
  const forged = token.slice(0, -4) + (token.endsWith("AAAA") ? "BBBB" : "AAAA");
  const forgedStatus = cli(["token", "decode", "--key-repository", keys, "-"], forged);
  if (statuses.some((s) => s !== 0) || forgedStatus !== 3) {
    console.error("\ndemo: unexpected exit status");
    process.exitCode = 1;
  } else {
    console.log("\ndemo: ok (valid token exit 0, forged token exit 3)");
  }
} finally {
  rmSync(root, { recursive: true, force: true });
}
