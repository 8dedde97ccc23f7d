/**
 * Label cardinality stays bounded: 10,000 requests with 10,000 distinct tokens (new valid
 * tokens of a known user and scope, forged ones, garbage) add no series to `/metrics`
 * once each kind has been seen, and no token appears in it.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { generateFernetKeyText, parseFernetKey } from "../../src/fernet/envelope.js";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { KeyRing, staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { randomAuditId, type TokenPayload } from "../../src/token/payload.js";
import type { EpochMicros } from "../../src/units.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
let mint: () => string;
let forge: () => string;

beforeAll(async () => {
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) }),
  ));
  const issued = await issueToken(keystone, {
    kind: "project",
    name: "admin",
    domainId: "default",
  });
  const keys = staticKeyRing(await readKeyRepository(keystone.keyRepository));
  const decoder = new TokenDecoder({ keys, authMethods: keystone.authMethods });
  const decoded = decoder.decode(issued.token);
  if (decoded.status !== "valid") throw new Error("decode");
  const payload: TokenPayload = decoded.token.payload;
  const fresh = (): TokenPayload => ({
    ...payload,
    auditIds: [randomAuditId()],
    expiresAtMicros: ((Math.floor(Date.now() / 1000) + 600) * 1e6) as EpochMicros,
  });
  mint = () => decoder.mint(fresh());
  const other = parseFernetKey(generateFernetKeyText());
  if (typeof other === "string") throw new Error(other);
  const forger = new TokenDecoder({
    keys: staticKeyRing(KeyRing.from([{ index: 0, key: other }])),
  });
  forge = () => forger.mint(fresh());
}, 120_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
});

/** Series lines of the edge's own metrics (process metrics vary with the runtime). */
async function series(): Promise<string[]> {
  const text = await edge.metrics.registry.metrics();
  return text
    .split("\n")
    .filter((l) => l.length > 0 && !l.startsWith("#"))
    .filter((l) => !/^keystone_edge_(process|nodejs)_/.test(l))
    .map((l) => l.replace(/ [^ ]+$/, "")); // the series, not its value
}

/** `count` requests, each with a new token of each kind in turn, 20 at a time. */
async function traffic(count: number): Promise<string[]> {
  const sent: string[] = [];
  const kinds = [mint, forge, () => `garbage-${String(Math.random()).slice(2)}`];
  for (let i = 0; i < count; i += 20) {
    await Promise.all(
      Array.from({ length: Math.min(20, count - i) }, async (_, j) => {
        const token = (kinds[(i + j) % kinds.length] ?? mint)();
        sent.push(token);
        const res = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": token } });
        await res.arrayBuffer();
      }),
    );
  }
  return sent;
}

describe("metrics label cardinality", () => {
  it("10,000 distinct tokens add no series, and no token shows in /metrics", async () => {
    // The context first, alone: 20 new tokens at once would all ask the (slow, uncached)
    // harness Keystone before any answer is in, and time out on a loaded machine.
    const first = await fetch(`${edgeUrl}/v2.1/servers`, { headers: { "X-Auth-Token": mint() } });
    await first.arrayBuffer();
    expect(first.status).toBe(200);
    await traffic(300); // every kind of request seen at least once
    const before = await series();
    const sent = await traffic(10_000);
    expect(new Set(sent).size).toBe(10_000);
    const after = await series();
    expect(after).toEqual(before);
    expect(after.length).toBeLessThan(200);
    const text = await edge.metrics.registry.metrics();
    for (const token of sent.slice(0, 50)) expect(text).not.toContain(token.slice(0, 40));
    // and the traffic was what it claims: valid from contexts, refused locally
    expect(text).toMatch(
      /keystone_edge_validations_total\{source="context",result="valid"\} [1-9]\d{3}/,
    );
    expect(text).toMatch(
      /keystone_edge_validations_total\{source="local_reject",result="invalid"\} [1-9]\d{3}/,
    );
  }, 300_000);
});
