/**
 * Keys under load, against real parts: a Keystone replica signs with a key repository of
 * its own, which `keystone-manage fernet_rotate` rotates five times while steady traffic
 * (a fresh token per request, signed with whatever key Keystone signs with at that moment,
 * some issued by Keystone itself) goes through the edge; the edge's copy is synced after
 * each rotation the way docs/deploy describe (new files first, then replaced ones, then
 * removals, each written to a temporary name and renamed). Zero requests fail. Then the
 * edge's copy is half-written and emptied: it keeps the last good ring, traffic goes on,
 * and `keystone_edge_key_repository_healthy` and `/readyz` say so until it is repaired.
 */
import {
  cpSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId, type TokenPayload } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startKeystoneReplica, type KeystoneReplica } from "../harness/keystone-replica.js";
import { startTestEdge } from "../harness/test-edge.js";
import { waitUntil } from "../harness/wait.js";

const keystone = inject("keystone");
const ROTATIONS = 5;
const WORKERS = 8;
let root = "";
let keystoneKeys = ""; // the replica's repository (Keystone's side)
let edgeKeys = ""; // the edge's synced copy
let replica: KeystoneReplica;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
let adminUrl = "";
let template: TokenPayload;

/** Keystone's key repository → the edge's copy: new files, then replaced ones, then removals. */
function sync(): void {
  const source = new Set(readdirSync(keystoneKeys));
  const target = new Set(readdirSync(edgeKeys));
  const write = (name: string): void => {
    const tmp = join(edgeKeys, `.${name}.tmp`);
    writeFileSync(tmp, readFileSync(join(keystoneKeys, name)));
    renameSync(tmp, join(edgeKeys, name));
  };
  for (const name of source) if (!target.has(name)) write(name);
  for (const name of source) {
    if (
      target.has(name) &&
      !readFileSync(join(keystoneKeys, name)).equals(readFileSync(join(edgeKeys, name)))
    ) {
      write(name);
    }
  }
  for (const name of target) if (!source.has(name)) rmSync(join(edgeKeys, name));
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "keystone-edge-rotation-"));
  keystoneKeys = join(root, "keystone");
  edgeKeys = join(root, "edge");
  cpSync(keystone.keyRepository, keystoneKeys, { recursive: true });
  cpSync(keystoneKeys, edgeKeys, { recursive: true });
  replica = await startKeystoneReplica(keystone, { keyRepository: keystoneKeys });
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(
      { ...keystone, keyRepository: edgeKeys },
      {
        upstream: echo.url,
        user: adminUser(keystone),
        // Every token is new to the edge and decrypted with its copy of the keys; the
        // per-scope context then answers it, so the load is not capped by how fast this
        // machine's Keystone validates (~1 s a token on two cores).
        keystone: { endpoints: [replica.url] },
      },
    ),
  ));
  adminUrl = `http://${edge.adminAddress.host}:${String(edge.adminAddress.port)}`;
  const issued = await issueToken(
    { ...keystone, url: replica.url },
    { kind: "project", name: "admin", domainId: "default" },
  );
  const decoded = new TokenDecoder({
    keys: staticKeyRing(await readKeyRepository(keystoneKeys)),
    authMethods: keystone.authMethods,
  }).decode(issued.token);
  if (decoded.status !== "valid")
    throw new Error(`cannot read Keystone's token: ${decoded.status}`);
  template = decoded.token.payload;
  // The user and scope become known (one Keystone call, which a cold replica may take a
  // while to answer); the load then runs on the edge's own decryption.
  const deadline = Date.now() + 60_000;
  while ((await status(await freshToken())) !== 200) {
    if (Date.now() > deadline) throw new Error("the edge never validated a token");
    await new Promise((r) => setTimeout(r, 500));
  }
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  await replica.close();
  rmSync(root, { recursive: true, force: true });
});

/** A token as Keystone would sign it now: with the primary key of its repository at this moment. */
const signedWith = new Set<number>();
async function mint(): Promise<{ token: string; primary: number }> {
  const keys = staticKeyRing(await readKeyRepository(keystoneKeys));
  const primary = keys.current().primary.index;
  signedWith.add(primary);
  const token = new TokenDecoder({ keys, authMethods: keystone.authMethods }).mint({
    ...template,
    auditIds: [randomAuditId()],
    expiresAtMicros: ((Math.floor(Date.now() / 1000) + 3600) * 1e6) as EpochMicros,
  });
  return { token, primary };
}
async function freshToken(): Promise<string> {
  return (await mint()).token;
}

async function status(token: string): Promise<number> {
  const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
  await res.arrayBuffer();
  return res.status;
}

async function healthy(): Promise<number> {
  return (await edge.metrics.keyRepositoryHealthy.get()).values[0]?.value ?? -1;
}

