/**
 * The HTTP-level fuzzer, seed-stable, against a whole edge in process (startEdge, the
 * production tiers, a fake Keystone that counts validations): every hostile request is
 * answered 4xx or closed, none reaches the service, Keystone is never asked to validate,
 * and afterwards the edge still validates a good token. The ≥ 1M-case run is
 * `npm run bench:fuzz` (docs/security.md).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeCase, fuzzCases, judge, sendCase } from "../../harness/http-fuzz.js";
import { startRegion, type Region } from "../fault-matrix/region.js";

/** Cases per CI run; `FUZZ_RUNS` raises it locally. */
const RUNS = Number(process.env["FUZZ_RUNS"] ?? 2_000);
const SEED = Number(process.env["FUZZ_SEED"] ?? 20_261_206);

let region: Region;
let service: Server;
let reachedService = 0;

beforeAll(async () => {
  service = createServer((req, res) => {
    reachedService++;
    req.resume();
    res.end("ok");
  });
  await new Promise<void>((r) => service.listen(0, "127.0.0.1", r));
  region = await startRegion({
    upstream: `http://127.0.0.1:${String((service.address() as AddressInfo).port)}`,
    client: { headers_timeout_ms: 1_000 },
  });
});
afterAll(async () => {
  await region.close();
  service.close();
});

describe("HTTP fuzzer", () => {
  it(`answers ${String(RUNS)} hostile requests 4xx, with no Keystone call and nothing forwarded`, async () => {
    const sources = {
      valid: Array.from({ length: 8 }, (_, i) => region.mint(i + 1, i + 1)),
      forged: Array.from({ length: 4 }, () => region.forged()),
    };
    const port = region.edge.address.port;
    const validationsBefore = region.keystone.counts.validations;
    await fc.assert(
      fc.asyncProperty(fuzzCases(sources), async (c) => {
        const verdict = judge(c, await sendCase(port, c.bytes, 5_000));
        if (verdict !== undefined) throw new Error(`${verdict}: ${describeCase(c)}`);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: true },
    );
    expect(region.keystone.counts.validations - validationsBefore).toBe(0);
    expect(reachedService).toBe(0);
    // The edge lives and still does its job.
    expect((await region.request(region.mint(99, 99))).status).toBe(200);
    expect(reachedService).toBe(1);
  });
});
