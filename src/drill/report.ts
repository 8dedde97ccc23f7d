/**
 * A drill's report for people: a verdict line, a table of checks, the figures.
 *
 * Owns: the text layout only (`--json` prints the {@link DrillReport} itself).
 */
import type { DrillReport } from "./scenarios.js";

/** The report as aligned plain text. */
export function renderReport(report: DrillReport): string {
  const verdict = report.interrupted ? "INTERRUPTED" : report.passed ? "PASSED" : "FAILED";
  const fault =
    report.drill === null
      ? ""
      : `, fault ${report.drill.fault}${
          report.drill.endpoints === undefined ? "" : ` on ${report.drill.endpoints.join(", ")}`
        }`;
  const lines = [
    `drill ${report.scenario}: ${verdict} (${String(report.duration_seconds)} s${fault}, started ${report.started_at})`,
    "",
  ];
  const width = Math.max(5, ...report.checks.map((c) => c.name.length));
  lines.push(`${"check".padEnd(width)}  result  detail`);
  for (const c of report.checks) {
    lines.push(`${c.name.padEnd(width)}  ${(c.passed ? "ok" : "FAIL").padEnd(6)}  ${c.detail}`);
  }
  lines.push("", "figures:");
  for (const [name, value] of Object.entries(report.figures)) {
    lines.push(
      `  ${name}: ${typeof value === "object" && value !== null ? JSON.stringify(value) : String(value)}`,
    );
  }
  return lines.join("\n") + "\n";
}
