/**
 * A key repository that does not load is reported as the option that names it
 * (`fernet.key_repository: …`) with its cause, wherever it surfaces (check-config, serve's
 * start-up, a reload's log line: they all show the error's message); a permission error
 * says what to change. The permission case runs for real: the built CLI without the
 * capabilities that let root read anything (the tests run as root in CI).
 */
import { execFile } from "node:child_process";
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KeyRepositoryError } from "../../../src/errors.js";
import { generateFernetKeyText } from "../../../src/fernet/envelope.js";
import {
  asRepositoryError,
  PERMISSION_HINT,
  readKeyRepository,
} from "../../../src/fernet/key-repository.js";
import { runCli } from "../../harness/cli.js";

const execFileAsync = promisify(execFile);
const CLI = fileURLToPath(new URL("../../../dist/src/cli/main.js", import.meta.url));

async function failure(dir: string, option?: string): Promise<KeyRepositoryError> {
  const error = await readKeyRepository(dir, option === undefined ? {} : { option }).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KeyRepositoryError);
  return error as KeyRepositoryError;
}

let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ke-keys-messages-"));
  await chmod(dir, 0o755);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("key repository messages", () => {
  it("name fernet.key_repository (or the flag a command was given) and the cause", async () => {
    const missing = await failure(join(dir, "nope"));
    expect(missing.code).toBe("key_repository_missing");
    expect(missing.message).toBe(
      `fernet.key_repository: ${join(dir, "nope")} does not exist or is not a directory`,
    );
    const empty = join(dir, "empty");
    await mkdir(empty);
    expect((await failure(empty)).message).toMatch(
      new RegExp(`^fernet\\.key_repository: ${empty} holds no keys \\(expected files named 0, 1`),
    );
    const bad = join(dir, "bad");
    await mkdir(bad);
    await writeFile(join(bad, "0"), "not a key\n");
    const invalid = await failure(bad, "--key-repository");
    expect(invalid.code).toBe("invalid_key");
    expect(invalid.message).toMatch(new RegExp(`^--key-repository: key file ${bad}/0: `));
  });

  it("a permission error says what to change; other errors only their code", () => {
    const denied = asRepositoryError("/etc/keystone/fernet-keys", { code: "EACCES" });
    expect(denied.code).toBe("key_repository_unreadable");
    expect(denied.message).toBe(
      "fernet.key_repository: cannot read /etc/keystone/fernet-keys (EACCES): the edge's user " +
        "needs read access; Keystone's keys are 0600 keystone:keystone — add the edge's user " +
        "to the keystone group and make the keys 0640 (the directory 0750), or sync a copy it owns",
    );
    expect(asRepositoryError("/k", { code: "EPERM" }).message).toContain(PERMISSION_HINT);
    expect(asRepositoryError("/k", { code: "EIO" }).message).toBe(
      "fernet.key_repository: cannot read /k (EIO)",
    );
  });

  it("check-config prints the message on stderr", async () => {
    const file = join(dir, "edge.yaml");
    await writeFile(file, config(join(dir, "nope")));
    const r = await runCli(["check-config", file]);
    expect(r.status).toBe(2);
    expect(r.stdout).toBe("");
    expect(r.stderr).toBe(
      `keystone-edge check-config: fernet.key_repository: ${join(dir, "nope")} does not exist or is not a directory\n`,
    );
  });

  it("a repository the edge's user may not read: check-config exits 2 with the hint (for real)", async () => {
    const keys = join(dir, "keystone-owned");
    await mkdir(keys);
    await writeFile(join(keys, "0"), generateFernetKeyText(), { mode: 0o600 });
    await writeFile(join(keys, "1"), generateFernetKeyText(), { mode: 0o600 });
    await chmod(keys, 0o700);
    const file = join(dir, "unprivileged.yaml");
    await writeFile(file, config(keys), { mode: 0o644 });
    const root = process.getuid?.() === 0;
    // Root reads anything through its capabilities: the keys go to another owner and the
    // CLI runs as root without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH (util-linux's setpriv),
    // as an unprivileged user would, from wherever the checkout is (a 0700 temp directory
    // would shut another user out of the CLI itself). Not root: the owner is denied too.
    if (root) await chown(keys, 12_345, 12_345);
    else await chmod(keys, 0o000);
    const command = root
      ? ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", process.execPath]
      : [process.execPath];
    try {
      const [program, ...rest] = command;
      const r = await execFileAsync(program as string, [...rest, CLI, "check-config", file]).then(
        (x) => ({ code: 0, stderr: x.stderr }),
        (e: unknown) => e as { code: number; stderr: string },
      );
      expect(r.stderr).toBe(
        `keystone-edge check-config: fernet.key_repository: cannot read ${keys} (EACCES): ${PERMISSION_HINT}\n`,
      );
      expect(r.code).toBe(2);
    } finally {
      await chmod(keys, 0o700);
    }
  });
});

function config(keyRepository: string): string {
  return [
    'listen: "127.0.0.1:8774"',
    'upstream: "http://127.0.0.1:18774"',
    "keystone:",
    '  www_authenticate_uri: "https://keystone.example:5000/v3"',
    "  auth: { type: application_credential, application_credential_id: a, application_credential_secret: s }",
    "fernet:",
    `  key_repository: ${keyRepository}`,
    "",
  ].join("\n");
}
