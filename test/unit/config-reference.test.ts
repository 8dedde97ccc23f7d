/**
 * The configuration reference in docs/configuration.md is generated from the schema
 * (`keystone-edge config-reference`): it must be exactly what the generator prints, name
 * every option of the schema once, and show the defaults the real loader fills in.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import * as prettier from "prettier";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { z } from "zod";
import {
  BEGIN_MARKER,
  configReference,
  END_MARKER,
  extractGeneratedBlock,
  renderConfigReference,
  renderValue,
  replaceGeneratedBlock,
  type OptionRow,
} from "../../src/cli/config-reference.js";
import { runCli } from "../harness/cli.js";
import { loadConfig, validateConfig, type SecretSources } from "../../src/config/load.js";
import { configSchema, SECRET_PATHS } from "../../src/config/schema.js";
import { ConfigError } from "../../src/errors.js";

const DOC = fileURLToPath(new URL("../../docs/configuration.md", import.meta.url));
const REGENERATE =
  "docs/configuration.md's options block is not what the schema says: run " +
  "`npm run build && node dist/src/cli/main.js config-reference --write docs/configuration.md`";

const doc = readFileSync(DOC, "utf8");
/** A file any test can read: what the loader checks of a TLS path (its contents are not read). */
const READABLE = fileURLToPath(import.meta.url);
const rows: readonly OptionRow[] = configReference().flatMap((s) => s.rows);

/** The cells of the generated block's table rows, by option path. */
function documentedRows(): { path: string; cells: string[] }[] {
  return extractGeneratedBlock(doc)
    .split("\n")
    .filter((line) => line.startsWith("| `"))
    .map((line) => {
      const cells = line
        .slice(1, -1)
        .split(/(?<!\\)\|/)
        .map((c) => c.trim());
      return { path: (cells[0] ?? "").replace(/^`|`$/g, ""), cells };
    });
}

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json => typeof v === "object" && v !== null;

/**
 * Leaf options from zod's own JSON Schema of the configuration (a walk independent of the
 * generator's): a property is a leaf unless it is an object, or a union of objects.
 */
function jsonSchemaLeaves(node: Json, path: readonly string[]): string[] {
  const alternatives = [node.oneOf, node.anyOf].find(Array.isArray) as Json[] | undefined;
  if (isRecord(node.properties)) {
    return Object.entries(node.properties).flatMap(([key, child]) =>
      jsonSchemaLeaves(child as Json, [...path, key]),
    );
  }
  if (alternatives?.every((a) => isRecord(a.properties))) {
    return [...new Set(alternatives.flatMap((a) => jsonSchemaLeaves(a, path)))];
  }
  return [path.join(".")];
}

function valueAt(root: unknown, path: string): unknown {
  let node = root;
  for (const key of path.split(".")) node = isRecord(node) ? node[key] : undefined;
  return node;
}

/** The minimal file shown in docs/configuration.md (its first YAML block). */
function minimalExample(): string {
  const m = /```yaml\n([\s\S]*?)```/.exec(doc);
  if (!m?.[1]) throw new Error("docs/configuration.md: no YAML example");
  return m[1];
}

const secrets: SecretSources = { env: {}, readFile: () => "a-secret-read-from-a-file" };

