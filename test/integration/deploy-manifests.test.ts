/**
 * The deploy kit's image, Kubernetes manifests and Helm chart are ones an operator can
 * use as they are:
 *
 * - the Dockerfile builds on node:24-bookworm-slim and runs on distroless Node 24 as a
 *   numeric non-root user; the files its runtime stage copies are a complete program (the
 *   CLI runs from a copy of that layout, and it imports no dev dependency, so
 *   `npm prune --omit=dev` is safe); its health check passes on /healthz and fails
 *   otherwise; .dockerignore lets in what the build stage copies;
 * - every manifest is of a known kind, with known pod and container fields; the edge runs
 *   hardened (non-root as the image's user, read-only root, no capabilities, seccomp),
 *   probed on its admin port (/readyz, /healthz), and has time to drain (preStop + --grace
 *   < terminationGracePeriodSeconds; the sidecar's nova-api outlives the drain);
 * - the config.yaml a pod would see passes `keystone-edge check-config`, with the pod's
 *   files: the ConfigMap's and Secrets' mounts are laid out in a directory, each secret
 *   file the config names must come from a mounted Secret and the key repository from a
 *   whole-Secret mount; the listeners' ports are the container's `api` and `admin` ports;
 * - the ServiceMonitor selects the metrics Services and their `admin` port; the
 *   PrometheusRule's groups are deploy/prometheus/alerts.yaml's;
 * - the Helm chart: values documented (values.yaml and README), every value used and every
 *   used value defined, blocks balanced, `helm lint --strict` in both modes, and what
 *   `helm template` renders passes all of the above; inconsistent values are refused.
 *   helm itself: test/harness/helm.ts (a pinned helm from the npm registry).
 *
 * Not here: server-side validation (`kubectl apply --dry-run=server`) needs a cluster,
 * and kubectl's client-side dry run and validation also ask an API server.
 */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { isMap, parse, parseAllDocuments, parseDocument, stringify, type YAMLMap } from "yaml";
import { createPki } from "../harness/pki.js";
import { ensureHelm, runHelm } from "../harness/helm.js";
import { freePort } from "../harness/net.js";

const execFileAsync = promisify(execFile);
const repo = (path: string): string => fileURLToPath(new URL(`../../${path}`, import.meta.url));
const CLI = repo("dist/src/cli/main.js");
const CHART = repo("deploy/helm/keystone-edge");
const EDGE = "keystone-edge";
const SECRET = "fixture-secret-of-32-characters!";

type Json = Record<string, unknown>;
type Labels = Record<string, string>;

const isRecord = (v: unknown): v is Json =>
  typeof v === "object" && v !== null && !Array.isArray(v);

const read = (path: string): string => readFileSync(repo(path), "utf8");

const temps: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temps.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------
// Dockerfile

interface Instruction {
  readonly op: string;
  readonly args: string;
}

interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: Instruction[];
}

/** Docker's parser, as far as this Dockerfile needs: continuations, comments, ARG in FROM. */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let current = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (current === "" && /^\s*(#|$)/.test(line)) continue;
    if (current !== "" && /^\s*#/.test(line)) continue; // comments inside a continuation
    if (line.endsWith("\\")) {
      current += line.slice(0, -1) + " ";
      continue;
    }
    logical.push((current + line).trim());
    current = "";
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  const expand = (s: string): string =>
    s.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a?: string, b?: string) => args.get(a ?? b ?? "") ?? "");
  for (const line of logical) {
    const m = /^(\w+)\s+([\s\S]*)$/.exec(line);
    if (!m) throw new Error(`Dockerfile: cannot read ${line}`);
    const op = (m[1] ?? "").toUpperCase();
    const rest = m[2] ?? "";
    const stage = stages.at(-1);
    if (op === "ARG" && stage === undefined) {
      const [name, value] = rest.split("=", 2);
      args.set(name ?? "", value ?? "");
    } else if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest);
      if (!f) throw new Error(`Dockerfile: cannot read ${line}`);
      stages.push({ from: expand(f[1] ?? ""), name: f[2], instructions: [] });
    } else {
      if (stage === undefined) throw new Error(`Dockerfile: ${op} before FROM`);
      stage.instructions.push({ op, args: rest });
    }
  }
  return { args, stages };
}

/** An exec-form instruction's argument list. */
function execForm(args: string): string[] {
  const parsed: unknown = JSON.parse(args);
  if (!Array.isArray(parsed) || !parsed.every((a) => typeof a === "string")) {
    throw new Error(`expected the exec form (a JSON list of strings): ${args}`);
  }
  return parsed;
}

function only(stage: Stage, op: string): Instruction[] {
  return stage.instructions.filter((i) => i.op === op);
}

function last(stage: Stage, op: string): Instruction {
  const found = only(stage, op).at(-1);
  if (found === undefined) throw new Error(`no ${op} in the stage FROM ${stage.from}`);
  return found;
}

/** `COPY [--from=x] [--chown=…] SRC… DEST`. */
function copyOf(i: Instruction): { from: string | undefined; sources: string[]; dest: string } {
  const words = i.args.split(/\s+/);
  const from = words.find((w) => w.startsWith("--from="))?.slice("--from=".length);
  const paths = words.filter((w) => !w.startsWith("--"));
  const dest = paths.pop();
  if (dest === undefined || paths.length === 0) throw new Error(`COPY ${i.args}`);
  return { from, sources: paths, dest };
}

const dockerfile = parseDockerfile(read("deploy/docker/Dockerfile"));
const buildStage = (): Stage => {
  const s = dockerfile.stages[0];
  if (s === undefined) throw new Error("no stage");
  return s;
};
const runtimeStage = (): Stage => {
  const s = dockerfile.stages.at(-1);
  if (s === undefined) throw new Error("no stage");
  return s;
};
/** The image's user, numeric. */
const imageUser = (): { uid: number; gid: number | undefined } => {
  const user = last(runtimeStage(), "USER").args;
  const m = /^(\d+)(?::(\d+))?$/.exec(user);
  if (!m) throw new Error(`USER ${user} is not numeric`);
  return { uid: Number(m[1]), gid: m[2] === undefined ? undefined : Number(m[2]) };
};

/** Bare module specifiers a built JavaScript file imports. */
function bareImports(code: string): string[] {
  const found = [
    ...code.matchAll(/\bfrom\s+["']([^"']+)["']/g),
    ...code.matchAll(/\bimport\s*\(\s*["']([^"']+)["']\s*\)/g),
    ...code.matchAll(/^\s*import\s+["']([^"']+)["']/gm),
  ].map((m) => m[1] ?? "");
  return found.filter((s) => !s.startsWith(".") && !s.startsWith("node:") && !s.startsWith("/"));
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".js"))
    .map((e) => join(e.parentPath, e.name));
}

