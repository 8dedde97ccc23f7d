/**
 * `keystone-edge serve` refusing to start, as an operator meets it: the built binary run
 * as a process, each failure exit status 2 with one line on stderr naming the option and
 * the cause, and nothing asked of Keystone first (the listeners are bound before any
 * background loop starts). The README's exit-status table is checked against what the
 * commands do and against `ExitStatus`.
 */
import { spawnSync } from "node:child_process";
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { ExitStatus } from "../../src/errors.js";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import { freePort } from "../harness/net.js";

const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
const README = fileURLToPath(new URL("../../README.md", import.meta.url));
/**
 * Root as systemd's unit runs the edge's user: without the capabilities that bind a port
 * below 1024 or read any file (util-linux's setpriv drops them from the bounding set).
 */
const UNPRIVILEGED = [
  "setpriv",
  "--bounding-set",
  "-net_bind_service,-dac_override,-dac_read_search",
];
/** Owns the key repository that the edge may not read. */
const OTHER_UID = 12_345;

let dir: string;
let keys: string;
let busy: Server;
let busyPort: number;
/** A closed loopback port: Keystone and the upstream are never reached in these tests. */
let closedPort: number;

/** A loopback port held open by this process until `server` is closed. */
function holdPort(): Promise<{ server: Server; port: number }> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      if (address === null || typeof address === "string") reject(new Error("no port"));
      else resolve({ server, port: address.port });
    });
  });
}

/** A configuration on loopback with `overrides` (top-level options) applied. */
function config(name: string, overrides: Record<string, unknown> = {}): string {
  const document = {
    listen: "127.0.0.1:0",
    admin_listen: "127.0.0.1:0",
    upstream: `http://127.0.0.1:${String(closedPort)}`,
    keystone: {
      www_authenticate_uri: `http://127.0.0.1:${String(closedPort)}/v3`,
      auth: {
        type: "application_credential",
        application_credential_id: "0f2a9c1e5b8d4e7fa3c6d9b2e5f8a1c4",
        application_credential_secret: "not-a-real-secret",
      },
    },
    fernet: { key_repository: keys },
    ...overrides,
  };
  const file = join(dir, `${name}.yaml`);
  // JSON is YAML: the file is what an operator's YAML would parse to.
  writeFileSync(file, JSON.stringify(document, null, 2));
  return file;
}

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderrLines: readonly string[];
}

function serve(file: string, unprivileged = false): Run {
  const command = [process.execPath, BIN, "serve", "--config", file, "--grace", "0"];
  const [program, ...args] = unprivileged ? [...UNPRIVILEGED, ...command] : command;
  const run = spawnSync(program as string, args, { encoding: "utf8", timeout: 30_000 });
  if (run.error) throw run.error;
  return {
    status: run.status,
    stdout: run.stdout,
    stderrLines: run.stderr.split("\n").filter((line) => line.length > 0),
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "keystone-edge-startup-"));
  keys = join(dir, "fernet-keys");
  mkdirSync(keys);
  for (const index of [0, 1]) {
    writeFileSync(join(keys, String(index)), generateFernetKeyText());
  }
  ({ server: busy, port: busyPort } = await holdPort());
  closedPort = await freePort();
});

