/**
 * `npm run sandbox`: a whole region on loopback, for real.
 *
 * Owns: installing what is missing (Debian packages, as root), starting PostgreSQL and a
 * throwaway Keystone, a sample service that echoes the headers it receives, and
 * `keystone-edge serve` (the built binary, from a generated YAML file) in front of it;
 * issuing a token through Keystone's API, sending a request through the edge, printing
 * what the service received, where the metrics and status page are, and how to run a drill
 * and a reload against it; then staying up until Ctrl-C and
 * cleaning up after itself. `--once` stops after the demonstration (CI runs that).
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { startEchoUpstream } from "./echo-upstream.js";
import { createFixtures } from "./fixtures.js";
import { ensureDebianDeps } from "./global-setup.js";
import { freePort, startKeystone } from "./keystone.js";

const once = process.argv.includes("--once");
const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<number> {
  say("sandbox: checking Debian packages (Keystone, PostgreSQL, uwsgi, memcached)…");
  ensureDebianDeps();
  say("sandbox: starting PostgreSQL and Keystone (about 10 s)…");
  // Keystone with its memcached cache, as production runs it (validations in ms, not 1 s).
  const keystone = await startKeystone({ cache: "memcached" });
  const dir = mkdtempSync(join(tmpdir(), "keystone-edge-sandbox-"));
  const echo = await startEchoUpstream();
  let edgeExit: Promise<number | null> = Promise.resolve(null);
  let stopEdge = (): void => undefined;
  const cleanup = async (): Promise<void> => {
    stopEdge();
    await edgeExit;
    await echo.stop();
    await keystone.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    say(`sandbox: Keystone ${keystone.url}; creating users, projects and a service user…`);
    const fixtures = await createFixtures(keystone.info);
    const port = await freePort();
    const adminPort = await freePort();
    const config = join(dir, "edge.yaml");
    writeFileSync(join(dir, "service-password"), `${fixtures.serviceUser.password}\n`, {
      mode: 0o600,
    });
    // The admin API (cache flush, drills) wants a bearer secret; the drill wants tokens.
    writeFileSync(join(dir, "admin-secret"), `${randomBytes(24).toString("hex")}\n`, {
      mode: 0o600,
    });
    writeFileSync(
      join(dir, "drill-tokens"),
      [fixtures.tokens.project, fixtures.tokens.domain, fixtures.tokens.system].join("\n") + "\n",
      { mode: 0o600 },
    );
    writeFileSync(
      config,
      [
        `listen: "127.0.0.1:${port}"`,
        `upstream: "${echo.url}"`,
        `admin_listen: "127.0.0.1:${adminPort}"`,
        "admin_secret_file: admin-secret",
        "keystone:",
        `  www_authenticate_uri: "${keystone.url}"`,
        "  # One Keystone under two names, so that a master-outage drill has somewhere to go.",
        "  endpoints:",
        `    - { name: regional, url: "${keystone.url}" }`,
        `    - { name: master, url: "${keystone.url}" }`,
        "  auth:",
        "    type: password",
        `    username: ${fixtures.serviceUser.name}`,
        "    password_file: service-password",
        "    user_domain_id: default",
        `    project_name: ${fixtures.serviceUser.project}`,
        "    project_domain_id: default",
        "fernet:",
        `  key_repository: ${keystone.keyRepository}`,
        "",
      ].join("\n"),
    );
    say(`sandbox: starting keystone-edge serve --config ${config}`);
    const edge = spawn(process.execPath, [BIN, "serve", "--config", config], {
      stdio: ["ignore", "inherit", "inherit"],
    });
    edgeExit = new Promise((resolve) => edge.once("exit", (code) => resolve(code)));
    stopEdge = () => {
      if (edge.exitCode === null) edge.kill("SIGTERM");
    };
    const deadline = Date.now() + 60_000;
    for (;;) {
      const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(
        (r) => r.status === 200,
        () => false,
      );
      if (ready) break;
      if (edge.exitCode !== null) throw new Error("keystone-edge exited during start");
      if (Date.now() > deadline) throw new Error("keystone-edge did not become ready");
      await new Promise((r) => setTimeout(r, 200));
    }
    const token = fixtures.tokens.project;
    const res = await fetch(`http://127.0.0.1:${port}/v2.1/servers`, {
      headers: { "X-Auth-Token": token, "X-Roles": "admin (spoofed, stripped by the edge)" },
    });
    const seen = (await res.json()) as { headers: Record<string, string> };
    say(`\nsandbox: GET /v2.1/servers through keystone-edge → ${String(res.status)}`);
    say("sandbox: the service received these identity headers:");
    for (const [name, value] of Object.entries(seen.headers).sort()) {
      if (/^(x-|openstack-)/.test(name) && !/^x-(auth-token|forwarded)/.test(name)) {
        say(`  ${name}: ${name === "x-service-catalog" ? `${value.slice(0, 60)}…` : value}`);
      }
    }
    const refused = await fetch(`http://127.0.0.1:${port}/v2.1/servers`, {
      headers: { "X-Auth-Token": "garbage" },
    });
    say(
      `sandbox: the same with a garbage token → ${String(refused.status)} (refused locally, no Keystone call)`,
    );
    await refused.arrayBuffer();
    say(`\nsandbox: keystone-edge   http://127.0.0.1:${String(port)}   (in front of ${echo.url})`);
    say(
      `sandbox: metrics         http://127.0.0.1:${String(adminPort)}/metrics   /healthz   /readyz`,
    );
    say(`sandbox: status page     http://127.0.0.1:${String(adminPort)}/   (JSON: /status)`);
    say(`sandbox: Keystone        ${keystone.url}   (admin / ${keystone.adminPassword})`);
    say(
      `sandbox: a drill         node ${BIN} drill master-outage --admin http://127.0.0.1:${String(adminPort)} --secret-file ${join(dir, "admin-secret")} --token-file ${join(dir, "drill-tokens")} --duration 20s`,
    );
    say(`sandbox: reload          edit ${config}, then kill -HUP ${String(edge.pid)}`);
    say(
      `sandbox: try it          curl -H "X-Auth-Token: $(cat ${join(dir, "token")})" http://127.0.0.1:${String(port)}/`,
    );
    writeFileSync(join(dir, "token"), token, { mode: 0o600 });
    if (res.status !== 200 || refused.status !== 401)
      throw new Error("the edge did not behave as expected");
    if (!once) {
      say("\nsandbox: up; Ctrl-C stops everything and cleans up.");
      await new Promise<void>((resolve) => {
        process.once("SIGINT", () => resolve());
        process.once("SIGTERM", () => resolve());
      });
    }
    say("sandbox: stopping…");
    return 0;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`sandbox: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exitCode = 1;
  },
);