/** .dockerignore with Docker's rules for the patterns it uses: `*` and `!path`, last match wins. */
function dockerIgnored(patterns: string[], path: string): boolean {
  let ignored = false;
  for (const p of patterns) {
    const negated = p.startsWith("!");
    const pattern = (negated ? p.slice(1) : p).replace(/\/$/, "");
    const re = new RegExp(
      "^" +
        pattern
          .split("*")
          .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
          .join("[^/]*") +
        "(/.*)?$",
    );
    if (re.test(path)) ignored = !negated;
  }
  return ignored;
}

describe("deploy/docker/Dockerfile", () => {
  it("builds on node:24-bookworm-slim and runs on distroless Node 24 as a numeric non-root user", () => {
    const [build, runtime] = dockerfile.stages;
    expect(dockerfile.stages).toHaveLength(2);
    expect(build?.from).toBe("node:24-bookworm-slim");
    expect(build?.name).toBe("build");
    expect(runtime?.from).toMatch(
      /^gcr\.io\/distroless\/nodejs24-debian12(:nonroot)?(@sha256:[0-9a-f]{64})?$/,
    );
    // the build: install exactly the lock file, compile, drop dev dependencies, in that order
    const runs = only(buildStage(), "RUN")
      .map((i) => i.args)
      .join(" && ");
    const steps = ["npm ci", "npm run build", "npm prune --omit=dev"].map((s) => runs.indexOf(s));
    expect(steps.every((at) => at >= 0)).toBe(true);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    // distroless has no shell: no RUN, and every command in the exec form
    expect(only(runtimeStage(), "RUN")).toEqual([]);
    const { uid, gid } = imageUser();
    expect(uid).toBeGreaterThan(0);
    expect(gid).toBeGreaterThan(0);
    expect(only(runtimeStage(), "USER")).toHaveLength(1);
    expect(last(runtimeStage(), "STOPSIGNAL").args).toBe("SIGTERM");
    const exposed = only(runtimeStage(), "EXPOSE").flatMap((i) => i.args.split(/\s+/));
    expect(exposed).toEqual(expect.arrayContaining(["8774", "9464"]));
    const entrypoint = execForm(last(runtimeStage(), "ENTRYPOINT").args);
    expect(entrypoint).toEqual(["/nodejs/bin/node", "/app/dist/src/cli/main.js"]);
    expect(execForm(last(runtimeStage(), "CMD").args).slice(0, 3)).toEqual([
      "serve",
      "--config",
      "/etc/keystone-edge/config.yaml",
    ]);
    // the build stage copies what tsconfig.build.json compiles
    const tsconfig = parse(read("tsconfig.build.json")) as { extends: string; include: string[] };
    const copied = only(buildStage(), "COPY").flatMap((i) => copyOf(i).sources);
    expect(copied).toEqual(
      expect.arrayContaining([
        "package.json",
        "package-lock.json",
        "tsconfig.build.json",
        tsconfig.extends.replace(/^\.\//, ""),
        ...tsconfig.include,
      ]),
    );
  });

  it("copies a complete program: the CLI runs from the runtime stage's layout, with production dependencies only", async () => {
    expect(existsSync(CLI)).toBe(true); // npm run build
    const workdir = last(buildStage(), "WORKDIR").args;
    const appdir = last(runtimeStage(), "WORKDIR").args;
    const image = tempDir("ke-image-");
    for (const i of only(runtimeStage(), "COPY")) {
      const { from, sources, dest } = copyOf(i);
      expect(from).toBe("build");
      for (const source of sources) {
        expect(source.startsWith(`${workdir}/`), source).toBe(true);
        const inRepo = repo(posix.relative(workdir, source));
        const target = join(image, posix.resolve(appdir, dest));
        mkdirSync(dirname(target), { recursive: true });
        if (source.endsWith("/node_modules")) symlinkSync(inRepo, target);
        else cpSync(inRepo, target, { recursive: true });
      }
    }
    const [node, script, ...rest] = execForm(last(runtimeStage(), "ENTRYPOINT").args);
    expect(node).toBe("/nodejs/bin/node");
    expect(rest).toEqual([]);
    const main = join(image, script ?? "");
    expect(existsSync(main)).toBe(true);
    const pkg = JSON.parse(read("package.json")) as {
      version: string;
      bin: Record<string, string>;
      dependencies: Record<string, string>;
    };
    expect(posix.resolve(appdir, pkg.bin[EDGE] ?? "")).toBe(script);
    const version = await execFileAsync(process.execPath, [main, "--version"]);
    expect(version.stdout.trim()).toBe(pkg.version);
    // the CMD's options are serve's
    const cmd = execForm(last(runtimeStage(), "CMD").args);
    const help = await execFileAsync(process.execPath, [main, cmd[0] ?? "", "--help"]);
    for (const option of cmd.filter((a) => a.startsWith("--")))
      expect(help.stdout).toContain(option);
    // npm prune --omit=dev keeps what dist/src imports
    const imported = new Set(
      jsFiles(join(image, appdir, "dist/src"))
        .flatMap((f) => bareImports(readFileSync(f, "utf8")))
        .map((s) =>
          s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : (s.split("/")[0] ?? ""),
        ),
    );
    expect(imported.size).toBeGreaterThan(3);
    for (const name of imported) expect(Object.keys(pkg.dependencies), name).toContain(name);
  });

  it("has a health check that passes while /healthz answers 200 and fails otherwise", async () => {
    const healthcheck = last(runtimeStage(), "HEALTHCHECK").args;
    const m = /^((?:--\S+\s+)*)CMD\s+(\[.*\])$/.exec(healthcheck);
    expect(m).not.toBeNull();
    const [node, flag, script] = execForm(m?.[2] ?? "[]");
    expect(node).toBe(execForm(last(runtimeStage(), "ENTRYPOINT").args)[0]);
    expect(flag).toBe("-e");
    expect(script).toContain("http://127.0.0.1:9464/healthz");
    const port = await freePort();
    const run = (): Promise<number> =>
      execFileAsync(process.execPath, [
        "-e",
        (script ?? "").replace("127.0.0.1:9464", `127.0.0.1:${port}`),
      ]).then(
        () => 0,
        (e: unknown) => (e as { code: number }).code,
      );
    let status = 200;
    const paths: string[] = [];
    const server = createServer((req, res) => {
      paths.push(req.url ?? "");
      res.writeHead(req.url === "/healthz" ? status : 404).end();
    });
    await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
    try {
      expect(await run()).toBe(0);
      status = 503;
      expect(await run()).toBe(1);
      expect(paths).toEqual(["/healthz", "/healthz"]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
    expect(await run()).toBe(1); // nothing listening
  });

  it(".dockerignore lets in what the build stage copies, and nothing else of the checkout", () => {
    const patterns = read(".dockerignore")
      .split("\n")
      .map((l) => l.trim())
      .filter((l) => l !== "" && !l.startsWith("#"));
    for (const i of only(buildStage(), "COPY")) {
      for (const source of copyOf(i).sources) {
        expect(existsSync(repo(source)), source).toBe(true);
        expect(dockerIgnored(patterns, source), source).toBe(false);
      }
    }
    for (const path of ["node_modules", "dist", ".git", "test", "deploy", "docs", ".ci"]) {
      expect(dockerIgnored(patterns, path), path).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Kubernetes objects

interface Meta {
  name: string;
  namespace?: string;
  labels?: Labels;
  annotations?: Labels;
}
interface K8s {
  apiVersion: string;
  kind: string;
  metadata: Meta;
}
interface KeyToPath {
  key: string;
  path: string;
}
interface Probe {
  httpGet?: { path: string; port: number | string };
  [field: string]: unknown;
}
interface Container {
  name: string;
  image: string;
  command?: string[];
  args?: string[];
  ports?: { name?: string; containerPort: number }[];
  env?: { name: string; value?: string; valueFrom?: Json }[];
  readinessProbe?: Probe;
  livenessProbe?: Probe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  resources?: { requests?: Labels; limits?: Labels };
  securityContext?: Json & {
    runAsUser?: number;
    runAsNonRoot?: boolean;
    capabilities?: { drop?: string[]; add?: string[] };
    seccompProfile?: { type: string };
  };
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean; subPath?: string }[];
}
interface Volume {
  name: string;
  configMap?: { name: string; items?: KeyToPath[] };
  secret?: { secretName: string; items?: KeyToPath[] };
  projected?: {
    sources: {
      configMap?: { name: string; items?: KeyToPath[] };
      secret?: { name: string; items?: KeyToPath[] };
    }[];
  };
  emptyDir?: Json;
}
interface PodSpec {
  hostNetwork?: boolean;
  dnsPolicy?: string;
  terminationGracePeriodSeconds?: number;
  automountServiceAccountToken?: boolean;
  securityContext?: Json & {
    runAsNonRoot?: boolean;
    runAsUser?: number;
    seccompProfile?: { type: string };
  };
  containers: Container[];
  volumes?: Volume[];
}
interface Workload extends K8s {
  spec: {
    selector: { matchLabels: Labels };
    template: { metadata: Meta; spec: PodSpec };
    updateStrategy?: { rollingUpdate?: { maxSurge?: number | string } };
  };
}
interface Service extends K8s {
  spec: {
    type?: string;
    clusterIP?: string;
    selector: Labels;
    ports: { name: string; port: number; targetPort: number | string }[];
  };
}
interface ConfigMap extends K8s {
  data: Labels;
}
interface ServiceMonitor extends K8s {
  spec: {
    selector: { matchLabels: Labels };
    namespaceSelector?: { matchNames?: string[] };
    endpoints: { port: string; path?: string }[];
  };
}
interface PrometheusRule extends K8s {
  spec: { groups: unknown };
}

const API_VERSIONS: Record<string, string> = {
  ConfigMap: "v1",
  Service: "v1",
  Deployment: "apps/v1",
  DaemonSet: "apps/v1",
  PodDisruptionBudget: "policy/v1",
  HorizontalPodAutoscaler: "autoscaling/v2",
  ServiceMonitor: "monitoring.coreos.com/v1",
  PrometheusRule: "monitoring.coreos.com/v1",
};

// Field names of the Kubernetes API (core/v1, 1.30+), for the parts these manifests fill in.
const FIELDS = {
  pod: "activeDeadlineSeconds affinity automountServiceAccountToken containers dnsConfig dnsPolicy enableServiceLinks ephemeralContainers hostAliases hostIPC hostNetwork hostPID hostUsers hostname imagePullSecrets initContainers nodeName nodeSelector os overhead preemptionPolicy priority priorityClassName readinessGates resourceClaims resources restartPolicy runtimeClassName schedulerName schedulingGates securityContext serviceAccountName setHostnameAsFQDN shareProcessNamespace subdomain terminationGracePeriodSeconds tolerations topologySpreadConstraints volumes",
  container:
    "args command env envFrom image imagePullPolicy lifecycle livenessProbe name ports readinessProbe resizePolicy resources restartPolicy securityContext startupProbe stdin stdinOnce terminationMessagePath terminationMessagePolicy tty volumeDevices volumeMounts workingDir",
  probe:
    "exec failureThreshold grpc httpGet initialDelaySeconds periodSeconds successThreshold tcpSocket terminationGracePeriodSeconds timeoutSeconds",
  httpGet: "host httpHeaders path port scheme",
  lifecycle: "postStart preStop stopSignal",
  handler: "exec httpGet sleep tcpSocket",
  containerSecurity:
    "allowPrivilegeEscalation appArmorProfile capabilities privileged procMount readOnlyRootFilesystem runAsGroup runAsNonRoot runAsUser seLinuxOptions seccompProfile windowsOptions",
  podSecurity:
    "appArmorProfile fsGroup fsGroupChangePolicy runAsGroup runAsNonRoot runAsUser seLinuxChangePolicy seLinuxOptions seccompProfile supplementalGroups supplementalGroupsPolicy sysctls windowsOptions",
  port: "containerPort hostIP hostPort name protocol",
  volumeMount: "mountPath mountPropagation name readOnly recursiveReadOnly subPath subPathExpr",
  volume:
    "name configMap secret projected emptyDir hostPath persistentVolumeClaim downwardAPI csi ephemeral image",
  resources: "claims limits requests",
};

function expectFields(value: unknown, kind: keyof typeof FIELDS, where: string): void {
  expect(isRecord(value), where).toBe(true);
  const known = new Set(FIELDS[kind].split(" "));
  for (const key of Object.keys(value as Json))
    expect(known.has(key), `${where}.${key}`).toBe(true);
}

function loadDocuments(text: string, source: string): K8s[] {
  const docs: K8s[] = [];
  for (const doc of parseAllDocuments(text)) {
    expect(doc.errors, source).toEqual([]);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    docs.push(value as K8s);
  }
  return docs;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

function checkObjects(docs: readonly K8s[], source: string, namespace: string): void {
  expect(docs.length, source).toBeGreaterThan(0);
  const seen = new Set<string>();
  for (const d of docs) {
    const where = `${source}: ${d.kind}/${d.metadata.name}`;
    expect(API_VERSIONS[d.kind], where).toBeDefined();
    expect(d.apiVersion, where).toBe(API_VERSIONS[d.kind]);
    expect(d.metadata.name, where).toMatch(DNS_LABEL);
    expect(d.metadata.name.length, where).toBeLessThanOrEqual(63);
    expect(d.metadata.namespace, where).toBe(namespace);
    for (const [k, v] of Object.entries(d.metadata.labels ?? {})) {
      expect(typeof v, `${where} label ${k}`).toBe("string");
      expect(v.length, `${where} label ${k}`).toBeLessThanOrEqual(63);
    }
    expect(seen.has(`${d.kind}/${d.metadata.name}`), `${where} twice`).toBe(false);
    seen.add(`${d.kind}/${d.metadata.name}`);
  }
}

function ofKind<T extends K8s>(docs: readonly K8s[], kind: string): T[] {
  return docs.filter((d) => d.kind === kind) as T[];
}

function workloads(docs: readonly K8s[]): Workload[] {
  return docs.filter((d) => d.kind === "Deployment" || d.kind === "DaemonSet") as Workload[];
}

const selects = (selector: Labels, labels: Labels | undefined): boolean =>
  Object.entries(selector).every(([k, v]) => labels?.[k] === v);

function edgeContainer(w: Workload): Container {
  const c = w.spec.template.spec.containers.find((x) => x.name === EDGE);
  if (c === undefined) throw new Error(`${w.metadata.name}: no ${EDGE} container`);
  return c;
}

function option(args: readonly string[], name: string): string {
  const at = args.indexOf(name);
  const value = args[at + 1];
  if (at < 0 || value === undefined) throw new Error(`${name} missing from ${args.join(" ")}`);
  return value;
}

function portNumber(c: Container, port: number | string): number | undefined {
  return typeof port === "number" ? port : c.ports?.find((p) => p.name === port)?.containerPort;
}

/** The edge's pod: hardened, probed on its admin port, with time to drain. */
function checkEdgePod(w: Workload): { grace: number; preStop: number; period: number } {
  const where = `${w.kind}/${w.metadata.name}`;
  const pod = w.spec.template.spec;
  expect(selects(w.spec.selector.matchLabels, w.spec.template.metadata.labels), where).toBe(true);
  expectFields(pod, "pod", `${where} pod`);
  expectFields(pod.securityContext, "podSecurity", `${where} pod securityContext`);
  expect(pod.securityContext?.runAsNonRoot, where).toBe(true);
  expect(pod.securityContext?.seccompProfile?.type, where).toBe("RuntimeDefault");
  expect(pod.automountServiceAccountToken, where).toBe(false);
  for (const v of pod.volumes ?? []) expectFields(v, "volume", `${where} volume ${v.name}`);
  const used = new Set(pod.containers.flatMap((c) => (c.volumeMounts ?? []).map((m) => m.name)));
  expect([...used].sort(), `${where}: volumes mounted`).toEqual(
    (pod.volumes ?? []).map((v) => v.name).sort(),
  );
  for (const c of pod.containers) {
    const at = `${where} container ${c.name}`;
    expectFields(c, "container", at);
    expectFields(c.securityContext, "containerSecurity", `${at} securityContext`);
    expect(c.securityContext?.allowPrivilegeEscalation, at).toBe(false);
    expect(c.securityContext?.readOnlyRootFilesystem, at).toBe(true);
    expect(c.securityContext?.privileged ?? false, at).toBe(false);
    expect(c.securityContext?.capabilities?.drop, at).toEqual(["ALL"]);
    expect(c.securityContext?.capabilities?.add, at).toBeUndefined();
    expect(c.securityContext?.runAsNonRoot ?? pod.securityContext?.runAsNonRoot, at).toBe(true);
    const uid = c.securityContext?.runAsUser ?? pod.securityContext?.runAsUser;
    expect(uid, at).toBeGreaterThan(0);
    expectFields(c.resources, "resources", `${at} resources`);
    expect(c.resources?.requests?.["memory"], at).toBeDefined();
    expect(c.resources?.limits?.["memory"], at).toBeDefined();
    for (const p of c.ports ?? []) expectFields(p, "port", `${at} port`);
    for (const m of c.volumeMounts ?? []) {
      expectFields(m, "volumeMount", `${at} mount ${m.name}`);
      const volume = pod.volumes?.find((v) => v.name === m.name);
      expect(volume, `${at} mount ${m.name}`).toBeDefined();
      if (volume?.emptyDir === undefined) expect(m.readOnly, `${at} mount ${m.name}`).toBe(true);
      // a subPath mount never sees a Secret's or ConfigMap's updates
      expect(m.subPath, `${at} mount ${m.name}`).toBeUndefined();
    }
    if (c.lifecycle !== undefined) {
      expectFields(c.lifecycle, "lifecycle", `${at} lifecycle`);
      expectFields(c.lifecycle.preStop, "handler", `${at} preStop`);
    }
  }
  const edge = edgeContainer(w);
  const at = `${where} container ${EDGE}`;
  // the image's entrypoint and user
  expect(edge.image, at).toMatch(/(^|\/)keystone-edge:[\w.-]+$/);
  expect(edge.command, at).toBeUndefined();
  expect(edge.securityContext?.runAsUser ?? pod.securityContext?.runAsUser, at).toBe(
    imageUser().uid,
  );
  const args = edge.args ?? [];
  expect(args[0], at).toBe("serve");
  const admin = edge.ports?.find((p) => p.name === "admin")?.containerPort;
  expect(admin, at).toBeDefined();
  expect(edge.ports?.find((p) => p.name === "api")?.containerPort, at).toBeDefined();
  for (const [probe, path] of [
    [edge.readinessProbe, "/readyz"],
    [edge.livenessProbe, "/healthz"],
  ] as const) {
    expectFields(probe, "probe", `${at} ${path} probe`);
    expectFields(probe?.httpGet, "httpGet", `${at} ${path} probe httpGet`);
    expect(probe?.httpGet?.path, at).toBe(path);
    expect(portNumber(edge, probe?.httpGet?.port ?? -1), `${at} ${path} port`).toBe(admin);
  }
  const grace = Number(option(args, "--grace"));
  expect(grace, at).toBeGreaterThan(0);
  const preStop = edge.lifecycle?.preStop?.sleep?.seconds ?? 0;
  expect(
    preStop,
    `${at}: a pause before SIGTERM while the pod leaves the endpoints`,
  ).toBeGreaterThan(0);
  const period = pod.terminationGracePeriodSeconds ?? 30;
  expect(period, `${where}: terminationGracePeriodSeconds > preStop + --grace`).toBeGreaterThan(
    preStop + grace,
  );
  return { grace, preStop, period };
}

/** Services in front of a workload: ports resolve, the admin port only on a headless one. */
function checkServices(docs: readonly K8s[], w: Workload): Service[] {
  const pod = w.spec.template.spec;
  const edge = edgeContainer(w);
  const services = ofKind<Service>(docs, "Service").filter((s) =>
    selects(s.spec.selector, w.spec.template.metadata.labels),
  );
  const targets = services.flatMap((s) =>
    s.spec.ports.map((p) => {
      const owner = pod.containers.find((c) =>
        c.ports?.some((q) =>
          typeof p.targetPort === "number"
            ? q.containerPort === p.targetPort
            : q.name === p.targetPort,
        ),
      );
      expect(owner, `Service ${s.metadata.name} port ${p.name}`).toBeDefined();
      return { service: s, port: p, container: owner };
    }),
  );
  const api = targets.filter((t) => t.container === edge && t.port.targetPort === "api");
  const admin = targets.filter((t) => t.container === edge && t.port.targetPort === "admin");
  expect(api.length, `${w.metadata.name}: a Service for the proxy`).toBeGreaterThan(0);
  expect(admin.length, `${w.metadata.name}: a Service for the admin port`).toBeGreaterThan(0);
  for (const t of admin) {
    expect(t.service.spec.clusterIP, `${t.service.metadata.name}: headless`).toBe("None");
    expect(t.service.spec.ports, `${t.service.metadata.name}: admin only`).toHaveLength(1);
  }
  // clients never reach the admin port nor the upstream through the proxy's Service
  for (const t of api) {
    for (const p of t.service.spec.ports)
      expect(p.targetPort, t.service.metadata.name).not.toBe("admin");
  }
  return services;
}

function checkServiceMonitor(sm: ServiceMonitor, docs: readonly K8s[]): Service[] {
  const selected = ofKind<Service>(docs, "Service").filter(
    (s) =>
      selects(sm.spec.selector.matchLabels, s.metadata.labels) &&
      (sm.spec.namespaceSelector?.matchNames ?? [sm.metadata.namespace]).includes(
        s.metadata.namespace,
      ),
  );
  expect(selected.length, `ServiceMonitor ${sm.metadata.name} selects a Service`).toBeGreaterThan(
    0,
  );
  expect(sm.spec.endpoints.length).toBeGreaterThan(0);
  for (const e of sm.spec.endpoints) {
    expect(e.path ?? "/metrics").toBe("/metrics");
    for (const s of selected) {
      const port = s.spec.ports.find((p) => p.name === e.port);
      expect(port, `${s.metadata.name} has port ${e.port}`).toBeDefined();
      expect(port?.targetPort, s.metadata.name).toBe("admin");
    }
  }
  return selected;
}

const alertGroups = (): unknown =>
  (parse(read("deploy/prometheus/alerts.yaml")) as { groups: unknown }).groups;

/** A Fernet key as Keystone writes it: 32 random bytes, URL-safe base64 with padding. */
const fernetKey = (): string =>
  randomBytes(32).toString("base64").replaceAll("+", "-").replaceAll("/", "_");

interface CheckConfigOutput {
  ok?: boolean;
  error?: unknown;
  config?: {
    listen: string;
    admin_listen: string;
    identity_listen?: string;
    upstream: string;
    tls?: Record<string, string>;
  };
  key_repository?: { key_count: number };
  tls?: { subject: string; not_after: string; client_certificates: string };
}

/**
 * Lays out the files the edge container would see (ConfigMap data, Secret items with a
 * fixture value, the key repository Secret with fresh keys) under a temporary root, points
 * the config's absolute paths into it, and runs `keystone-edge check-config` there.
 */
/**
 * What a `kubernetes.io/tls` Secret mounted at `mountPath` holds, when the test gives one:
 * real PEM files (check-config reads them), by key.
 */
const tlsSecrets = new Map<string, Record<string, string>>();

async function checkConfigInPod(docs: readonly K8s[], w: Workload): Promise<CheckConfigOutput> {
  const pod = w.spec.template.spec;
  const edge = edgeContainer(w);
  const root = tempDir("ke-pod-");
  const wholeSecrets: string[] = [];
  const write = (mountPath: string, path: string, content: string): void => {
    const file = join(root, mountPath, path);
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, content, { mode: 0o440 });
  };
  const configMap = (name: string, items: KeyToPath[] | undefined, mountPath: string): void => {
    const cm = ofKind<ConfigMap>(docs, "ConfigMap").find((c) => c.metadata.name === name);
    expect(cm, `ConfigMap ${name}`).toBeDefined();
    const data = cm?.data ?? {};
    for (const item of items ?? Object.keys(data).map((key) => ({ key, path: key }))) {
      expect(data, `ConfigMap ${name}`).toHaveProperty([item.key]);
      write(mountPath, item.path, data[item.key] ?? "");
    }
  };
  const secret = (items: KeyToPath[] | undefined, mountPath: string): void => {
    if (items === undefined) {
      wholeSecrets.push(mountPath);
      mkdirSync(join(root, mountPath), { recursive: true });
    } else {
      const pem = tlsSecrets.get(mountPath);
      // as `kubectl create secret --from-file` leaves it: with the file's newline
      for (const item of items) write(mountPath, item.path, pem?.[item.key] ?? `${SECRET}\n`);
    }
  };
  for (const m of edge.volumeMounts ?? []) {
    const v = pod.volumes?.find((x) => x.name === m.name);
    if (v?.configMap) configMap(v.configMap.name, v.configMap.items, m.mountPath);
    else if (v?.secret) secret(v.secret.items, m.mountPath);
    else if (v?.projected) {
      for (const s of v.projected.sources) {
        if (s.configMap) configMap(s.configMap.name, s.configMap.items, m.mountPath);
        else if (s.secret) {
          // a projected Secret without items would land at the volume's root: name them
          expect(
            s.secret.items,
            `${m.name}: projected Secret ${s.secret.name} items`,
          ).toBeDefined();
          secret(s.secret.items, m.mountPath);
        } else throw new Error(`${m.name}: a projected source this test does not lay out`);
      }
    } else if (v?.emptyDir) mkdirSync(join(root, m.mountPath), { recursive: true });
    else throw new Error(`volume ${m.name}: a kind this test does not lay out`);
  }
  const configPath = option(edge.args ?? [], "--config");
  expect(existsSync(join(root, configPath)), `${configPath} is mounted`).toBe(true);
  const config = parse(readFileSync(join(root, configPath), "utf8")) as Json;
  const fernet = config["fernet"];
  const keyRepository = isRecord(fernet) ? fernet["key_repository"] : undefined;
  // the key repository is a whole Secret (the kubelet swaps it at once), and the only one
  expect(wholeSecrets).toEqual([keyRepository]);
  for (const index of ["0", "1", "2"]) write(String(keyRepository), index, fernetKey());
  const paths = new Set(["key_repository", "cafile", "certfile", "keyfile", "client_cafile"]);
  const relocate = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(relocate);
    if (!isRecord(node)) return node;
    return Object.fromEntries(
      Object.entries(node).map(([k, v]) => [
        k,
        typeof v === "string" && v.startsWith("/") && (k.endsWith("_file") || paths.has(k))
          ? join(root, v)
          : relocate(v),
      ]),
    );
  };
  const checked = join(root, dirname(configPath), "check-config.yaml");
  writeFileSync(checked, stringify(relocate(config)));
  const env: Record<string, string> = {};
  for (const e of edge.env ?? []) {
    if (e.value !== undefined) env[e.name] = e.value;
    else if (isRecord(e.valueFrom) && isRecord(e.valueFrom["secretKeyRef"])) env[e.name] = SECRET;
    else throw new Error(`env ${e.name}: a source this test does not provide`);
  }
  const result = await execFileAsync(process.execPath, [CLI, "check-config", "--json", checked], {
    env,
  }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: unknown) => {
      const f = e as { code?: number; stdout?: string; stderr?: string };
      return { code: f.code ?? 1, stdout: f.stdout ?? "", stderr: f.stderr ?? "" };
    },
  );
  // The examples reach the in-cluster Keystone over plain HTTP (as openstack-helm's
  // keystone-api service is): check-config warns about exactly that, and nothing else.
  const notWarnings = result.stderr
    .split("\n")
    .filter(
      (l) =>
        l !== "" &&
        !/^keystone-edge check-config: warning: keystone\.endpoints: .* is plain HTTP/.test(l),
    );
  expect(notWarnings, `${w.metadata.name}: check-config`).toEqual([]);
  expect(result.code).toBe(0);
  const out = JSON.parse(result.stdout) as CheckConfigOutput;
  expect(out.ok).toBe(true);
  expect(out.key_repository?.key_count).toBe(3);
  // the listeners are the container's ports; the admin port is reachable by the kubelet
  const port = (address: string | undefined): number => Number(/:(\d+)$/.exec(address ?? "")?.[1]);
  const named = (name: string): number | undefined =>
    edge.ports?.find((p) => p.name === name)?.containerPort;
  expect(port(out.config?.listen)).toBe(named("api"));
  expect(port(out.config?.admin_listen)).toBe(named("admin"));
  expect(out.config?.admin_listen).not.toMatch(/^(127\.|\[::1\]|localhost)/);
  if (out.config?.identity_listen !== undefined) {
    expect(port(out.config.identity_listen)).toBe(named("identity"));
  }
  return out;
}

describe("deploy/kubernetes", () => {
  const files = ["nova-api-sidecar", "keystone-edge-daemonset", "servicemonitor", "prometheusrule"];
  const kit = Object.fromEntries(
    files.map((f) => [f, loadDocuments(read(`deploy/kubernetes/${f}.yaml`), f)]),
  ) as Record<(typeof files)[number], K8s[]>;
  const all = Object.values(kit).flat();
  const sidecar = kit["nova-api-sidecar"] ?? [];
  const daemonset = kit["keystone-edge-daemonset"] ?? [];

  it("holds known kinds and API versions, named and namespaced", () => {
    expect(readdirSync(repo("deploy/kubernetes")).sort()).toEqual(
      files.map((f) => `${f}.yaml`).sort(),
    );
    for (const [name, docs] of Object.entries(kit)) checkObjects(docs, name, "openstack");
    expect(ofKind(sidecar, "Deployment")).toHaveLength(1);
    expect(ofKind(daemonset, "DaemonSet")).toHaveLength(1);
  });

  it("nova-api-sidecar: the edge in front of nova-api on loopback, hardened, probed on its admin port, drained before nova-api stops", async () => {
    const [w] = workloads(sidecar);
    if (w === undefined) throw new Error("no workload");
    const { grace, preStop, period } = checkEdgePod(w);
    checkServices(sidecar, w);
    const nova = w.spec.template.spec.containers.find((c) => c.name === "nova-api");
    // nova-api is SIGTERMed after its preStop: only once the edge has drained
    const novaPreStop = nova?.lifecycle?.preStop?.sleep?.seconds ?? 0;
    expect(novaPreStop).toBeGreaterThanOrEqual(preStop + grace);
    expect(period).toBeGreaterThan(novaPreStop);
    const out = await checkConfigInPod(sidecar, w);
    const upstream = new URL(out.config?.upstream ?? "");
    expect(upstream.hostname).toBe("127.0.0.1");
    // nothing outside the pod reaches nova-api: no port of it is declared or targeted
    expect(nova?.ports).toBeUndefined();
    for (const s of ofKind<Service>(sidecar, "Service")) {
      for (const p of s.spec.ports) expect(["api", "admin"]).toContain(p.targetPort);
    }
  });

  it("keystone-edge-daemonset: one edge per node on the host's network, forwarding to the host's loopback", async () => {
    const [w] = workloads(daemonset);
    if (w === undefined) throw new Error("no workload");
    checkEdgePod(w);
    checkServices(daemonset, w);
    const pod = w.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe("ClusterFirstWithHostNet");
    // two pods cannot bind the host's port: the old one goes first
    expect(w.spec.updateStrategy?.rollingUpdate?.maxSurge).toBe(0);
    const out = await checkConfigInPod(daemonset, w);
    expect(new URL(out.config?.upstream ?? "").hostname).toBe("127.0.0.1");
  });

  it("servicemonitor: selects the metrics Services of both variants, on their admin port", () => {
    const [sm] = ofKind<ServiceMonitor>(kit["servicemonitor"] ?? [], "ServiceMonitor");
    if (sm === undefined) throw new Error("no ServiceMonitor");
    const selected = checkServiceMonitor(sm, all);
    for (const w of workloads(all)) {
      expect(
        selected.some((s) => selects(s.spec.selector, w.spec.template.metadata.labels)),
        `${w.metadata.name} is scraped`,
      ).toBe(true);
    }
  });

  it("prometheusrule: the groups of deploy/prometheus/alerts.yaml, exactly", () => {
    const [rule] = ofKind<PrometheusRule>(kit["prometheusrule"] ?? [], "PrometheusRule");
    expect(rule?.spec.groups).toEqual(alertGroups());
  });
});

// ---------------------------------------------------------------------------------------
// Helm chart

/** `# --` comment of each value in values.yaml: a documented value is not descended into. */
function documentedValues(text: string): Map<string, string> {
  const found = new Map<string, string>();
  const walk = (map: YAMLMap, prefix: string): void => {
    map.items.forEach((pair, i) => {
      const key = `${prefix}${String((pair.key as { value: unknown }).value)}`;
      const comment = `${(pair.key as { commentBefore?: string }).commentBefore ?? ""}${i === 0 ? (map.commentBefore ?? "") : ""}`;
      if (comment.includes("-- ")) found.set(key, comment.slice(comment.lastIndexOf("-- ") + 3));
      else if (isMap(pair.value)) walk(pair.value, `${key}.`);
      else found.set(key, ""); // undocumented: the test reports it
    });
  };
  const doc = parseDocument(text);
  if (!isMap(doc.contents)) throw new Error("values.yaml: not a mapping");
  walk(doc.contents, "");
  return found;
}

function templateFiles(): { name: string; text: string }[] {
  const dir = join(CHART, "templates");
  return readdirSync(dir).map((name) => ({ name, text: readFileSync(join(dir, name), "utf8") }));
}

function valuesReferences(text: string): string[] {
  return [...text.matchAll(/\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)/g)].map((m) =>
    (m[1] ?? "").slice(1),
  );
}

function hasPath(values: unknown, path: string): boolean {
  let node = values;
  for (const key of path.split(".")) {
    if (!isRecord(node) || !(key in node)) return false;
    node = node[key];
  }
  return true;
}

describe("deploy/helm/keystone-edge", () => {
  let helmBin = "";
  const values = parse(readFileSync(join(CHART, "values.yaml"), "utf8")) as Json;

  beforeAll(async () => {
    helmBin = await ensureHelm();
  }, 300_000);

  async function template(...set: string[]): Promise<K8s[]> {
    const r = await runHelm(helmBin, [
      "template",
      "nova-api-edge",
      CHART,
      "--namespace",
      "openstack",
      ...set,
    ]);
    expect(r.stderr.split("\n").filter((l) => /error|warn/i.test(l))).toEqual([]);
    expect(r.code).toBe(0);
    return loadDocuments(r.stdout, "helm template");
  }

  it("Chart.yaml and values.yaml: chart v2 of this version of keystone-edge, every value documented", () => {
    const chart = parse(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as Json;
    const pkg = JSON.parse(read("package.json")) as { version: string };
    expect(chart["apiVersion"]).toBe("v2");
    expect(chart["name"]).toBe(EDGE);
    expect(chart["type"]).toBe("application");
    expect(chart["version"]).toMatch(/^\d+\.\d+\.\d+$/);
    expect(chart["appVersion"]).toBe(pkg.version);
    const documented = documentedValues(readFileSync(join(CHART, "values.yaml"), "utf8"));
    expect(documented.size).toBeGreaterThan(30);
    const readme = readFileSync(join(CHART, "README.md"), "utf8");
    for (const [path, comment] of documented) {
      expect(comment.trim().length, `values.yaml: ${path} has a "# --" comment`).toBeGreaterThan(5);
      expect(readme, `README.md documents ${path}`).toContain(`| \`${path}\``);
    }
  });

  it("templates use only values that exist, and every value is used", () => {
    const refs = templateFiles().flatMap((t) => valuesReferences(t.text));
    expect(refs.length).toBeGreaterThan(30);
    for (const r of refs) expect(hasPath(values, r), `.Values.${r} is in values.yaml`).toBe(true);
    const documented = [
      ...documentedValues(readFileSync(join(CHART, "values.yaml"), "utf8")).keys(),
    ];
    for (const path of documented) {
      // used as such, through a parent (toYaml), or through a child
      const used = refs.some(
        (r) => r === path || path.startsWith(`${r}.`) || r.startsWith(`${path}.`),
      );
      expect(used, `values.yaml: ${path} is used by a template`).toBe(true);
    }
  });

  it("templates balance their actions and blocks", () => {
    for (const { name, text } of templateFiles()) {
      const withoutComments = text.replace(/\{\{-?\s*\/\*[\s\S]*?\*\/\s*-?\}\}/g, "");
      const actions = [...withoutComments.matchAll(/\{\{-?\s*([\s\S]*?)\s*-?\}\}/g)].map(
        (m) => m[1] ?? "",
      );
      expect(withoutComments.split("{{").length, name).toBe(withoutComments.split("}}").length);
      expect(withoutComments.split("{{").length - 1, name).toBe(actions.length);
      let depth = 0;
      for (const a of actions) {
        if (/^(if|range|with|define|block)\b/.test(a)) depth += 1;
        else if (/^end\b/.test(a)) depth -= 1;
        expect(depth, `${name}: an {{ end }} without its block`).toBeGreaterThanOrEqual(0);
      }
      expect(depth, `${name}: every block ends`).toBe(0);
    }
  });

  it("passes helm lint --strict in both modes, and with TLS and autoscaling", async () => {
    const sets = [
      [],
      [
        "--set",
        "mode=daemonset,identity.enabled=true,serviceMonitor.enabled=true,prometheusRule.enabled=true",
      ],
      ["--set", "tls.existingSecret=edge-tls,tls.clientCaKey=ca.crt,autoscaling.enabled=true"],
    ];
    const results = await Promise.all(
      sets.map((set) => runHelm(helmBin, ["lint", "--strict", CHART, ...set])),
    );
    results.forEach((r, i) => {
      const where = sets[i]?.join(" ") ?? "";
      expect(r.stdout + r.stderr, where).toMatch(/1 chart\(s\) linted, 0 chart\(s\) failed/);
      expect(r.code, where).toBe(0);
    });
  });

  it("renders, in deployment mode, a hardened edge whose config passes check-config, scraped and alerted on", async () => {
    const docs = await template("--set", "serviceMonitor.enabled=true,prometheusRule.enabled=true");
    checkObjects(docs, "deployment mode", "openstack");
    expect(docs.map((d) => d.kind).sort()).toEqual(
      [
        "ConfigMap",
        "Deployment",
        "PodDisruptionBudget",
        "PrometheusRule",
        "Service",
        "Service",
        "ServiceMonitor",
      ].sort(),
    );
    const [w] = workloads(docs);
    if (w === undefined) throw new Error("no workload");
    checkEdgePod(w);
    checkServices(docs, w);
    const out = await checkConfigInPod(docs, w);
    expect(out.config?.upstream).toBe((values["config"] as { upstream: string }).upstream);
    const [sm] = ofKind<ServiceMonitor>(docs, "ServiceMonitor");
    if (sm === undefined) throw new Error("no ServiceMonitor");
    const scraped = checkServiceMonitor(sm, docs);
    expect(scraped.map((s) => s.metadata.name)).toEqual(["nova-api-edge-keystone-edge-metrics"]);
    expect(ofKind<PrometheusRule>(docs, "PrometheusRule")[0]?.spec.groups).toEqual(alertGroups());
    // the configuration is read once: its checksum rolls the pods
    const checksum = w.spec.template.metadata.annotations?.["checksum/config"];
    expect(checksum).toMatch(/^[0-9a-f]{64}$/);
    const changed = await template("--set", "config.cache.lru_max_entries=1000");
    expect(workloads(changed)[0]?.spec.template.metadata.annotations?.["checksum/config"]).not.toBe(
      checksum,
    );
  });

  it("renders, in daemonset mode, an edge per node on the host's network, with the Identity face and secrets from the environment", async () => {
    const docs = await template(
      "--set",
      "mode=daemonset,identity.enabled=true,config.upstream=http://127.0.0.1:8775,secrets.keys={memcache_secret_key}",
      "--set-json",
      'nodeSelector={"openstack-nova-api":"enabled"}',
      // an application credential, its secret from the environment (values merge: the
      // password's options are removed with null)
      "--set",
      [
        "config.admin_secret_file=null",
        "config.keystone.auth.type=application_credential",
        "config.keystone.auth.application_credential_id=0123abcd",
        "config.keystone.auth.application_credential_secret_env=EDGE_APP_CRED_SECRET",
        ...["username", "password_file", "user_domain_id", "project_name", "project_domain_id"].map(
          (k) => `config.keystone.auth.${k}=null`,
        ),
      ].join(","),
      "--set-json",
      'env=[{"name":"EDGE_APP_CRED_SECRET","valueFrom":{"secretKeyRef":{"name":"keystone-edge","key":"application_credential_secret"}}}]',
    );
    checkObjects(docs, "daemonset mode", "openstack");
    expect(ofKind(docs, "Deployment")).toEqual([]);
    expect(ofKind(docs, "PodDisruptionBudget")).toEqual([]);
    const [w] = workloads(docs);
    if (w === undefined) throw new Error("no workload");
    expect(w.kind).toBe("DaemonSet");
    checkEdgePod(w);
    const services = checkServices(docs, w);
    expect(services.flatMap((s) => s.spec.ports.map((p) => p.targetPort)).sort()).toEqual(
      ["admin", "api", "identity"].sort(),
    );
    const pod = w.spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.dnsPolicy).toBe("ClusterFirstWithHostNet");
    expect((pod as unknown as Json)["nodeSelector"]).toEqual({ "openstack-nova-api": "enabled" });
    expect(w.spec.updateStrategy?.rollingUpdate?.maxSurge).toBe(0);
    const out = await checkConfigInPod(docs, w);
    expect(out.config?.upstream).toBe("http://127.0.0.1:8775");
    expect(out.config?.identity_listen).toBe("0.0.0.0:5000");
  });

  it("renders HTTPS with mutual TLS from a kubernetes.io/tls Secret, and an autoscaler instead of replicas; the pod's config passes check-config with the certificate", async () => {
    const pki = createPki();
    try {
      const server = pki.server("edge.openstack.svc");
      tlsSecrets.set("/etc/keystone-edge-tls", {
        "tls.crt": server.cert,
        "tls.key": server.key,
        "ca.crt": pki.ca.cert,
      });
      const docs = await template(
        "--set",
        "tls.existingSecret=nova-api-edge-tls,tls.clientCaKey=ca.crt,tls.minVersion=TLSv1.3,autoscaling.enabled=true,autoscaling.maxReplicas=6",
      );
      checkObjects(docs, "tls and autoscaling", "openstack");
      const [w] = workloads(docs);
      if (w === undefined) throw new Error("no workload");
      checkEdgePod(w);
      expect((w.spec as Json)["replicas"]).toBeUndefined();
      const [hpa] = ofKind<K8s & { spec: Json }>(docs, "HorizontalPodAutoscaler");
      expect(hpa?.spec).toEqual({
        scaleTargetRef: { apiVersion: "apps/v1", kind: "Deployment", name: w.metadata.name },
        minReplicas: 2,
        maxReplicas: 6,
        metrics: [
          {
            type: "Resource",
            resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } },
          },
        ],
      });
      const out = await checkConfigInPod(docs, w);
      // (check-config ran on the pod's files laid out under a temporary root)
      expect(out.config?.tls).toEqual({
        certfile: expect.stringMatching(/\/etc\/keystone-edge-tls\/tls\.crt$/) as unknown,
        keyfile: expect.stringMatching(/\/etc\/keystone-edge-tls\/tls\.key$/) as unknown,
        client_cafile: expect.stringMatching(/\/etc\/keystone-edge-tls\/ca\.crt$/) as unknown,
        min_version: "TLSv1.3",
      });
      expect(out.tls).toMatchObject({
        subject: "CN=edge.openstack.svc",
        client_certificates: "required",
      });
    } finally {
      tlsSecrets.clear();
      pki.remove();
    }
  });

  it("refuses values that cannot work", async () => {
    const refusals = [
      ["mode=sidecar", /neither deployment nor daemonset/],
      ["grace=40", /terminationGracePeriodSeconds must exceed/],
      ["config.listen=0.0.0.0:1", /config\.listen is set by the chart/],
      ["config.fernet.key_repository=/keys", /config\.fernet\.key_repository is set by the chart/],
      ["fernetKeys.existingSecret=", /fernetKeys\.existingSecret/],
      ["config.tls.certfile=/x", /config\.tls is set by the chart/],
      [
        "autoscaling.enabled=true,autoscaling.minReplicas=5,autoscaling.maxReplicas=2",
        /minReplicas must not exceed/,
      ],
    ] as const;
    const results = await Promise.all(
      refusals.map(([set]) => runHelm(helmBin, ["template", "x", CHART, "--set", set])),
    );
    results.forEach((r, i) => {
      const [set, message] = refusals[i] ?? ["", /^$/];
      expect(r.code, set).not.toBe(0);
      expect(r.stderr, set).toMatch(message);
    });
  });
});
