/**
 * bench:async-context — what an `AsyncLocalStorage` in use costs every promise of the
 * process, on the Node.js that runs it.
 *
 * Owns: the figure behind tracing's cost with a sampling ratio below 1 (docs/benchmarks.md,
 * "Tracing"). Tracing keeps the active span in an `AsyncLocalStorage`; on Node 20 the first
 * `run()` installs promise hooks for the whole process, so every promise of every request
 * pays, sampled or not; Node 24 (production images) propagates the context without hooks
 * (AsyncContextFrame). The same chain of awaits is timed before any storage exists (the
 * baseline), then with one in use, in the same process, alternating rounds; the ratio is
 * printed.
 *
 *   npm run bench:async-context
 *   ~/.cache/keystone-edge/node24/node_modules/.bin/node dist/bench/async-context.js
 */
import { AsyncLocalStorage } from "node:async_hooks";

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CHAINS = Number(process.env.BENCH_CHAINS ?? 50_000);
/** Awaits per chain: about what one request through the edge awaits. */
const AWAITS = 30;

async function leaf(value: number): Promise<number> {
  await Promise.resolve();
  return value + 1;
}

async function chain(): Promise<number> {
  let value = 0;
  for (let i = 0; i < AWAITS; i++) value = await leaf(value);
  return value;
}

/** µs per chain over `CHAINS` chains. */
async function time(): Promise<number> {
  const started = process.hrtime.bigint();
  for (let i = 0; i < CHAINS; i++) await chain();
  return Number(process.hrtime.bigint() - started) / 1000 / CHAINS;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

async function main(): Promise<void> {
  await time(); // warm-up
  const without: number[] = [];
  for (let round = 0; round < ROUNDS; round++) without.push(await time());
  // From here on the process has a storage in use, as a tracing edge does after its first
  // request: Node 20 cannot take its promise hooks back while the storage lives.
  const storage = new AsyncLocalStorage<{ readonly span: string }>();
  const within: number[] = [];
  const outside: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    within.push(await storage.run({ span: "request" }, time));
    outside.push(await time());
  }
  const base = median(without);
  const inRun = median(within);
  const out = median(outside);
  const perAwait = (us: number): string => ((us - base) / AWAITS).toFixed(3);
  console.log(
    `node ${process.version}; ${String(ROUNDS)} rounds × ${String(CHAINS)} chains of ${String(AWAITS)} awaits`,
  );
  console.log(`no AsyncLocalStorage (baseline)     ${base.toFixed(2)} µs per chain`);
  console.log(
    `storage in use, inside run()        ${inRun.toFixed(2)} µs per chain (${(inRun / base).toFixed(2)}×, +${perAwait(inRun)} µs per await)`,
  );
  console.log(
    `storage in use, outside any run()   ${out.toFixed(2)} µs per chain (${(out / base).toFixed(2)}×, +${perAwait(out)} µs per await)`,
  );
}

await main();