/** Polls `check` every 100 ms until it holds; fails after `ms` naming `what`. */
function until(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
  return waitUntil(check, ms, what, 100);
}

describe("Fernet keys under load", () => {
  it(`${String(ROTATIONS)} rotations under steady load: zero failed requests`, async () => {
    const primaryBefore = edge.keys.current().primary.index;
    const failures: string[] = [];
    let requests = 0;
    let issuedByKeystone = 0;
    /** Requests answered 200 by primary key index the token was minted under. */
    const validUnder = new Map<number, number>();
    let running = true;
    const worker = async (n: number): Promise<void> => {
      for (let i = 0; running; i++) {
        let token: string;
        let primary: number | undefined;
        if (n === 0 && i % 5 === 0) {
          // now and then a token Keystone itself issues, with its current primary key
          token = (
            await issueToken(
              { ...keystone, url: replica.url },
              { kind: "project", name: "admin", domainId: "default" },
            )
          ).token;
          issuedByKeystone++;
        } else {
          ({ token, primary } = await mint());
        }
        const s = await status(token);
        requests++;
        if (s !== 200) failures.push(`HTTP ${String(s)} after ${String(requests)} requests`);
        else if (primary !== undefined) validUnder.set(primary, (validUnder.get(primary) ?? 0) + 1);
      }
    };
    const workers = Array.from({ length: WORKERS }, (_, n) => worker(n));
    try {
      const served = (n: number, what: string): Promise<void> => {
        const target = requests + n;
        return until(what, () => Promise.resolve(requests >= target));
      };
      await served(50, "50 requests before the first rotation");
      for (let r = 0; r < ROTATIONS; r++) {
        await replica.rotateKeys();
        // Keystone signs with the new key; the edge has not synced: tokens under it must be
        // answered all the same (through Keystone) before the copy arrives.
        const primary = primaryBefore + r + 1;
        await until(`${String(WORKERS)} tokens under the new primary before the sync`, () =>
          Promise.resolve((validUnder.get(primary) ?? 0) >= WORKERS),
        );
        expect(edge.keys.current().primary.index).toBe(primary - 1);
        sync();
        await until("the edge to load the synced ring", () =>
          Promise.resolve(edge.keys.current().primary.index === primary),
        );
        await served(50, `50 requests on the synced ring ${String(primary)}`);
      }
    } finally {
      running = false;
      await Promise.all(workers);
    }
    expect(failures).toEqual([]);
    expect(requests).toBeGreaterThan(100);
    expect(issuedByKeystone).toBeGreaterThan(2);
    expect(signedWith.size).toBeGreaterThanOrEqual(ROTATIONS); // tokens under every new primary
    expect(edge.keys.current().primary.index).toBe(primaryBefore + ROTATIONS);
    expect(await healthy()).toBe(1);
  });

  it("a half-written or emptied repository keeps the last good ring, raises the metric and /readyz, and recovers", async () => {
    const keysBefore = edge.keys.current().size;
    const readyz = async (): Promise<{
      degraded: boolean;
      checks: { name: string; detail?: string }[];
    }> => {
      const res = await fetch(`${adminUrl}/readyz`);
      return (await res.json()) as {
        degraded: boolean;
        checks: { name: string; detail?: string }[];
      };
    };

    // half-written: a key file cut short
    const next = String(edge.keys.current().primary.index + 1);
    writeFileSync(join(edgeKeys, next), "dGhpcyBpcyBub3Qg");
    await until("the metric to fall", async () => (await healthy()) === 0);
    expect(await status(await freshToken())).toBe(200);
    const r = await readyz();
    expect(r.degraded).toBe(true);
    expect(r.checks.find((c) => c.name === "keys")?.detail).toMatch(/re-reads failing since/);
    expect(edge.keys.current().size).toBe(keysBefore);
    const failures = (await edge.metrics.keyRepositoryReloadFailures.get()).values[0]?.value ?? 0;
    expect(failures).toBeGreaterThanOrEqual(1);
    rmSync(join(edgeKeys, next));
    await until("the metric to recover", async () => (await healthy()) === 1);

    // emptied: every key file gone at once
    const aside = join(root, "aside");
    cpSync(edgeKeys, aside, { recursive: true });
    for (const name of readdirSync(edgeKeys)) rmSync(join(edgeKeys, name));
    await until("the metric to fall", async () => (await healthy()) === 0);
    expect(await status(await freshToken())).toBe(200);
    expect(edge.keys.current().size).toBe(keysBefore);
    for (const name of readdirSync(aside)) cpSync(join(aside, name), join(edgeKeys, name));
    await until("the metric to recover", async () => (await healthy()) === 1);
    const keysCheck = (await readyz()).checks.find((c) => c.name === "keys");
    expect(keysCheck?.detail).not.toMatch(/failing/);
  });
});
