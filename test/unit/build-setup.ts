/**
 * vitest globalSetup of the "unit" project: make sure `dist/` (which the CLI-as-a-process
 * test runs) is built from the current sources, whichever way the suite was started
 * (`npm test` builds first; `vitest run --project unit` does not).
 */
import { execFileSync } from "node:child_process";
import { chmodSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

function newestMtimeMs(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtimeMs(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export default function setup(): void {
  const built =
    statSync(join(root, "dist/src/cli/main.js"), { throwIfNoEntry: false })?.mtimeMs ?? 0;
  const sources = Math.max(newestMtimeMs(join(root, "src")), newestMtimeMs(join(root, "bench")));
  if (built >= sources) return;
  execFileSync(
    process.execPath,
    [join(root, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.build.json"],
    {
      cwd: root,
      stdio: "inherit",
    },
  );
  // As `npm run build` does: the command is executable (the package test checks it).
  chmodSync(join(root, "dist/src/cli/main.js"), 0o755);
}
