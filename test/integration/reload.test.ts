/**
 * SIGHUP on a real `keystone-edge serve` process: the configuration file is re-read and
 * applied without dropping connections — a request on a connection kept alive across the
 * reload meets the new configuration, and the edge stays up throughout; an invalid file, a
 * changed listen address or a key repository that does not load is refused with a log line
 * and the running configuration is kept.
 */
import { readFile, writeFile } from "node:fs/promises";
import { request as httpRequest, Agent, type IncomingHttpHeaders } from "node:http";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import type { EchoUpstream } from "../harness/echo-upstream.js";
import { startServedRegion, type EdgeProcess } from "../harness/edge-process.js";
import type { Fixtures } from "../harness/fixtures.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let fixtures: Fixtures;
let edge: EdgeProcess;
let original = "";
/** One socket for every request: a reload must not drop it. */
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

beforeAll(async () => {
  ({ fixtures, echo, edge } = await startServedRegion(keystone, ["--grace", "2"]));
  original = await readFile(edge.configPath, "utf8");
}, 300_000);

afterAll(async () => {
  agent.destroy();
  if (edge.child.exitCode === null) edge.child.kill("SIGKILL");
  await echo.stop();
});

interface Answer {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  /** The request went on a socket an earlier request used. */
  readonly reused: boolean;
}

function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${edge.url}${path}`, { agent, headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => {
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body,
          reused: req.reusedSocket,
        });
      });
    });
    req.on("error", reject);
    req.end();
  });
}

/** SIGHUP, then wait for the log line that says what became of it. */
async function hup(expect: RegExp): Promise<string> {
  const before = edge.output().length;
  edge.child.kill("SIGHUP");
  const deadline = Date.now() + 20_000;
  for (;;) {
    const line = edge
      .output()
      .slice(before)
      .split("\n")
      .find((l) => expect.test(l));
    if (line !== undefined) return line;
    if (Date.now() > deadline)
      throw new Error(`no log line ${String(expect)}:\n${edge.output().slice(before)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("SIGHUP reload", () => {
  it("applies a new configuration on a connection kept alive across the reload", async () => {
    const first = await get("/v2.1/servers");
    expect(first.status).toBe(401);
    expect((await get("/v2.1/servers", { "X-Auth-Token": fixtures.tokens.project })).status).toBe(
      200,
    );

    // delay_auth_decision on, and the endpoint renamed: both visible from outside.
    await writeFile(
      edge.configPath,
      original.replace(
        `  endpoints: ["${keystone.url}"]`,
        `  endpoints: [{ name: "region-one", url: "${keystone.url}" }]`,
      ) + "auth_token:\n  delay_auth_decision: true\n",
    );
    const applied = await hup(/configuration reloaded/);
    expect(JSON.parse(applied)).toMatchObject({ caches: "kept", endpoints: ["region-one"] });

    const after = await get("/v2.1/servers");
    expect(after.reused).toBe(true);
    expect(after.status).toBe(200);
    expect(
      (JSON.parse(after.body) as { headers: Record<string, string> }).headers["x-identity-status"],
    ).toBe("Invalid");
    const valid = await get("/v2.1/servers", { "X-Auth-Token": fixtures.tokens.project });
    expect(valid.reused).toBe(true);
    expect(valid.status).toBe(200);
    const metrics = await (await fetch(`${edge.adminUrl}/metrics`)).text();
    expect(metrics).toMatch(
      /keystone_edge_keystone_breaker_state\{endpoint="region-one",state="closed"\} 1/,
    );
    expect(metrics).not.toMatch(/keystone_edge_keystone_breaker_state\{endpoint="127\.0\.0\.1:/);
    expect((await fetch(`${edge.adminUrl}/readyz`)).status).toBe(200);
  }, 60_000);

  it("refuses an invalid file, a changed listen address and a missing key repository, keeping the running configuration", async () => {
    const running = await readFile(edge.configPath, "utf8");
    await writeFile(edge.configPath, running.replace("timeout_ms: 10000", 'timeout_ms: "ten"'));
    const invalid = await hup(/reload refused/);
    expect(invalid).toMatch(/keystone\.timeout_ms/);

    await writeFile(
      edge.configPath,
      running.replace(/listen: "127\.0\.0\.1:\d+"/, 'listen: "127.0.0.1:1"'),
    );
    expect(await hup(/reload refused/)).toMatch(/listen changed/);

    await writeFile(
      edge.configPath,
      running.replace(
        `key_repository: ${keystone.keyRepository}`,
        "key_repository: /nonexistent/keys",
      ),
    );
    expect(await hup(/reload refused/)).toMatch(/nonexistent/);

    // Still the configuration of the last good reload, on the same connection, still ready.
    const after = await get("/v2.1/servers");
    expect(after.status).toBe(200);
    expect(after.reused).toBe(true);
    expect((await fetch(`${edge.adminUrl}/readyz`)).status).toBe(200);
    expect(edge.child.exitCode).toBeNull();
  }, 60_000);

  it("keeps what it knew of each endpoint: a breaker open before a reload is open after it", async () => {
    const dead = `  endpoints: [{ name: "dead", url: "http://127.0.0.1:1/v3" }, { name: "region-one", url: "${keystone.url}" }]`;
    await writeFile(edge.configPath, original.replace(`  endpoints: ["${keystone.url}"]`, dead));
    await hup(/configuration reloaded/);
    // New tokens fail over past the dead endpoint until its breaker opens (3 failures).
    const { domain, system, projectOtherDomain, rescoped } = fixtures.tokens;
    for (const token of [domain, system, projectOtherDomain, rescoped]) {
      expect((await get("/v2.1/servers", { "X-Auth-Token": token })).status).toBe(200);
    }
    const open = /keystone_edge_keystone_breaker_state\{endpoint="dead",state="open"\} 1/;
    expect(await (await fetch(`${edge.adminUrl}/metrics`)).text()).toMatch(open);
    // The same endpoints again (a comment changes nothing): the outage is not forgotten.
    await writeFile(edge.configPath, `${await readFile(edge.configPath, "utf8")}# touched\n`);
    await hup(/configuration reloaded/);
    expect(await (await fetch(`${edge.adminUrl}/metrics`)).text()).toMatch(open);
    const status = (await (await fetch(`${edge.adminUrl}/status`)).json()) as {
      keystone: { endpoints: { endpoint: string; state: string }[] };
    };
    expect(status.keystone.endpoints).toEqual([
      expect.objectContaining({ endpoint: "dead", state: "open" }),
      expect.objectContaining({ endpoint: "region-one", state: "closed" }),
    ]);
  }, 60_000);

  it("still leaves cleanly on SIGTERM after reloads, even with a SIGHUP right before it", async () => {
    await writeFile(edge.configPath, original);
    await hup(/configuration reloaded/);
    expect((await get("/v2.1/servers")).status).toBe(401);
    // A SIGHUP racing a SIGTERM: the reload finishes or is refused; the exit is clean (0,
    // not SIGHUP's default death) and nothing is left serving.
    edge.child.kill("SIGHUP");
    expect(await edge.stop()).toBe(0);
    expect(edge.output()).toMatch(/"stopped"/);
  }, 60_000);
});
