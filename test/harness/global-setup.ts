/**
 * Owns: the vitest globalSetup of the "integration" project. Makes sure the Debian packages are
 * installed (test/harness/install-deps.sh), starts one harness Keystone for the whole run,
 * provides its plain `KeystoneInfo` to test workers (`inject('keystone')`), and stops it in the
 * returned teardown.
 *
 * Environment:
 * - `KEYSTONE_EDGE_HARNESS_VERBOSE=1` prints each start step;
 * - `KEYSTONE_EDGE_HARNESS_CACHE=memcached` runs Keystone with a private memcached (validation
 *   ~15 ms instead of ~0.7 s); default `disabled`.
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { TestProject } from "vitest/node";

import { startKeystone } from "./keystone.js";

export type { KeystoneInfo } from "./client.js";

const INSTALL_DEPS = fileURLToPath(new URL("./install-deps.sh", import.meta.url));

/**
 * Run install-deps.sh only when `install-deps.sh --check` reports a missing package.
 * @throws if installation fails (e.g. not root, no apt access)
 */
export function ensureDebianDeps(): void {
  const check = spawnSync("bash", [INSTALL_DEPS, "--check"], { encoding: "utf8" });
  if (check.status === 0) return;
  const install = spawnSync("bash", [INSTALL_DEPS], { stdio: "inherit" });
  if (install.status !== 0) {
    throw new Error(
      `${INSTALL_DEPS} failed (exit ${String(install.status)}); ` +
        `missing packages: ${check.stderr.trim()}`,
    );
  }
}

/**
 * vitest 4 globalSetup: start Keystone, `provide('keystone', info)`, return the teardown.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  ensureDebianDeps();
  const verbose = process.env["KEYSTONE_EDGE_HARNESS_VERBOSE"] === "1";
  const cache =
    process.env["KEYSTONE_EDGE_HARNESS_CACHE"] === "memcached" ? "memcached" : "disabled";
  const keystone = await startKeystone({
    cache,
    ...(verbose
      ? {
          log: (msg: string) => {
            console.log(msg);
          },
        }
      : {}),
  });
  console.log(
    `keystone harness: ${keystone.url} ready in ${(keystone.startupMs / 1000).toFixed(1)} s`,
  );
  project.provide("keystone", keystone.info);
  return async () => {
    await keystone.stop();
  };
}
