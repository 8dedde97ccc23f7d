/**
 * Failover across Keystone endpoints with breakers, against in-process fake Keystones
 * (real HTTP on loopback): which endpoint is asked, when one is taken out of rotation, how
 * the background probe brings it back, and the per-validation deadline.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { KeystoneEndpoint } from "../../../src/keystone/endpoint.js";
import { EndpointProber } from "../../../src/keystone/endpoint-probe.js";
import { KeystoneEndpoints } from "../../../src/keystone/endpoint-set.js";
import { ServiceToken } from "../../../src/keystone/service-token.js";
import { KeystoneValidator } from "../../../src/keystone/validate.js";
import { ManualClock } from "../../harness/doubles.js";

type Mode = "up" | "error" | "hang" | "not_found";

interface FakeKeystone {
  url: string;
  mode: Mode;
  validations: number;
  probes: number;
  close(): Promise<void>;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function fakeKeystone(mode: Mode = "up"): Promise<FakeKeystone> {
  const fake: FakeKeystone = {
    url: "",
    mode,
    validations: 0,
    probes: 0,
    close: () => Promise.resolve(),
  };
  const server = createServer((req, res) => {
    req.resume();
    if (fake.mode === "hang") return; // never answers
    if (req.method === "GET" && req.url === "/v3") {
      fake.probes++;
      if (fake.mode === "error") return void res.writeHead(503).end();
      return void res.writeHead(200, { "content-type": "application/json" }).end("{}");
    }
    if (req.method === "POST" && req.url?.startsWith("/v3/auth/tokens")) {
      const expires = new Date(Date.now() + 3_600_000).toISOString();
      res.writeHead(201, { "x-subject-token": "svc-token", "content-type": "application/json" });
      return void res.end(JSON.stringify({ token: { expires_at: expires } }));
    }
    if (req.method === "GET" && req.url?.startsWith("/v3/auth/tokens")) {
      fake.validations++;
      if (fake.mode === "error") return void res.writeHead(500).end();
      if (fake.mode === "not_found") return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/json" });
      return void res.end(
        JSON.stringify({
          token: {
            methods: ["password"],
            user: { id: "u1", name: "u1", domain: { id: "default", name: "Default" } },
            audit_ids: ["a"],
            expires_at: "2030-01-01T00:00:00.000000Z",
            issued_at: "2029-12-31T23:00:00.000000Z",
          },
        }),
      );
    }
    res.writeHead(404).end();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  fake.url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}/v3`;
  return fake;
}

function setup(
  urls: string[],
  options: { timeoutMs?: number; requestTimeoutMs?: number; clock?: ManualClock } = {},
) {
  const clock = options.clock ?? new ManualClock();
  const transitions: string[] = [];
  const guarded = new KeystoneEndpoints(
    urls.map((url) => new KeystoneEndpoint({ url, timeoutMs: options.timeoutMs ?? 1_000 })),
    {
      failureThreshold: 3,
      openDurationMs: 5_000,
      clock,
      onBreakerChange: (label, state) => transitions.push(`${label.split(":")[1] ?? ""} ${state}`),
    },
  );
  const serviceToken = new ServiceToken({
    auth: {
      type: "password",
      username: "edge",
      password: "pw",
      user_domain_id: "default",
      project_name: "service",
      project_domain_id: "default",
    },
    endpoints: () => guarded.preferred(),
  });
  const validator = new KeystoneValidator({
    endpoints: guarded,
    serviceToken,
    ...(options.requestTimeoutMs !== undefined
      ? { requestTimeoutMs: options.requestTimeoutMs }
      : {}),
  });
  const prober = new EndpointProber(guarded, { timeoutMs: 500 });
  return { clock, guarded, validator, prober, serviceToken, transitions };
}

const states = (g: KeystoneEndpoints) => g.guards.map((x) => x.breaker.state().kind);

describe("Keystone endpoint failover", () => {
  it("a reload's endpoints start with the breaker states of the same name and URL", () => {
    const clock = new ManualClock();
    const states: string[] = [];
    const urls = ["http://127.0.0.1:1/v3", "http://127.0.0.1:2/v3"];
    const old = new KeystoneEndpoints(
      urls.map((url) => new KeystoneEndpoint({ url })),
      { clock },
    );
    const down = old.guards[1];
    if (down === undefined) throw new Error("no guard");
    for (let i = 0; i < 3; i++) {
      const a = down.breaker.admit();
      if (a === undefined) throw new Error("refused");
      old.report(down, a, { kind: "failed", reason: "timeout" });
    }
    expect(down.breaker.state().kind).toBe("open");
    const fresh = new KeystoneEndpoints(
      [
        ...urls.map((url) => new KeystoneEndpoint({ url })),
        new KeystoneEndpoint({ url: "http://127.0.0.1:3/v3" }),
      ],
      {
        clock,
        onBreakerChange: (label, state) => states.push(`${label} ${state}`),
        initialState: (endpoint) =>
          old.guards
            .find((g) => g.endpoint.name === endpoint.name && g.endpoint.url === endpoint.url)
            ?.breaker.state(),
      },
    );
    expect(fresh.guards.map((g) => g.breaker.state().kind)).toEqual(["closed", "open", "closed"]);
    expect(states).toEqual(["127.0.0.1:1 closed", "127.0.0.1:2 open", "127.0.0.1:3 closed"]);
    expect(fresh.guards[1]?.breaker.admit()).toBeUndefined();
  });

  it("asks the first endpoint while it answers, and counts no answer of it as a failure", async () => {
    const [a, b] = [await fakeKeystone("not_found"), await fakeKeystone()];
    const s = setup([a.url, b.url]);
    for (let i = 0; i < 5; i++)
      expect(await s.validator.validate("t")).toMatchObject({ kind: "invalid" });
    expect([a.validations, b.validations]).toEqual([5, 0]);
    expect(states(s.guarded)).toEqual(["closed", "closed"]);
    s.serviceToken.close();
  });

  it("fails over to the next endpoint, takes a failing one out after 3 failures, then skips it", async () => {
    const [a, b] = [await fakeKeystone("error"), await fakeKeystone()];
    const s = setup([a.url, b.url]);
    for (let i = 0; i < 3; i++) {
      expect(await s.validator.validate("t")).toMatchObject({ kind: "valid" });
    }
    expect([a.validations, b.validations]).toEqual([3, 3]);
    expect(states(s.guarded)).toEqual(["open", "closed"]);
    for (let i = 0; i < 10; i++) await s.validator.validate("t");
    expect([a.validations, b.validations]).toEqual([3, 13]); // no request is the probe
    s.serviceToken.close();
  });

  it("brings an endpoint back by background probe only, after its open duration", async () => {
    const [a, b] = [await fakeKeystone("error"), await fakeKeystone()];
    const s = setup([a.url, b.url]);
    for (let i = 0; i < 3; i++) await s.validator.validate("t");
    expect(states(s.guarded)[0]).toBe("open");
    await s.prober.probeOnce();
    expect(a.probes).toBe(0); // open duration not over
    s.clock.advance(5_000);
    await s.prober.probeOnce();
    expect(a.probes).toBe(1); // it still fails: open again, for another open duration
    expect(states(s.guarded)[0]).toBe("open");
    a.mode = "up";
    await s.prober.probeOnce();
    expect(a.probes).toBe(1);
    s.clock.advance(5_000);
    await s.prober.probeOnce();
    expect(states(s.guarded)).toEqual(["closed", "closed"]);
    await s.validator.validate("t");
    expect(a.validations).toBe(4);
    const portA = new URL(a.url).port;
    expect(s.transitions.filter((t) => t.startsWith(`${portA} `))).toEqual(
      ["closed", "open", "half-open", "open", "half-open", "closed"].map((x) => `${portA} ${x}`),
    );
    s.serviceToken.close();
  });

  it("answers unavailable at once, with no call, when every endpoint is out", async () => {
    const [a, b] = [await fakeKeystone("error"), await fakeKeystone("error")];
    const s = setup([a.url, b.url]);
    for (let i = 0; i < 3; i++) {
      expect(await s.validator.validate("t")).toMatchObject({
        kind: "unavailable",
        reason: "server_error",
      });
    }
    expect(states(s.guarded)).toEqual(["open", "open"]);
    const started = performance.now();
    expect(await s.validator.validate("t")).toMatchObject({
      kind: "unavailable",
      reason: "all_endpoints_out",
    });
    expect(performance.now() - started).toBeLessThan(50);
    expect([a.validations, b.validations]).toEqual([3, 3]);
    s.serviceToken.close();
  });

  it("moves past a hanging endpoint within the validation's deadline", async () => {
    const [a, b] = [await fakeKeystone(), await fakeKeystone()];
    const s = setup([a.url, b.url], { timeoutMs: 300, requestTimeoutMs: 2_000 });
    await s.serviceToken.ensure();
    a.mode = "hang";
    const started = performance.now();
    expect(await s.validator.validate("t")).toMatchObject({ kind: "valid" });
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(280);
    expect(took).toBeLessThan(1_500);
    expect(b.validations).toBe(1);
    s.serviceToken.close();
  });

  it("never runs past the validation's own deadline, whatever the per-call deadline", async () => {
    const [a, b] = [await fakeKeystone(), await fakeKeystone()];
    const s = setup([a.url, b.url], { timeoutMs: 5_000, requestTimeoutMs: 400 });
    await s.serviceToken.ensure();
    a.mode = "hang";
    b.mode = "hang";
    const started = performance.now();
    expect(await s.validator.validate("t")).toMatchObject({
      kind: "unavailable",
      reason: "timeout",
    });
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(380);
    expect(took).toBeLessThan(1_500);
    s.serviceToken.close();
  });
});
