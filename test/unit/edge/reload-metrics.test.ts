/**
 * After a reload the state gauges speak for the configuration in force only: the replaced
 * one — still finishing its requests — exports nothing of its own (its endpoints' breakers,
 * its insecure-endpoint warnings, its key ring), through a whole in-process edge.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";

import { generateFernetKeyText } from "../../../src/fernet/envelope.js";
import { startEchoUpstream, type EchoUpstream } from "../../harness/echo-upstream.js";
import { startRegion, type Region } from "../fault-matrix/region.js";

let region: Region | undefined;
let echo: EchoUpstream | undefined;
let keys2: string | undefined;

afterEach(async () => {
  await region?.close();
  await echo?.stop();
  if (keys2 !== undefined) await rm(keys2, { recursive: true, force: true });
  region = undefined;
  echo = undefined;
  keys2 = undefined;
});

/** `/metrics` lines of `name`, labels as text. */
async function series(r: Region, name: string): Promise<string[]> {
  const text = await (await fetch(`${r.adminUrl}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe("reload: the replaced configuration exports no metric of its own", () => {
  it("breakers, insecure endpoints and the key ring are the new configuration's", async () => {
    echo = await startEchoUpstream();
    region = await startRegion({ upstream: echo.url, cache: { context_cache_time: 0 } });
    const r = region;
    const url = r.config.keystone.endpoints[0]?.url ?? "";
    expect(await series(r, "keystone_edge_keystone_breaker_state")).toHaveLength(3);
    const oldName = r.config.keystone.endpoints[0]?.name ?? "";
    expect((await series(r, "keystone_edge_keystone_breaker_state")).join("\n")).toContain(
      `endpoint="${oldName}"`,
    );
    expect(await r.metric("keystone_edge_key_repository_keys")).toBe(3);

    // A new repository of five keys, and the same Keystone under a new name.
    keys2 = await mkdtemp(join(tmpdir(), "ke-reload-keys-"));
    for (let i = 0; i < 5; i++) await writeFile(join(keys2, String(i)), generateFernetKeyText());
    const next = {
      ...r.config,
      keystone: { ...r.config.keystone, endpoints: [{ name: "renamed", url }] },
      fernet: { ...r.config.fernet, key_repository: keys2 },
    };
    expect(await r.edge.reload(next)).toMatchObject({ kind: "applied" });

    const breakers = (await series(r, "keystone_edge_keystone_breaker_state")).join("\n");
    expect(breakers).toContain('endpoint="renamed"');
    expect(breakers).not.toContain(`endpoint="${oldName}"`);
    // The fake Keystone is plain HTTP: flagged under its new name only.
    const insecure = (await series(r, "keystone_edge_keystone_endpoint_insecure")).join("\n");
    expect(insecure).toContain('endpoint="renamed"');
    expect(insecure).not.toContain(`endpoint="${oldName}"`);
    expect(await r.metric("keystone_edge_key_repository_keys")).toBe(5);
    expect(await r.metric("keystone_edge_key_repository_healthy")).toBe(1);
    // And the replaced core's own drains do not leak into /status either.
    const status = (await (await fetch(`${r.adminUrl}/status`)).json()) as {
      keystone: { endpoints: { endpoint: string }[] };
      keys: { count: number };
    };
    expect(status.keystone.endpoints.map((e) => e.endpoint)).toEqual(["renamed"]);
    expect(status.keys.count).toBe(5);
  });
});
