/**
 * The package operators install: `npm pack` of this checkout holds the program and nothing
 * else (dist/src, package.json, README, LICENSE; no tests, benchmarks or source maps), with
 * an executable `dist/src/cli/main.js`; `npm install -g --prefix` of that tarball gives a
 * `bin/keystone-edge` that prints package.json's version and checks
 * deploy/examples/config.yaml (its secrets and keys made here).
 *
 * Packs the built dist/ as it is (`--ignore-scripts`: no rebuild while other suites run the
 * CLI; `npm test` builds first). The install fetches the production dependencies from the
 * npm registry (or npm's cache): an unreachable registry fails the test, saying so.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { generateFernetKeyText } from "../../src/fernet/envelope.js";

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
/** What the tarball may hold: the program, package.json, README, LICENSE. */
const ALLOWED = /^package\/(dist\/src\/.+\.js|package\.json|README\.md|LICENSE[^/]*)$/;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function run(
  file: string,
  args: readonly string[],
  options: { cwd?: string; timeoutMs?: number } = {},
): Promise<Run> {
  // The bin's shebang is `#!/usr/bin/env node`: the node running this suite comes first.
  const env = {
    ...process.env,
    PATH: `${dirname(process.execPath)}:${process.env["PATH"] ?? ""}`,
    npm_config_update_notifier: "false",
  };
  return execFileAsync(file, [...args], {
    cwd: options.cwd ?? ROOT,
    env,
    maxBuffer: 16 << 20,
    timeout: options.timeoutMs ?? 60_000,
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: unknown) => {
      const f = e as {
        code?: number | string;
        killed?: boolean;
        stdout?: string;
        stderr?: string;
        message?: string;
      };
      const killed =
        f.killed === true ? `\n(killed after ${String(options.timeoutMs ?? 60_000)} ms)` : "";
      return {
        code: typeof f.code === "number" ? f.code : 1,
        stdout: f.stdout ?? "",
        stderr: (f.stderr ?? f.message ?? "") + killed,
      };
    },
  );
}

/** The last lines of npm's or tar's stderr, without stack frames. */
const tail = (text: string, lines = 12): string =>
  text
    .trim()
    .split("\n")
    .filter((l) => !/^npm error\s+at /.test(l))
    .slice(-lines)
    .join("\n");

