/**
 * Owns: running `keystone-edge serve` as a real process for tests — writing its YAML
 * (service user password in a file beside it), spawning the built binary, waiting for
 * `/readyz`, collecting its output, and stopping it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { KeystoneInfo } from "./client.js";
import { startEchoUpstream, type EchoUpstream } from "./echo-upstream.js";
import { createFixtures, type Fixtures } from "./fixtures.js";
import { freePort } from "./keystone.js";

const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
const SETPRIV = "/usr/bin/setpriv";

export interface EdgeProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly url: string;
  readonly adminUrl: string;
  /** The YAML it was started with (rewrite it and send SIGHUP to reload). */
  readonly configPath: string;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Sends SIGTERM and resolves to the exit code. */
  stop(): Promise<number | null>;
}

export interface EdgeProcessOptions {
  readonly keystone: KeystoneInfo;
  readonly upstream: string;
  readonly serviceUser: {
    readonly name: string;
    readonly password: string;
    readonly project: string;
  };
  /** Extra lines appended to the YAML. */
  readonly extraYaml?: readonly string[];
  /**
   * The `shadow_validation` section's lines. Default off (`sample_ratio: 0`): tests that
   * count the master's calls count exactly.
   */
  readonly shadowYaml?: readonly string[];
  /** The edge's CLI script (benchmarks compare a baseline build). Default this tree's dist. */
  readonly bin?: string;
  /** `keystone.timeout_ms`. Default 10 000. */
  readonly timeoutMs?: number;
  /**
   * Extra lines inside the `keystone:` block, indented by two spaces (e.g.
   * `  cafile: /tmp/ca.pem`): `extraYaml` cannot add to a block already written.
   */
  readonly keystoneYaml?: readonly string[];
  /** Extra lines inside the `fernet:` block, indented by two spaces. */
  readonly fernetYaml?: readonly string[];
  readonly args?: readonly string[];
  /** Flags for node itself, e.g. `["--cpu-prof"]` to profile the edge. */
  readonly nodeArgs?: readonly string[];
  /**
   * Run it under `setpriv --pdeathsig SIGTERM` (when setpriv exists), so that it stops
   * with the process that started it even if that one is SIGKILLed. Default false.
   */
  readonly dieWithParent?: boolean;
}

export async function startEdgeProcess(options: EdgeProcessOptions): Promise<EdgeProcess> {
  const dir = await mkdtemp(join(tmpdir(), "ke-edge-proc-"));
  const port = await freePort();
  const adminPort = await freePort();
  const { keystone, serviceUser } = options;
  await writeFile(join(dir, "password"), `${serviceUser.password}\n`, { mode: 0o600 });
  await writeFile(
    join(dir, "edge.yaml"),
    [
      `listen: "127.0.0.1:${port}"`,
      `upstream: "${options.upstream}"`,
      `admin_listen: "127.0.0.1:${adminPort}"`,
      "keystone:",
      `  www_authenticate_uri: "${keystone.url}"`,
      `  endpoints: ["${keystone.url}"]`,
      `  timeout_ms: ${String(options.timeoutMs ?? 10_000)}`,
      ...(options.keystoneYaml ?? []),
      "  auth:",
      "    type: password",
      `    username: ${serviceUser.name}`,
      "    password_file: password",
      "    user_domain_id: default",
      `    project_name: ${serviceUser.project}`,
      "    project_domain_id: default",
      "fernet:",
      `  key_repository: ${keystone.keyRepository}`,
      `  auth_methods: [${keystone.authMethods.join(", ")}]`,
      ...(options.fernetYaml ?? []),
      ...(options.extraYaml ?? []),
      // Off unless a test asks: tests that count the master's calls count exactly.
      ...(options.shadowYaml ?? ["shadow_validation:", "  sample_ratio: 0"]),
      "",
    ].join("\n"),
  );
  let out = "";
  const argv = [
    ...(options.nodeArgs ?? []),
    options.bin ?? BIN,
    "serve",
    "--config",
    join(dir, "edge.yaml"),
    ...(options.args ?? []),
  ];
  // setpriv execs node in place: the child's pid is the edge's own
  const [file, fileArgs] =
    options.dieWithParent === true && existsSync(SETPRIV)
      ? [SETPRIV, ["--pdeathsig", "SIGTERM", "--", process.execPath, ...argv]]
      : [process.execPath, argv];
  const child = spawn(file, fileArgs, {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => resolve(code)),
  );
  const adminUrl = `http://127.0.0.1:${adminPort}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const ready = await fetch(`${adminUrl}/readyz`).then(
      async (r) => {
        await r.arrayBuffer();
        return r.status === 200;
      },
      () => false,
    );
    if (ready) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      await rm(dir, { recursive: true, force: true });
      throw new Error(`keystone-edge serve did not become ready:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return {
    child,
    pid: child.pid ?? -1,
    url: `http://127.0.0.1:${port}`,
    adminUrl,
    configPath: join(dir, "edge.yaml"),
    output: () => out,
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      const code = await exited;
      await rm(dir, { recursive: true, force: true });
      return code;
    },
  };
}

/** A served region for process tests: fixtures in Keystone, an echo service, the edge in front. */
export interface ServedRegion {
  readonly fixtures: Fixtures;
  readonly echo: EchoUpstream;
  readonly edge: EdgeProcess;
}

/** Creates the fixtures, starts an echo service and `keystone-edge serve` (with `args`) before it. */
export async function startServedRegion(
  keystone: KeystoneInfo,
  args: readonly string[] = [],
): Promise<ServedRegion> {
  const fixtures = await createFixtures(keystone);
  const echo = await startEchoUpstream();
  const edge = await startEdgeProcess({
    keystone,
    upstream: echo.url,
    serviceUser: fixtures.serviceUser,
    args,
  });
  return { fixtures, echo, edge };
}
