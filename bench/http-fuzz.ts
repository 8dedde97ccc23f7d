/**
 * bench:fuzz — the HTTP-level fuzzer at volume (issue 13: ≥ 1M cases), against a whole
 * edge in process (startEdge, production tiers, a fake Keystone counting validations).
 *
 * Each batch is `fc.sample` of the same arbitraries the CI test uses, seeded with
 * `FUZZ_SEED + batch` so any failure can be replayed; cases go out on fresh raw
 * connections, `FUZZ_CONCURRENCY` at a time. Prints cases per second, answers by status,
 * failures (any 2xx/5xx or a hang), Keystone validations (must be 0), requests that
 * reached the service (must be 0), and the edge's RSS and event-loop lag; exits 1 on any
 * failure.
 *
 * Environment: FUZZ_CASES (default 1,000,000), FUZZ_SEED (20261206), FUZZ_CONCURRENCY (32),
 * FUZZ_BATCH (2,000).
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { monitorEventLoopDelay } from "node:perf_hooks";
import fc from "fast-check";
import {
  describeCase,
  fuzzCases,
  judge,
  sendCase,
  type FuzzCase,
} from "../test/harness/http-fuzz.js";
import { startRegion } from "../test/unit/fault-matrix/region.js";

const CASES = Number(process.env["FUZZ_CASES"] ?? 1_000_000);
const SEED = Number(process.env["FUZZ_SEED"] ?? 20_261_206);
const CONCURRENCY = Number(process.env["FUZZ_CONCURRENCY"] ?? 32);
const BATCH = Number(process.env["FUZZ_BATCH"] ?? 2_000);

let reachedService = 0;
const service = createServer((req, res) => {
  reachedService++;
  req.resume();
  res.end("ok");
});
await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
const region = await startRegion({
  upstream: `http://127.0.0.1:${String((service.address() as AddressInfo).port)}`,
  client: { headers_timeout_ms: 1_000 },
});
const port = region.edge.address.port;
const sources = {
  valid: Array.from({ length: 16 }, (_, i) => region.mint(i + 1, i + 1)),
  forged: Array.from({ length: 8 }, () => region.forged()),
};
const arbitrary = fuzzCases(sources);
const statuses = new Map<string, number>();
const failures: string[] = [];
const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
const rssStart = process.memoryUsage().rss;
const started = performance.now();
let done = 0;
let nextReport = 100_000;

for (let batch = 0; done < CASES; batch++) {
  const cases: FuzzCase[] = fc.sample(arbitrary, {
    numRuns: Math.min(BATCH, CASES - done),
    seed: SEED + batch,
  });
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < cases.length) {
        const index = next++;
        const c = cases[index] as FuzzCase;
        const answer = await sendCase(port, c.bytes, 10_000);
        const key = answer.kind === "answered" ? String(answer.status) : answer.kind;
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        const verdict = judge(c, answer);
        if (verdict !== undefined && failures.length < 20) {
          failures.push(
            `seed ${String(SEED + batch)} case ${String(index)}: ${verdict}: ${describeCase(c)}`,
          );
        } else if (verdict !== undefined) {
          failures.push("…");
        }
      }
    }),
  );
  done += cases.length;
  if (done >= nextReport) {
    const rate = done / ((performance.now() - started) / 1000);
    console.log(`${String(done)} cases, ${rate.toFixed(0)}/s, failures ${String(failures.length)}`);
    nextReport += 100_000;
  }
}
const seconds = (performance.now() - started) / 1000;
lag.disable();
// Read before the closing check, whose new token rightly costs one validation.
const validations = region.keystone.counts.validations;
const validOk = (await region.request(region.mint(999, 999))).status === 200;
await region.close();
service.close();

console.log("\nbench:fuzz — HTTP-level fuzzer against a whole edge in process");
console.log(
  `cases            ${String(done)} in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(0)}/s, concurrency ${String(CONCURRENCY)}, seed ${String(SEED)})`,
);
console.log(
  `answers          ${[...statuses.entries()]
    .sort()
    .map(([k, v]) => `${k}: ${String(v)}`)
    .join(", ")}`,
);
console.log(`failures         ${String(failures.length)} (2xx/5xx or no answer within 10 s)`);
for (const f of failures) console.log(`  ${f}`);
console.log(`Keystone calls   ${String(validations)} validations (must be 0)`);
console.log(`reached service  ${String(reachedService - (validOk ? 1 : 0))} (must be 0)`);
console.log(`valid token after ${validOk ? "200" : "NOT 200"}`);
console.log(
  `process          RSS ${(rssStart / 2 ** 20).toFixed(0)} → ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB; event-loop lag p99 ${(lag.percentile(99) / 1e6).toFixed(1)} ms, max ${(lag.max / 1e6).toFixed(1)} ms`,
);
const ok = failures.length === 0 && validations === 0 && reachedService === 1 && validOk;
console.log(ok ? "PASSED" : "FAILED");
process.exit(ok ? 0 : 1);
