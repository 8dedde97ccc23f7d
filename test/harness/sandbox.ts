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
 *
 * `--regions N` (2 to 4): the multi-region picture instead (test/harness/multi-region.ts):
 * that Keystone as the master behind TLS (a CA generated for the run, which the edges
 * verify with `keystone.cafile`), and N regions, each with its own memcached, its own copy
 * of the key repository, its own echo service and its own edge. It shows a token served in
 * every region, then the master rotating its keys twice with only the first region synced:
 * the others keep serving and say they are behind (`keystone_edge_key_repository_behind`)
 * until they are synced too; and prints the commands that rotate, sync and watch, for
 * trying it by hand. `--regions N --once` stops after that (CI can smoke it).
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
import { startMultiRegion, type Region } from "./multi-region.js";

const once = process.argv.includes("--once");
/** `--regions N` / `--regions=N`: 1 (default) is the single region above. */
const regionCount = ((): number => {
  const i = process.argv.findIndex((a) => a === "--regions" || a.startsWith("--regions="));
  if (i === -1) return 1;
  const arg = process.argv[i] ?? "";
  const value = arg.includes("=") ? arg.slice(arg.indexOf("=") + 1) : (process.argv[i + 1] ?? "");
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 4) {
    process.stderr.write(`sandbox: --regions takes 1 to 4, not '${value}'\n`);
    process.exit(2);
  }
  return n;
})();
const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<number> {
  return regionCount > 1 ? multiRegion(regionCount) : singleRegion();
}