describe("the npm package (npm pack, npm install -g)", () => {
  const work = mkdtempSync(join(tmpdir(), "keystone-edge-package-"));
  const prefix = join(work, "prefix");
  const bin = join(prefix, "bin", "keystone-edge");
  let tarball = "";
  /** `tar -tv` of the tarball: path → mode string (`-rwxr-xr-x`). */
  const entries = new Map<string, string>();

  beforeAll(async () => {
    const main = join(ROOT, PKG.bin["keystone-edge"] ?? "");
    if (!existsSync(main)) throw new Error(`${main} is missing: run npm run build first`);
    const packed = await run(
      "npm",
      ["pack", "--ignore-scripts", "--silent", "--pack-destination", work],
      { timeoutMs: 60_000 },
    );
    if (packed.code !== 0) throw new Error(`npm pack failed:\n${tail(packed.stderr)}`);
    tarball = join(work, `${PKG.name}-${PKG.version}.tgz`);
    if (!existsSync(tarball)) throw new Error(`npm pack left no ${tarball}`);
    const listed = await run("tar", ["-tvzf", tarball]);
    if (listed.code !== 0) throw new Error(`tar -tvzf ${tarball}: ${listed.stderr}`);
    for (const line of listed.stdout.split("\n").filter((l) => l !== "")) {
      const fields = line.split(/\s+/);
      entries.set(fields.at(-1) ?? "", fields[0] ?? "");
    }
  }, 90_000);

  afterAll(() => {
    rmSync(work, { recursive: true, force: true });
  });

  it("holds the program, package.json and README only: no tests, benchmarks or source maps", () => {
    const paths = [...entries.keys()];
    expect(paths.filter((p) => !ALLOWED.test(p))).toEqual([]);
    expect(paths).toEqual(
      expect.arrayContaining([
        "package/package.json",
        "package/README.md",
        "package/dist/src/cli/main.js",
      ]),
    );
    // the CLI runs from the tarball as packed (npm run build makes it executable; npm pack
    // keeps the mode it finds), and npm's bin link points at it
    expect(
      entries.get("package/dist/src/cli/main.js"),
      "dist/src/cli/main.js is executable (npm run build)",
    ).toBe("-rwxr-xr-x");
    expect(PKG.bin["keystone-edge"]).toBe("dist/src/cli/main.js");
    const main = readFileSync(join(ROOT, "dist/src/cli/main.js"), "utf8");
    expect(main.startsWith("#!/usr/bin/env node\n")).toBe(true);
  });

  it("installs with npm install -g --prefix: bin/keystone-edge prints the version and checks deploy/examples/config.yaml", async () => {
    // The install fetches the production dependencies: first make sure the registry answers.
    const registry = (await run("npm", ["config", "get", "registry"])).stdout.trim();
    const ping = await run("npm", ["ping", "--fetch-timeout=15000", "--fetch-retries=0"], {
      cwd: work,
      timeoutMs: 30_000,
    });
    if (ping.code !== 0) {
      throw new Error(
        `the npm registry ${registry} does not answer (npm ping failed): this test installs ` +
          `the packed tarball with npm install -g, which fetches its production dependencies ` +
          `from there. Make it reachable (or set npm's registry/proxy configuration).\n` +
          tail(ping.stderr),
      );
    }
    const installed = await run(
      "npm",
      [
        "install",
        "-g",
        "--prefix",
        prefix,
        tarball,
        "--ignore-scripts",
        "--no-audit",
        "--no-fund",
        "--prefer-offline",
        "--fetch-retries=1",
        "--fetch-timeout=30000",
      ],
      { cwd: work, timeoutMs: 110_000 },
    );
    if (installed.code !== 0) {
      throw new Error(
        `npm install -g of ${tarball} failed (exit ${String(installed.code)}). It fetches the ` +
          `production dependencies from the npm registry (${registry}) unless npm's cache ` +
          `has them: is the registry reachable from here?\n${tail(installed.stderr)}`,
      );
    }
    // npm links bin/keystone-edge to the package's main.js; production dependencies only
    const lib = join(prefix, "lib", "node_modules", PKG.name);
    expect(resolve(dirname(bin), readlinkSync(bin))).toBe(join(lib, "dist/src/cli/main.js"));
    for (const dep of Object.keys(PKG.dependencies)) {
      expect(existsSync(join(lib, "node_modules", dep)), dep).toBe(true);
    }
    for (const dev of ["typescript", "vitest", "eslint"]) {
      expect(PKG.devDependencies[dev], dev).toBeDefined();
      expect(existsSync(join(lib, "node_modules", dev)), dev).toBe(false);
    }

    const version = await run(bin, ["--version"], { cwd: work });
    expect(version.stderr).toBe("");
    expect(version.code).toBe(0);
    expect(version.stdout).toBe(`${PKG.version}\n`);

    // deploy/examples/config.yaml, its secret files and key repository moved under `work`
    const secrets = join(work, "secrets");
    const keys = join(work, "fernet-keys");
    mkdirSync(secrets, { mode: 0o700 });
    mkdirSync(keys, { mode: 0o700 });
    for (const name of ["password", "memcache_secret_key", "admin_secret"]) {
      writeFileSync(join(secrets, name), `${randomBytes(24).toString("base64")}\n`, {
        mode: 0o600,
      });
    }
    for (const index of ["0", "1"]) {
      writeFileSync(join(keys, index), generateFernetKeyText(), {
        mode: 0o600,
      });
    }
    const example = readFileSync(join(ROOT, "deploy/examples/config.yaml"), "utf8");
    expect(example).toContain("/etc/keystone-edge/secrets/");
    expect(example).toContain("key_repository: /etc/keystone/fernet-keys\n");
    const config = join(work, "config.yaml");
    writeFileSync(
      config,
      example
        .replaceAll("/etc/keystone-edge/secrets/", `${secrets}/`)
        .replaceAll("/etc/keystone/fernet-keys", keys),
    );
    const checked = await run(bin, ["check-config", "--json", config], { cwd: work });
    expect(checked.stderr).toBe("");
    expect(checked.code).toBe(0);
    const out = JSON.parse(checked.stdout) as {
      ok?: boolean;
      key_repository?: { key_count: number };
    };
    expect(out.ok).toBe(true);
    expect(out.key_repository?.key_count).toBe(2);
  }, 150_000);
});
