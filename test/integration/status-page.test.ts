/**
 * `/status` and the status page against a real edge: after some traffic (cache hits,
 * Keystone calls, tokens refused locally), the JSON reports hit rates per tier, the
 * Keystone offload, breakers, key ring and feed; the HTML page, rendered in headless
 * Chromium (Debian's, driven by playwright-core), shows the same figures.
 */
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { EdgeStatus } from "../../src/protocol/admin.js";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startTestEdge } from "../harness/test-edge.js";

/** Debian's Chromium binary (`/usr/bin/chromium` is a shell wrapper). */
const CHROMIUM = "/usr/lib/chromium/chromium";
const keystone = inject("keystone");
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
let adminUrl = "";
let browser: Browser;

beforeAll(async () => {
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) }),
  ));
  adminUrl = `http://${edge.adminAddress.host}:${String(edge.adminAddress.port)}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
}, 120_000);

afterAll(async () => {
  await browser.close();
  await edge.close(1_000);
  await echo.stop();
});

async function send(token: string): Promise<number> {
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

const pct = (x: number | null | undefined): string =>
  x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`;

describe("status", () => {
  it("/status reports hit rates, offload, breakers, keys and the feed", async () => {
    const { token } = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    expect(await send(token)).toBe(200); // Keystone
    for (let i = 0; i < 9; i++) expect(await send(token)).toBe(200); // L1 hits
    expect(await send("garbage")).toBe(401); // refused locally
    const res = await fetch(`${adminUrl}/status`);
    expect(res.headers.get("content-type")).toBe("application/json");
    const s = (await res.json()) as EdgeStatus;
    expect(s.status).toBe("ok");
    // L1: 9 hits of 11 lookups (the first request and the garbage missed)
    expect(s.hit_rates["1m"]?.["l1"]).toBeCloseTo(9 / 11, 5);
    // 11 validations, 1 by Keystone
    expect(s.keystone_offload["1m"]).toBeCloseTo(10 / 11, 5);
    expect(s.keystone.endpoints).toEqual([
      { endpoint: new URL(keystone.url).host, state: "closed" },
    ]);
    expect(s.keys.count).toBeGreaterThan(0);
    expect(s.keys.healthy).toBe(true);
    expect(s.drill).toBeNull();
    expect(JSON.stringify(s)).not.toContain(token.slice(0, 30));
  });

  it("the page, in headless Chromium, shows the figures /status gives", async () => {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(`${adminUrl}/`);
    await page.waitForSelector("body[data-loaded]", { timeout: 10_000 });
    const s = (await (await fetch(`${adminUrl}/status`)).json()) as EdgeStatus;
    const read = (id: string) => page.locator(`#${id}`).textContent();
    expect(await read("status")).toBe(s.status);
    expect(await read("degraded")).toBe("no");
    expect(await read("drill")).toBe("none");
    for (const w of ["1m", "5m", "15m"]) {
      for (const [tier, rate] of Object.entries(s.hit_rates[w] ?? {})) {
        expect(await read(`rate-${tier}-${w}`), `${tier} ${w}`).toBe(pct(rate));
      }
      expect(await read(`offload-${w}`)).toBe(pct(s.keystone_offload[w]));
    }
    expect(await read("rate-l1-1m")).toBe(pct(9 / 11));
    const endpoint = s.keystone.endpoints[0]?.endpoint ?? "";
    expect(await page.locator(`tr[data-endpoint="${endpoint}"] td.closed`).textContent()).toBe(
      "closed",
    );
    expect(await read("keys-count")).toBe(String(s.keys.count));
    expect(await read("keys-primary")).toBe(String(s.keys.primary_index));
    expect(await read("feed-state")).toBe(s.revocation_feed.state);
    expect(errors).toEqual([]);
    await page.close();
  });
});
