/**
 * A 1 GiB upload streamed through `keystone-edge serve` keeps the edge's resident memory
 * flat: nothing is buffered whole on the way to the service.
 */
import { readFileSync } from "node:fs";
import { request } from "node:http";
import { Readable } from "node:stream";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { EchoUpstream } from "../harness/echo-upstream.js";
import { startServedRegion, type EdgeProcess } from "../harness/edge-process.js";
import type { Fixtures } from "../harness/fixtures.js";

const keystone = inject("keystone");
const GiB = 1024 ** 3;
let fixtures: Fixtures;
let echo: EchoUpstream;
let edge: EdgeProcess;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) * 1024;
}

beforeAll(async () => {
  ({ fixtures, echo, edge } = await startServedRegion(keystone));
}, 300_000);

afterAll(async () => {
  await edge.stop();
  await echo.stop();
});

describe("streaming", () => {
  it("a 1 GiB upload reaches the service whole while the edge's RSS grows by less than 64 MB", async () => {
    // Warm up: validate the token and open the upstream connection.
    const warm = await fetch(`${edge.url}/`, {
      headers: { "X-Auth-Token": fixtures.tokens.project },
    });
    expect(warm.status).toBe(200);
    await warm.arrayBuffer();
    const baseline = rssBytes(edge.pid);
    let peak = baseline;
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssBytes(edge.pid));
    }, 50);
    const chunk = Buffer.alloc(1024 * 1024, 0x5a);
    let sent = 0;
    const body = new Readable({
      read() {
        if (sent >= GiB) {
          this.push(null);
          return;
        }
        sent += chunk.length;
        this.push(chunk);
      },
    });
    const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        `${edge.url}/v2/images/x/file`,
        {
          method: "PUT",
          headers: {
            "X-Auth-Token": fixtures.tokens.project,
            "Content-Type": "application/octet-stream",
            "Content-Length": String(GiB),
          },
        },
        (res) => {
          let text = "";
          res.on("data", (d: Buffer) => (text += d.toString()));
          res.on("end", () => {
            resolve({ status: res.statusCode ?? 0, text });
          });
        },
      );
      req.on("error", reject);
      body.pipe(req);
    });
    clearInterval(sampler);
    expect(answer.status).toBe(200);
    expect((JSON.parse(answer.text) as { bodyBytes: number }).bodyBytes).toBe(GiB);
    const growthMb = (peak - baseline) / 2 ** 20;
    console.log(
      `edge RSS: baseline ${(baseline / 2 ** 20).toFixed(1)} MB, peak ${(peak / 2 ** 20).toFixed(1)} MB, growth ${growthMb.toFixed(1)} MB`,
    );
    expect(growthMb).toBeLessThan(64);
  }, 180_000);
});
