/**
 * Every configuration the project ships passes `keystone-edge check-config --offline`, run
 * as the built program (`node dist/src/cli/main.js`; `npm run build` first): the full
 * examples in the docs' fenced YAML blocks (docs/configuration.md's minimal file among
 * them), the Kubernetes manifests' ConfigMaps, the Helm chart's rendered ConfigMap (both
 * modes, helm from test/harness/helm.ts) and the example files deploy/README.md and the
 * Dockerfile point to. Offline, nothing they name is read (secret files, TLS files, the
 * key repository live on the edge's host, not here), so the check is of the file itself.
 * A copy of each with a misspelt option exits 2 naming it: the check can fail.
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isMap, parse, parseAllDocuments, parseDocument } from "yaml";
import { ensureHelm, runHelm } from "../harness/helm.js";

const execFileAsync = promisify(execFile);
const repo = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const CLI = repo("dist/src/cli/main.js");
const CHART = repo("deploy/helm/keystone-edge");

type Json = Record<string, unknown>;
const isRecord = (v: unknown): v is Json =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** One shipped configuration: where it comes from, and its text. */
interface Example {
  readonly name: string;
  readonly text: string;
}

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let work = "";
beforeAll(() => {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first`);
  work = mkdtempSync(join(tmpdir(), "ke-examples-"));
});
afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

let written = 0;
async function checkConfig(text: string, ...flags: string[]): Promise<Run> {
  const file = join(work, `example-${String(written++)}.yaml`);
  writeFileSync(file, text);
  return execFileAsync(process.execPath, [CLI, "check-config", ...flags, file], {
    // Nothing of the test's environment: a secret given as <name>_env is not read anyway.
    env: { PATH: process.env["PATH"] ?? "" },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (e: unknown) => {
      const f = e as { code?: number; stdout?: string; stderr?: string };
      return { code: f.code ?? 1, stdout: f.stdout ?? "", stderr: f.stderr ?? "" };
    },
  );
}

/** A configuration file, as opposed to a fragment: it has the options every file needs. */
function isFullConfig(text: string): boolean {
  try {
    const doc = parse(text) as unknown;
    return isRecord(doc) && ["listen", "upstream", "keystone", "fernet"].every((k) => k in doc);
  } catch {
    return false;
  }
}

/** The fenced ```yaml blocks of a Markdown file that are whole configuration files. */
function fromMarkdown(path: string): Example[] {
  const text = readFileSync(repo(path), "utf8");
  return [...text.matchAll(/^```ya?ml\n([\s\S]*?)^```/gm)]
    .map((m, i) => ({ name: `${path}, YAML block ${String(i + 1)}`, text: m[1] ?? "" }))
    .filter((e) => isFullConfig(e.text));
}

/** The `config.yaml` of every ConfigMap in a stream of Kubernetes objects. */
function fromConfigMaps(stream: string, where: string): Example[] {
  return parseAllDocuments(stream).flatMap((doc) => {
    const object = doc.toJS() as unknown;
    if (!isRecord(object) || object["kind"] !== "ConfigMap") return [];
    const data = object["data"];
    const metadata = object["metadata"];
    const name = isRecord(metadata) ? String(metadata["name"]) : "?";
    if (!isRecord(data) || typeof data["config.yaml"] !== "string") return [];
    return [{ name: `${where}: ConfigMap ${name}`, text: data["config.yaml"] }];
  });
}

/**
 * The example files deploy/README.md, the Dockerfile and the systemd unit point to
 * (`examples/….yaml`, relative to deploy/), and every file in deploy/examples/.
 */
function deployExamples(): Example[] {
  const pointers = [
    "deploy/README.md",
    "deploy/docker/Dockerfile",
    "deploy/systemd/keystone-edge.service",
  ]
    .filter((p) => existsSync(repo(p)))
    .flatMap((p) => [...readFileSync(repo(p), "utf8").matchAll(/\bexamples\/[\w.-]+\.ya?ml\b/g)])
    .map((m) => `deploy/${m[0]}`);
  const listed = existsSync(repo("deploy/examples"))
    ? readdirSync(repo("deploy/examples"))
        .filter((f) => /\.ya?ml$/.test(f))
        .map((f) => `deploy/examples/${f}`)
    : [];
  return [...new Set([...pointers, ...listed])].map((path) => {
    expect(existsSync(repo(path)), `${path} (pointed to) exists`).toBe(true);
    return { name: path, text: readFileSync(repo(path), "utf8") };
  });
}

/** The example with an option misspelt: `upstream` as `upstrem`. */
function misspelt(text: string): string {
  const doc = parseDocument(text);
  if (!isMap(doc.contents)) throw new Error("not a mapping");
  const upstream = doc.get("upstream");
  doc.delete("upstream");
  doc.set("upstrem", upstream);
  return doc.toString();
}

/** Each example passes offline (exit 0, nothing on stderr); its misspelt copy exits 2. */
async function expectEachPasses(examples: readonly Example[]): Promise<void> {
  expect(examples.length).toBeGreaterThan(0);
  const runs = await Promise.all(examples.map((e) => checkConfig(e.text, "--offline")));
  runs.forEach((r, i) => {
    const name = examples[i]?.name ?? "";
    expect(r.stderr, name).toBe("");
    expect(r.code, name).toBe(0);
    expect(r.stdout.split("\n")[0], name).toMatch(/^configuration OK: /);
  });
  const broken = await Promise.all(examples.map((e) => checkConfig(misspelt(e.text), "--offline")));
  broken.forEach((r, i) => {
    const name = examples[i]?.name ?? "";
    expect(r.code, `${name}, misspelt`).toBe(2);
    expect(
      r.stderr.split("\n").filter((l) => l !== ""),
      `${name}, misspelt`,
    ).toEqual([
      "keystone-edge check-config: upstream: required",
      "keystone-edge check-config: upstrem: unknown option (did you mean upstream?)",
    ]);
  });
}

describe("every shipped configuration passes check-config --offline", () => {
  it("the docs' full examples, docs/configuration.md's minimal file first", async () => {
    const docs = ["docs/configuration.md", "README.md", "deploy/README.md"].concat(
      readdirSync(repo("docs"))
        .filter((f) => f.endsWith(".md") && f !== "configuration.md")
        .map((f) => `docs/${f}`),
    );
    const examples = docs.filter((p) => existsSync(repo(p))).flatMap(fromMarkdown);
    expect(examples[0]?.name).toBe("docs/configuration.md, YAML block 1");
    await expectEachPasses(examples);
  });

  it("the Kubernetes manifests' ConfigMaps", async () => {
    const examples = ["nova-api-sidecar.yaml", "keystone-edge-daemonset.yaml"].flatMap((f) =>
      fromConfigMaps(readFileSync(repo(`deploy/kubernetes/${f}`), "utf8"), f),
    );
    expect(examples).toHaveLength(2);
    await expectEachPasses(examples);
  });

  it("the Helm chart's rendered ConfigMap, in deployment and daemonset mode", async () => {
    const helm = await ensureHelm();
    const renders = await Promise.all(
      [[], ["--set", "mode=daemonset,identity.enabled=true"]].map((set) =>
        runHelm(helm, ["template", "nova-api-edge", CHART, "--namespace", "openstack", ...set]),
      ),
    );
    const examples = renders.flatMap((r, i) => {
      expect(r.code, r.stderr).toBe(0);
      return fromConfigMaps(r.stdout, i === 0 ? "helm template" : "helm template, daemonset");
    });
    expect(examples).toHaveLength(2);
    await expectEachPasses(examples);
  }, 300_000);

  it("the example files deploy/README.md and the Dockerfile point to", async () => {
    await expectEachPasses(deployExamples());
  });
});
