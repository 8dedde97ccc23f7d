/**
 * The layers of src/ hold: the lint rule generated from `LAYERS` (eslint.config.js) fails
 * on a back-edge, every import of src/ obeys the layers (checked here independently of
 * ESLint), the import graph has no cycle, and docs/architecture.md's table is `LAYERS`.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { ESLint } from "eslint";
import tseslint from "typescript-eslint";
import { describe, expect, it } from "vitest";

import { LAYERS } from "../../../eslint.config.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../../..");
const SRC = join(ROOT, "src");

/** The folder of src/ a path is in, or `(base)` for a file directly in src/. */
function folderOf(path: string): string {
  const parts = relative(SRC, path).split("/");
  return parts.length === 1 ? "(base)" : (parts[0] ?? "(base)");
}

const levelOf = new Map<string, number>(
  LAYERS.flatMap((layer, level) => layer.map((f) => [f, level] as const)),
);

/** Every .ts file of src/ with the src/ files it imports (relative specifiers). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const walk = (dir: string): void => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(".ts")) {
        const text = readFileSync(path, "utf8");
        const deps = [
          ...text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+"(\.{1,2}\/[^"]+)"/g),
        ].map((m) => normalize(join(dirname(path), m[1] ?? "")).replace(/\.js$/, ".ts"));
        graph.set(path, deps);
      }
    }
  };
  walk(SRC);
  return graph;
}

describe("layers", () => {
  it("npm run lint refuses a back-edge, naming both layers, and lets a downward import pass", async () => {
    // The project's own configuration; the probe, a file the TypeScript project does not
    // hold, is linted without type information (the layer rule needs none).
    const eslint = new ESLint({
      cwd: ROOT,
      overrideConfig: [{ files: ["**/layer-probe.ts"], ...tseslint.configs.disableTypeChecked }],
    });
    const probe = (folder: string, specifier: string) =>
      eslint.lintText(`import { x } from "${specifier}";\nexport const y: unknown = x;\n`, {
        filePath: join(SRC, folder, "layer-probe.ts"),
      });
    const messages = async (folder: string, specifier: string) =>
      (await probe(folder, specifier)).flatMap((r) =>
        r.messages.filter((m) => m.ruleId === "no-restricted-imports").map((m) => m.message),
      );
    expect(await messages("cache", "../admin/metrics.js")).toEqual([
      expect.stringContaining("cache/ (layer 4) may not import admin/ (layer 8)"),
    ]);
    expect(await messages("keystone", "../drill/faults.js")).toEqual([
      expect.stringContaining("keystone/ (layer 4) may not import drill/"),
    ]);
    // Same layer: neither way.
    expect(await messages("cache", "../keystone/endpoint.js")).toHaveLength(1);
    expect(await messages("validation", "../proxy/server.js")).toHaveLength(1);
    // From a subfolder too.
    expect(await messages("cache/deep", "../../admin/metrics.js")).toHaveLength(1);
    expect(await messages("cache/deep", "../l1.js")).toEqual([]);
    expect(await messages("validation", "../cache/l1.js")).toEqual([]);
    expect(await messages("edge", "../admin/metrics.js")).toEqual([]);
  }, 60_000);

  it("every import of src/ goes down the layers, and the graph has no cycle", () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(50);
    const against: string[] = [];
    for (const [file, deps] of graph) {
      const from = folderOf(file);
      const fromLevel = levelOf.get(from);
      expect(fromLevel, `${from} is in no layer`).toBeDefined();
      for (const dep of deps) {
        expect(graph.has(dep), `${relative(ROOT, file)} imports a missing ${dep}`).toBe(true);
        const to = folderOf(dep);
        if (to === from) continue;
        const toLevel = levelOf.get(to) ?? Infinity;
        if (!(toLevel < (fromLevel ?? -1)))
          against.push(`${relative(SRC, file)} → ${relative(SRC, dep)}`);
      }
    }
    expect(against).toEqual([]);

    // Depth-first search for a back edge among files.
    const state = new Map<string, "open" | "done">();
    const cycles: string[] = [];
    const visit = (file: string, path: string[]): void => {
      state.set(file, "open");
      for (const dep of graph.get(file) ?? []) {
        if (state.get(dep) === "open") {
          cycles.push(
            [...path.slice(path.indexOf(dep)), dep].map((f) => relative(SRC, f)).join(" → "),
          );
        } else if (!state.has(dep)) visit(dep, [...path, dep]);
      }
      state.set(file, "done");
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file, [file]);
    expect(cycles).toEqual([]);
  });

  it("docs/architecture.md's table is LAYERS", () => {
    const doc = readFileSync(join(ROOT, "docs/architecture.md"), "utf8");
    const section = doc.split("## Layers")[1]?.split("\n## ")[0] ?? "";
    const rows = [...section.matchAll(/^\| (\d+)\s+\| ([^|]+)\|/gm)].map((m) => ({
      level: Number(m[1]),
      folders: [...(m[2] ?? "").matchAll(/`([a-z-]+)\/`|\((base)\)/g)].map((f) => {
        const name = f[1] ?? f[2] ?? "";
        return name === "base" ? "(base)" : name;
      }),
    }));
    expect(rows.map((r) => r.folders)).toEqual(LAYERS);
    expect(rows.map((r) => r.level)).toEqual(LAYERS.map((_, i) => i));
  });
});