let dir = "";
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ke-config-reference-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("the configuration reference", () => {
  it("in docs/configuration.md is exactly what the generator prints", () => {
    expect(extractGeneratedBlock(doc), REGENERATE).toBe(renderConfigReference());
    expect(doc, REGENERATE).toBe(replaceGeneratedBlock(doc, renderConfigReference()));
  });

  it("is already as prettier formats it, so --write never fights format:check", async () => {
    const options = (await prettier.resolveConfig(DOC)) ?? {};
    const formatted = await prettier.format(doc, { ...options, filepath: DOC });
    expect(formatted, "the generator's tables must be aligned as prettier aligns them").toBe(doc);
  });

  it("names every option of the schema exactly once", () => {
    const schema = z.toJSONSchema(configSchema, { io: "input", unrepresentable: "any" });
    const leaves = jsonSchemaLeaves(schema, []).sort();
    const documented = documentedRows().map((r) => r.path);
    expect([...documented].sort()).toEqual(leaves);
    expect(new Set(documented).size).toBe(documented.length);
    expect(leaves.length).toBeGreaterThan(40);
  });

  it("describes every option, says what absence means and marks every secret", () => {
    for (const row of rows) {
      expect(row.description, row.path).not.toBe("");
      if (row.default.kind === "absent") expect(row.default.meaning, row.path).not.toBe("");
    }
    const secretRows = rows.filter((r) => r.secret).map((r) => r.path);
    expect(secretRows.sort()).toEqual(SECRET_PATHS.map((p) => p.join(".")).sort());
    for (const { path, cells } of documentedRows()) {
      const name = path.split(".").pop() ?? "";
      const secret = SECRET_PATHS.some((p) => p.join(".") === path);
      expect(cells[1]?.includes(`\`${name}_file\``), path).toBe(secret);
    }
  });

  it("types come from the schema: ranges, enums, lists, formats", () => {
    const type = (path: string): string | undefined => rows.find((r) => r.path === path)?.type;
    expect(type("keystone.timeout_ms")).toBe("integer, 1–120000 ms");
    expect(type("keystone.auth.type")).toBe("`password` | `application_credential`");
    expect(type("listen")).toBe("`host:port`");
    expect(type("upstream")).toBe("http(s) URL");
    expect(type("keystone.cafile")).toBe("path or `null`");
    expect(type("fernet.auth_methods")).toBe("list of non-empty strings, 1–32 items");
    expect(type("admin_secret")).toMatch(/^string, ≥ 16 characters; secret/);
  });

  describe("shows the defaults the loader fills in", () => {
    const check = async (document: Json, label: string): Promise<number> => {
      const file = join(dir, `${label}.yaml`);
      await writeFile(file, JSON.stringify(document));
      const config = loadConfig(file, { sources: secrets });
      const shown = new Map(documentedRows().map((r) => [r.path, r.cells[2]]));
      let compared = 0;
      for (const row of rows) {
        if (row.default.kind !== "value") continue;
        if (row.when && !row.when.values.includes(String(valueAt(config, row.when.key)))) continue;
        // An optional section left out gets no defaults: there is nothing to fill.
        if (row.within !== undefined && valueAt(config, row.within) === undefined) continue;
        const loaded = valueAt(config, row.path);
        expect(loaded, `${label}: ${row.path}`).toEqual(row.default.value);
        expect(shown.get(row.path), `${label}: ${row.path}`).toBe(renderValue(loaded));
        compared++;
      }
      return compared;
    };

    it("from the minimal example of docs/configuration.md, which loads", async () => {
      const example = parse(minimalExample()) as Json;
      expect(await check(example, "minimal")).toBeGreaterThan(20);
      // Objects given empty take the same defaults as objects left out.
      expect(await check({ ...example, cache: {}, auth_token: {} }, "empty")).toBeGreaterThan(20);
      // An optional section given with its required options only: its defaults filled in.
      const withTls = { ...example, tls: { certfile: READABLE, keyfile: READABLE } };
      expect(await check(withTls, "tls")).toBeGreaterThan(await check(example, "minimal-again"));
    });

    it("and every option shown as required is refused when left out", () => {
      const example = parse(minimalExample()) as Json;
      const password = structuredClone(example);
      (password.keystone as Json).auth = {
        type: "password",
        username: "edge",
        password: "pw",
        project_name: "service",
      };
      let refused = 0;
      const withTls = { ...example, tls: { certfile: READABLE, keyfile: READABLE } };
      for (const document of [example, password, withTls]) {
        validateConfig(document, { sources: secrets }); // complete as it is
        const kind = String(valueAt(document, "keystone.auth.type"));
        for (const row of rows) {
          if (row.default.kind !== "required") continue;
          if (row.when && !row.when.values.includes(kind)) continue;
          if (row.within !== undefined && valueAt(document, row.within) === undefined) continue;
          const copy = structuredClone(document);
          const parts = row.path.split(".");
          const name = parts.pop() ?? "";
          const parent = valueAt(copy, parts.join(".")) ?? copy;
          for (const key of [name, `${name}_file`, `${name}_env`]) {
            Reflect.deleteProperty(parent, key);
          }
          let problems: readonly string[] = [];
          try {
            validateConfig(copy, { sources: secrets });
          } catch (error) {
            if (!(error instanceof ConfigError)) throw error;
            problems = error.problems;
          }
          expect(
            problems.some((p) => p.startsWith(`${row.path}:`)),
            `${row.path} left out: ${problems.join("; ")}`,
          ).toBe(true);
          refused++;
        }
      }
      expect(refused).toBeGreaterThan(6);
    });
  });
});

describe("keystone-edge config-reference", () => {
  const run = runCli;

  it("prints the block", async () => {
    const r = await run(["config-reference"]);
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`${renderConfigReference()}\n`);
  });

  it("--write replaces the block between the markers and keeps the rest", async () => {
    const file = join(dir, "doc.md");
    await writeFile(file, `# Title\n\nprose\n\n${BEGIN_MARKER}\nstale\n${END_MARKER}\n\nmore\n`);
    const r = await run(["config-reference", "--write", file]);
    expect(r.status).toBe(0);
    const written = await readFile(file, "utf8");
    expect(written).toBe(
      `# Title\n\nprose\n\n${BEGIN_MARKER}\n\n${renderConfigReference()}\n\n${END_MARKER}\n\nmore\n`,
    );
    expect((await run(["config-reference", "--write", file])).stdout).toMatch(/up to date/);
  });

  it("refuses a file without the markers, and one it cannot read", async () => {
    const file = join(dir, "plain.md");
    await writeFile(file, "# no markers\n");
    const r = await run(["config-reference", "--write", file]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/BEGIN GENERATED/);
    expect(await readFile(file, "utf8")).toBe("# no markers\n");
    expect((await run(["config-reference", "--write", join(dir, "nope.md")])).status).toBe(2);
  });
});
