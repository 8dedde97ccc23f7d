/**
 * Owns: running Debian's Tempest (the OpenStack integration suite Keystone's own API tests
 * live in) against an Identity endpoint — a workspace with its `tempest.conf` (Identity v3
 * only, dynamic credentials, every other service off), the face registered in Keystone's
 * catalog as the identity endpoint of a region of its own (Tempest, like every
 * keystoneauth client, follows the catalog for everything after the token), the run, and
 * its results per test (subunit, parsed by tempest_results.py) — and undoing the catalog
 * change. Tempest's own files stay in the workspace for a failed run's post-mortem.
 */
import { execFile, spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** The Tempest identity v3 API tests the face must pass as Keystone does (61 tests). */
export const TEMPEST_IDENTITY_REGEX =
  "^tempest\\.api\\.identity\\.(admin\\.)?v3\\.test_(tokens|users|projects|roles|domains|application_credentials|trusts)\\.";

/** One test's outcome (subunit's status). */
export interface TempestTest {
  readonly id: string;
  readonly status: "success" | "fail" | "skip" | "xfail" | "uxsuccess";
  readonly reason?: string;
  readonly traceback?: string;
}

export interface TempestRun {
  readonly exitCode: number;
  readonly seconds: number;
  readonly tests: readonly TempestTest[];
  /** The workspace (tempest.conf, logs/tempest.log, .stestr). */
  readonly workspace: string;
  /** The last lines of `tempest run`'s own output. */
  readonly tail: string;
}

export interface TempestOptions {
  /** Where Tempest works; created. */
  readonly workspace: string;
  /** The Identity v3 URL clients authenticate at (the face), e.g. `http://127.0.0.1:5001/v3`. */
  readonly uriV3: string;
  /** The catalog region whose identity endpoint Tempest uses for everything else. */
  readonly region: string;
  readonly adminUsername: string;
  readonly adminPassword: string;
  readonly regex?: string;
  /** Test workers. Default 2 (the machines here have two cores). */
  readonly concurrency?: number;
  /** Whole run's deadline, ms. Default 20 minutes. */
  readonly timeoutMs?: number;
}

/** Tempest's configuration for an Identity-only cloud. */
export function tempestConf(options: TempestOptions): string {
  return `[DEFAULT]
log_file = tempest.log
log_dir = ${join(options.workspace, "logs")}

[auth]
use_dynamic_credentials = true
admin_username = ${options.adminUsername}
admin_password = ${options.adminPassword}
admin_project_name = admin
admin_domain_name = Default
create_isolated_networks = false

[identity]
uri_v3 = ${options.uriV3}
auth_version = v3
region = ${options.region}
v3_endpoint_type = public
admin_role = admin
default_domain_id = default

[identity-feature-enabled]
api_v2 = false
api_v2_admin = false
api_v3 = true
trust = true
application_credentials = true
access_rules = true
project_tags = true
security_compliance = false
domain_specific_drivers = false

[service-clients]
http_timeout = 120

[oslo_concurrency]
lock_path = ${join(options.workspace, "tempest_lock")}

[service_available]
cinder = false
glance = false
neutron = false
nova = false
swift = false
horizon = false
`;
}

/** Runs Tempest with `options`; resolves with every test's outcome (never on a crash: rejects). */
export async function runTempest(options: TempestOptions): Promise<TempestRun> {
  const ws = options.workspace;
  // A workspace registry of the run's own: ~/.tempest's would refuse a second workspace of
  // the same name from another run, and keep growing.
  await execFileAsync(
    "/usr/bin/tempest",
    ["init", "--workspace-path", join(dirname(ws), "workspaces.yaml"), ws],
    { timeout: 60_000 },
  );
  mkdirSync(join(ws, "logs"), { recursive: true });
  writeFileSync(join(ws, "etc", "tempest.conf"), tempestConf(options), { mode: 0o600 });
  const started = performance.now();
  const { code, output } = await new Promise<{ code: number; output: string }>(
    (resolve, reject) => {
      const child = spawn(
        "/usr/bin/tempest",
        [
          "run",
          "--regex",
          options.regex ?? TEMPEST_IDENTITY_REGEX,
          "--concurrency",
          String(options.concurrency ?? 2),
        ],
        { cwd: ws, env: { ...process.env, PYTHONUNBUFFERED: "1" }, stdio: "pipe" },
      );
      let text = "";
      const keep = (chunk: Buffer): void => {
        text = (text + chunk.toString("utf8")).slice(-20_000);
      };
      child.stdout.on("data", keep);
      child.stderr.on("data", keep);
      const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 20 * 60_000);
      child.on("error", reject);
      child.on("close", (exit) => {
        clearTimeout(timer);
        resolve({ code: exit ?? -1, output: text });
      });
    },
  );
  const seconds = Math.round((performance.now() - started) / 100) / 10;
  const subunit = await execFileAsync("/usr/bin/stestr", ["last", "--subunit"], {
    cwd: ws,
    encoding: "buffer",
    maxBuffer: 256 * 1024 * 1024,
  }).catch((error: unknown) => {
    throw new Error(`no Tempest results (exit ${String(code)}): ${String(error)}\n${output}`);
  });
  const parsed = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      "/usr/bin/python3",
      [new URL("./tempest_results.py", import.meta.url).pathname],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    let out = "";
    let err = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (err += c.toString("utf8")));
    child.on("error", reject);
    child.on("close", (exit) => {
      if (exit === 0) resolve(out);
      else reject(new Error(`tempest_results.py exited ${String(exit)}: ${err}`));
    });
    child.stdin.end(subunit.stdout);
  });
  const tests = (JSON.parse(parsed) as { tests: TempestTest[] }).tests;
  return { exitCode: code, seconds, tests, workspace: ws, tail: output.slice(-4_000) };
}

/** Keystone's admin API, as much of it as registering an endpoint takes. */
async function keystoneCall(
  keystoneUrl: string,
  adminToken: string,
  method: "GET" | "POST" | "DELETE",
  path: string,
  body?: unknown,
): Promise<unknown> {
  const res = await fetch(`${keystoneUrl}${path}`, {
    method,
    headers: {
      "x-auth-token": adminToken,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: HTTP ${String(res.status)} ${text}`);
  return text === "" ? undefined : (JSON.parse(text) as unknown);
}

/**
 * Registers `url` as the public identity endpoint of a new region `region`, as an operator
 * registers the face (docs/operations.md): `openstack region create R`, then
 * `openstack endpoint create --region R identity public URL`. Returns the undo.
 */
export async function registerIdentityEndpoint(options: {
  readonly keystoneUrl: string;
  readonly adminToken: string;
  readonly region: string;
  readonly url: string;
}): Promise<() => Promise<void>> {
  const { keystoneUrl, adminToken, region, url } = options;
  const services = (await keystoneCall(
    keystoneUrl,
    adminToken,
    "GET",
    "/services?type=identity",
  )) as { services: { id: string }[] };
  const serviceId = services.services[0]?.id;
  if (serviceId === undefined) throw new Error("no identity service in the catalog");
  await keystoneCall(keystoneUrl, adminToken, "POST", "/regions", { region: { id: region } });
  const created = (await keystoneCall(keystoneUrl, adminToken, "POST", "/endpoints", {
    endpoint: { service_id: serviceId, interface: "public", region_id: region, url },
  })) as { endpoint: { id: string } };
  return async () => {
    await keystoneCall(keystoneUrl, adminToken, "DELETE", `/endpoints/${created.endpoint.id}`);
    await keystoneCall(keystoneUrl, adminToken, "DELETE", `/regions/${region}`);
  };
}
