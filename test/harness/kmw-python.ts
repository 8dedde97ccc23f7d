/**
 * Runs Debian's /usr/bin/python3 (where keystonemiddleware, keystoneauth1 and webob live)
 * with JSON on stdin and JSON on stdout: one process per batch, so a test file can check
 * thousands of values against CPython in one go. Also drives test/harness/kmw_headers.py.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { debianPythonEnv } from "./client.js";

/** Path of the keystonemiddleware reference harness. */
export const KMW_HEADERS = fileURLToPath(new URL("./kmw_headers.py", import.meta.url));

/** Run `/usr/bin/python3 <args>` with `input` as JSON on stdin; parse stdout as JSON. */
export function runPythonJson(args: readonly string[], input: unknown): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      "/usr/bin/python3",
      [...args],
      { env: debianPythonEnv(), maxBuffer: 256 * 1024 * 1024, timeout: 120_000 },
      (error, stdout, stderr) => {
        if (error) {
          reject(new Error(`python3 ${args.join(" ")}: ${error.message}\n${stderr}`));
          return;
        }
        try {
          resolve(JSON.parse(stdout) as unknown);
        } catch (parseError) {
          reject(
            new Error(`python3 printed no JSON: ${String(parseError)}\n${stdout.slice(0, 500)}`),
          );
        }
      },
    );
    child.stdin?.end(JSON.stringify(input));
  });
}

/** Run a Python snippet (`-c`) reading JSON from stdin, printing JSON. */
export function runPythonSnippet(code: string, input: unknown): Promise<unknown> {
  return runPythonJson(["-c", code], input);
}

/** A `kmw_headers.py` case. */
export interface KmwCase {
  user: unknown;
  service: unknown;
  conf?: Record<string, unknown>;
  client_headers?: Record<string, string>;
  request?: { method: string; path: string };
}

/** A `kmw_headers.py` result. */
export interface KmwResult {
  status: number;
  headers: Record<string, string>;
  none_headers: string[];
  response?: { status: number; headers: [string, string][]; body: string };
}

/** Run keystonemiddleware on a batch of cases. */
export async function runKmw(cases: readonly KmwCase[]): Promise<KmwResult[]> {
  const out = (await runPythonJson([KMW_HEADERS], { cases })) as { results: KmwResult[] };
  return out.results;
}
