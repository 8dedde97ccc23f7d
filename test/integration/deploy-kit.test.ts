/**
 * The deploy kit's monitoring files are real: Prometheus' own `promtool` (Debian) accepts
 * the alerting rules and their unit tests pass (each alert fires when it should and not
 * before); every metric the rules and the Grafana dashboard query is one the edge exports;
 * systemd accepts the unit file, every directive of it.
 */
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { parse } from "yaml";
import { EdgeMetrics } from "../../src/admin/metrics.js";
import { SupervisorMetrics } from "../../src/supervisor/metrics.js";

const execFileAsync = promisify(execFile);
const deploy = (path: string): string =>
  fileURLToPath(new URL(`../../deploy/${path}`, import.meta.url));
const PROMTOOL = "/usr/bin/promtool";

/** Metric names an expression reads (histogram series mapped to their histogram). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bkeystone_edge_[a-z0-9_]+/g)].map((m) =>
    m[0].replace(/_(bucket|count|sum)$/, ""),
  );
}

async function exported(): Promise<Set<string>> {
  // The edge's, and the supervisor's own with `workers` > 1.
  const edge = new EdgeMetrics();
  edge.tlsCertificateNotAfterSeconds = 1_900_000_000; // exported only with `tls`
  const names = [
    ...(await edge.registry.getMetricsAsJSON()),
    ...(await new SupervisorMetrics().registry.getMetricsAsJSON()),
  ].map((m) => m.name);
  return new Set(names);
}

describe("deploy/prometheus/alerts.yaml", () => {
  it("passes promtool check rules", async () => {
    const { stdout } = await execFileAsync(PROMTOOL, [
      "check",
      "rules",
      deploy("prometheus/alerts.yaml"),
    ]);
    const rules = parse(readFileSync(deploy("prometheus/alerts.yaml"), "utf8")) as {
      groups: { rules: unknown[] }[];
    };
    const count = rules.groups.reduce((n, g) => n + g.rules.length, 0);
    expect(count).toBeGreaterThanOrEqual(8);
    expect(stdout).toContain(`SUCCESS: ${String(count)} rules found`);
  });

  it("passes its promtool unit tests: every alert fires when it should, not before", async () => {
    const { stdout } = await execFileAsync(PROMTOOL, [
      "test",
      "rules",
      deploy("prometheus/alerts.test.yaml"),
    ]);
    expect(stdout).toMatch(/SUCCESS/);
    const tests = parse(readFileSync(deploy("prometheus/alerts.test.yaml"), "utf8")) as {
      tests: { alert_rule_test: { alertname: string }[] }[];
    };
    const tested = new Set(tests.tests.flatMap((t) => t.alert_rule_test.map((a) => a.alertname)));
    const rules = parse(readFileSync(deploy("prometheus/alerts.yaml"), "utf8")) as {
      groups: { rules: { alert: string; expr: string }[] }[];
    };
    const alerts = rules.groups.flatMap((g) => g.rules);
    expect(new Set(alerts.map((a) => a.alert))).toEqual(tested);
    const names = await exported();
    for (const a of alerts)
      for (const m of metricNames(a.expr)) expect(names, a.alert).toContain(m);
  });
});

describe("deploy/grafana/keystone-edge.json", () => {
  it("queries only metrics the edge exports", async () => {
    const dash = JSON.parse(readFileSync(deploy("grafana/keystone-edge.json"), "utf8")) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    const titles = dash.panels.map((p) => p.title);
    for (const want of [
      "Hit rate per tier",
      "Master (Keystone) calls per second",
      "Primary key age",
    ]) {
      expect(titles).toContain(want);
    }
    const names = await exported();
    for (const p of dash.panels) {
      for (const t of p.targets) {
        const used = metricNames(t.expr);
        expect(used.length, p.title).toBeGreaterThan(0);
        for (const m of used) expect(names, `${p.title}: ${m}`).toContain(m);
      }
    }
  });
});

describe("deploy/systemd/keystone-edge.service", () => {
  it("passes systemd-analyze verify with no complaint about any directive", async () => {
    const unit = readFileSync(deploy("systemd/keystone-edge.service"), "utf8");
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/keystone-edge serve --config /m);
    expect(unit).toMatch(/^NoNewPrivileges=yes$/m);
    expect(unit).toMatch(/^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    expect(unit).toMatch(/^ProtectSystem=strict$/m);
    // systemd checks that the command exists: point it at this checkout's build
    const cli = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));
    const dir = mkdtempSync(join(tmpdir(), "keystone-edge-unit-"));
    try {
      const path = join(dir, "keystone-edge.service");
      writeFileSync(path, unit.replaceAll("/usr/bin/keystone-edge", `${process.execPath} ${cli}`));
      const result = await execFileAsync("/usr/bin/systemd-analyze", ["verify", path]).then(
        (r) => ({ code: 0, stderr: r.stderr }),
        (e: unknown) => {
          const failure = e as { code?: number; stderr?: string };
          return { code: failure.code ?? 1, stderr: failure.stderr ?? "" };
        },
      );
      // (messages about other units installed on the machine are not ours)
      const ours = result.stderr.split("\n").filter((l) => l.includes("keystone-edge.service"));
      expect(ours).toEqual([]);
      expect(result.code).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