afterAll(async () => {
  await new Promise((resolve) => busy.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

describe("serve: start-up failures exit 2 with one line naming the option and the cause", () => {
  it("listen on a port another process holds", () => {
    const run = serve(config("busy", { listen: `127.0.0.1:${String(busyPort)}` }));
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines).toHaveLength(1);
    expect(run.stderrLines[0]).toMatch(
      new RegExp(
        `^keystone-edge serve: listen: cannot listen on 127\\.0\\.0\\.1:${String(busyPort)}: .*EADDRINUSE`,
      ),
    );
    // Bound before anything else: no service token was asked for, nothing else logged.
    expect(run.stdout).not.toMatch(/service token/i);
  });

  it("with workers, one line from the supervisor: no worker is forked", () => {
    const run = serve(
      config("busy-workers", { listen: `127.0.0.1:${String(busyPort)}`, workers: 2 }),
    );
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines).toHaveLength(1);
    expect(run.stderrLines[0]).toContain("listen: cannot listen on");
    expect(run.stdout).not.toContain("worker");
  });

  it("admin_listen on a port another process holds", () => {
    const run = serve(config("busy-admin", { admin_listen: `127.0.0.1:${String(busyPort)}` }));
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines).toHaveLength(1);
    expect(run.stderrLines[0]).toContain("admin_listen: cannot listen on");
    expect(run.stderrLines[0]).toContain("EADDRINUSE");
  });

  it("a port below 1024 without the capability", () => {
    const run = serve(config("low-port", { listen: "127.0.0.1:1" }), true);
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines).toHaveLength(1);
    expect(run.stderrLines[0]).toContain("listen: cannot listen on 127.0.0.1:1");
    expect(run.stderrLines[0]).toContain("EACCES");
    expect(run.stderrLines[0]).toContain("CAP_NET_BIND_SERVICE");
  });

  it("a key repository the edge's user cannot read", () => {
    const locked = join(dir, "locked-keys");
    mkdirSync(locked, { mode: 0o700 });
    writeFileSync(join(locked, "0"), generateFernetKeyText(), { mode: 0o600 });
    chownSync(locked, OTHER_UID, OTHER_UID);
    const run = serve(config("locked-keys", { fernet: { key_repository: locked } }), true);
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines).toHaveLength(1);
    expect(run.stderrLines[0]).toContain("fernet.key_repository");
    expect(run.stderrLines[0]).toContain("EACCES");
  });

  it("a missing key repository", () => {
    const run = serve(config("no-keys", { fernet: { key_repository: join(dir, "absent") } }));
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines).toHaveLength(1);
    expect(run.stderrLines[0]).toContain("fernet.key_repository");
  });

  it("a secret file that cannot be read", () => {
    const file = config("no-secret", {
      keystone: {
        www_authenticate_uri: `http://127.0.0.1:${String(closedPort)}/v3`,
        auth: {
          type: "application_credential",
          application_credential_id: "0f2a9c1e5b8d4e7fa3c6d9b2e5f8a1c4",
          application_credential_secret_file: join(dir, "absent-secret"),
        },
      },
    });
    const run = serve(file);
    expect(run.status).toBe(ExitStatus.usage);
    expect(run.stderrLines.join("\n")).toContain(
      "keystone.auth.application_credential_secret_file: cannot read",
    );
    expect(run.stderrLines.join("\n")).toContain("ENOENT");
  });
});

describe("the README's exit-status table", () => {
  /** `| 2 | … |` rows of the table under the "Exit status" heading. */
  function readmeRows(): Map<number, string> {
    const text = readFileSync(README, "utf8");
    const start = text.search(/^#+ Exit status/m);
    expect(start, "README.md has an 'Exit status' section").toBeGreaterThan(-1);
    const section = text.slice(start).split(/\n#+ /)[0] ?? "";
    const rows = new Map<number, string>();
    for (const match of section.matchAll(/^\|\s*`?(\d+)`?\s*\|(.*)\|\s*$/gm)) {
      rows.set(Number(match[1]), match[2] ?? "");
    }
    return rows;
  }

  it("lists every status the commands use, and only those", () => {
    const used = new Set<number>(Object.values(ExitStatus));
    expect([...readmeRows().keys()].sort((a, b) => a - b)).toEqual([...used].sort((a, b) => a - b));
  });

  it("says what the commands do: 2 for a taken port, 0 for --version", () => {
    const rows = readmeRows();
    expect(rows.get(2)).toMatch(/port/);
    const version = spawnSync(process.execPath, [BIN, "--version"], { encoding: "utf8" });
    expect(version.status).toBe(0);
    const taken = serve(config("busy-table", { listen: `127.0.0.1:${String(busyPort)}` }));
    expect(taken.status).toBe(2);
  });
});