async function singleRegion(): Promise<number> {
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

/** Polls `check` every 100 ms until it holds; false if it does not within `ms`. */
async function eventually(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function multiRegion(count: number): Promise<number> {
  say("sandbox: checking Debian packages (Keystone, PostgreSQL, uwsgi, memcached)…");
  ensureDebianDeps();
  say("sandbox: starting PostgreSQL and the master Keystone (about 10 s)…");
  const keystone = await startKeystone({ cache: "memcached" });
  let stopTopology = (): Promise<void> => Promise.resolve();
  try {
    say(`sandbox: Keystone ${keystone.url}; creating users, projects and a service user…`);
    const fixtures = await createFixtures(keystone.info);
    const names = ["region-a", "region-b", "region-c", "region-d"].slice(0, count);
    say(`sandbox: a CA for this run, TLS in front of Keystone, ${String(count)} regions…`);
    const topology = await startMultiRegion({
      keystone: keystone.info,
      serviceUser: fixtures.serviceUser,
      regions: names,
      master: "keystone",
      // each edge checks its keys against a token the master issues now, every 2 s
      lagCheckIntervalMs: 2_000,
    });
    stopTopology = () => topology.close();
    const { master, regions } = topology;
    const [first] = regions as [Region, ...Region[]];
    const lagging = regions.slice(1);
    const problems: string[] = [];
    const expect = (what: string, ok: boolean): void => {
      if (!ok) problems.push(what);
    };
    const statusIn = async (region: Region, token: string): Promise<number> =>
      (await region.request(token)).status;
    const behind = async (region: Region): Promise<string> =>
      String((await region.behind()) ?? "not exported");

    say(`\nsandbox: the master      ${master.url}   (TLS; CA ${master.certificates.caFile})`);
    const token = await master.adminToken();
    for (const region of regions) {
      const res = await region.request(token);
      const seen =
        res.status === 200
          ? (JSON.parse(res.body) as { headers: Record<string, string> }).headers
          : {};
      say(
        `sandbox: ${region.name}: a master token → ${String(res.status)}` +
          `   (the service saw X-User-Name: ${seen["x-user-name"] ?? "-"}, ` +
          `X-Project-Name: ${seen["x-project-name"] ?? "-"})`,
      );
      expect(`${region.name} serves the master's token`, res.status === 200);
      const garbage = await statusIn(region, "garbage");
      expect(`${region.name} refuses garbage`, garbage === 401);
    }
    say(
      `sandbox: the master has relayed ${String(master.frontend.requests)} requests over ` +
        `${String(master.frontend.connections)} TLS connections (the edges pool theirs, kept alive)`,
    );

    say(`\nsandbox: the master rotates its keys twice; only ${first.name}'s copy is synced…`);
    await master.rotateKeys();
    await master.rotateKeys();
    first.sync();
    const rotated = Date.now();
    for (const region of lagging) {
      const known = await eventually(async () => (await region.behind()) === 1, 15_000);
      expect(`${region.name} says it is behind`, known);
      say(
        `sandbox: ${region.name}: found itself behind ${String(Date.now() - rotated)} ms after the rotations`,
      );
    }
    expect(
      `${first.name} does not say it is behind`,
      await eventually(async () => (await first.behind()) === 0, 5_000),
    );
    const fresh = await master.adminToken();
    for (const region of regions) {
      const status = await statusIn(region, fresh);
      expect(`${region.name} serves a token issued after the rotations`, status === 200);
      say(
        `sandbox: ${region.name}: a token issued after the rotations → ${String(status)}; ` +
          `keystone_edge_key_repository_behind ${await behind(region)}`,
      );
    }
    say("sandbox: syncing the others…");
    for (const region of lagging) {
      region.sync();
      const synced = Date.now();
      const cleared = await eventually(async () => (await region.behind()) === 0, 15_000);
      expect(`${region.name} clears its behind gauge after the sync`, cleared);
      say(
        `sandbox: ${region.name}: keystone_edge_key_repository_behind ${await behind(region)} ` +
          `${String(Date.now() - synced)} ms after the sync`,
      );
    }

    say("");
    for (const region of regions) {
      say(`sandbox: ${region.name}   edge ${region.url}   (in front of ${region.echo.url})`);
      say(
        `sandbox: ${region.name}   metrics ${region.adminUrl}/metrics   status page ${region.adminUrl}/`,
      );
      say(`sandbox: ${region.name}   config ${region.configPath}`);
      say(`sandbox: ${region.name}   key copy ${region.keyRepository}`);
    }
    const tokenFile = `${topology.root}/token`;
    writeFileSync(tokenFile, await master.adminToken(), { mode: 0o600 });
    const lag = lagging[0] ?? first;
    say(`\nsandbox: try it          curl -H "X-Auth-Token: $(cat ${tokenFile})" ${first.url}/`);
    say(
      `sandbox: the master      curl --cacert ${master.certificates.caFile} ${master.url}/   (verified TLS)`,
    );
    const auth = JSON.stringify({
      auth: {
        identity: {
          methods: ["password"],
          password: {
            user: { name: "admin", domain: { id: "default" }, password: keystone.adminPassword },
          },
        },
        scope: { project: { name: "admin", domain: { id: "default" } } },
      },
    });
    say(
      `sandbox: a new token     curl -si --cacert ${master.certificates.caFile} -H 'Content-Type: application/json' ` +
        `-d '${auth}' ${master.url}/auth/tokens | grep -i '^x-subject-token'`,
    );
    say(
      "sandbox:                 (two rotations retire the key that signed an older token: Keystone refuses it too)",
    );
    say(`sandbox: make ${lag.name} lag: rotate twice at the master, sync ${first.name} only:`);
    say(`  ${master.rotateCommand}`);
    say(`  ${master.rotateCommand}`);
    say(`  ${first.syncCommand}`);
    say(`sandbox: watch the gauge:`);
    say(
      `  watch -n1 "curl -s ${lag.adminUrl}/metrics | grep -E '^keystone_edge_key_(repository_behind|lag)'"`,
    );
    say(`  node ${BIN} keys status --key-repository ${lag.keyRepository} --admin ${lag.adminUrl}`);
    say(
      `  node ${BIN} keys check --config ${lag.configPath}   # the rotation gate: non-zero while behind`,
    );
    say(`sandbox: sync ${lag.name} (new key files first, then replaced ones, then removals):`);
    say(`  ${lag.syncCommand}`);
    say(`sandbox: Keystone        ${keystone.url}   (admin / ${keystone.adminPassword})`);
    if (problems.length > 0) throw new Error(`not as expected: ${problems.join("; ")}`);
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
    await stopTopology();
    await keystone.stop();
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
