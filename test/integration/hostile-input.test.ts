/**
 * Hostile input against a real region (issue 13): an application credential made at the
 * real Keystone with an access rule built to backtrack, and requests an attacker would
 * send, through an edge in front of an echo service. The edge must answer each at once,
 * keep serving everybody else meanwhile, and never let a refused request through.
 */
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { edgeConfigDocument } from "../harness/edge-config.js";
import { accessRulesToken, createFixtures, type Fixtures } from "../harness/fixtures.js";
import { through } from "../harness/seen.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
let fixtures: Fixtures;
let echo: EchoUpstream;
let edge: RunningEdge;
let edgeUrl = "";
let restricted = "";
/** 12 `**` segments: a backtracking matcher takes exponential time on a long miss. */
const REDOS_RULE = `/v2.1/${"**/".repeat(12)}zzz`;

beforeAll(async () => {
  fixtures = await createFixtures(keystone);
  restricted = await accessRulesToken(keystone, [
    { service: "compute", method: "GET", path: REDOS_RULE },
    { service: "compute", method: "GET", path: "/v2.1/servers" },
  ]);
  echo = await startEchoUpstream();
  ({ edge, url: edgeUrl } = await startTestEdge(
    edgeConfigDocument(keystone, {
      upstream: echo.url,
      user: fixtures.serviceUser,
      authToken: { service_type: "compute" },
    }),
  ));
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
});

/** Sends `text` on a raw socket; resolves with the answer's status and body. */
function raw(text: string): Promise<{ status: number; body: string }> {
  const { port } = new URL(edgeUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), "127.0.0.1");
    let received = "";
    socket.on("data", (c: Buffer) => {
      received += c.toString("latin1");
      const end = received.indexOf("\r\n\r\n");
      const length = /content-length: (\d+)/i.exec(received);
      if (end !== -1 && length && received.length >= end + 4 + Number(length[1])) {
        socket.destroy();
        const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(received)?.[1] ?? 0);
        resolve({ status, body: received.slice(end + 4) });
      }
    });
    socket.on("error", reject);
    socket.write(text);
  });
}

describe("hostile input against a real region", () => {
  it("an access rule built to backtrack neither freezes the edge nor lets a miss through", async () => {
    // Keystone accepted the rule; the token carries it.
    const miss = `/v2.1/${"a/".repeat(3_500)}`;
    const attack = through(edgeUrl, { "X-Auth-Token": restricted }, { path: miss });
    // Everybody else is served meanwhile.
    const others = await Promise.all(
      Array.from({ length: 20 }, () =>
        through(edgeUrl, { "X-Auth-Token": fixtures.tokens.project }),
      ),
    );
    expect(others.map((s) => s.status)).toEqual(Array.from({ length: 20 }, () => 200));
    expect((await attack).status).toBe(401);
    // The rule still allows what it names, and the other rule what it names.
    const hit = `/v2.1/${"x/".repeat(12)}zzz`;
    expect((await through(edgeUrl, { "X-Auth-Token": restricted }, { path: hit })).status).toBe(
      200,
    );
    expect(
      (await through(edgeUrl, { "X-Auth-Token": restricted }, { path: "/v2.1/servers" })).status,
    ).toBe(200);
  });

  it("absolute-form reaches the service as origin-form, with Host from the target", async () => {
    const answer = await raw(
      `GET http://evil.example/v2.1/servers HTTP/1.1\r\nHost: nova\r\nX-Auth-Token: ${fixtures.tokens.project}\r\n\r\n`,
    );
    expect(answer.status).toBe(200);
    const seen = JSON.parse(answer.body) as { path: string; headers: Record<string, string> };
    expect(seen.path).toBe("/v2.1/servers");
    expect(seen.headers["host"]).toBe("evil.example");
  });

  it("a second Host or a header flood with a valid token is refused before validation", async () => {
    const token = fixtures.tokens.project;
    const before = echo.requests();
    const twoHosts = await raw(
      `GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nX-Auth-Token: ${token}\r\n\r\n`,
    );
    expect(twoHosts.status).toBe(400);
    const flood = Array.from({ length: 200 }, (_, i) => `X-H${String(i)}: v\r\n`).join("");
    const flooded = await raw(
      `GET / HTTP/1.1\r\nHost: a\r\nX-Auth-Token: ${token}\r\n${flood}\r\n`,
    );
    expect(flooded.status).toBe(431);
    expect(echo.requests()).toBe(before);
  });

  it("the admin listener refuses a rebound name", async () => {
    // fetch() will not set Host: ask as a browser fooled by DNS would, on a raw socket.
    const port = edge.adminAddress.port;
    const ask = (host: string): Promise<number> =>
      new Promise((resolve, reject) => {
        const socket = connect(port, "127.0.0.1");
        socket.once("data", (c: Buffer) => {
          socket.destroy();
          resolve(Number(/^HTTP\/1\.1 (\d{3}) /.exec(c.toString("latin1"))?.[1] ?? 0));
        });
        socket.on("error", reject);
        socket.write(`GET /metrics HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      });
    expect(await ask(`rebind.evil.example:${String(port)}`)).toBe(421);
    expect(await ask(`127.0.0.1:${String(port)}`)).toBe(200);
  });
});
