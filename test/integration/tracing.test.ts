/**
 * OpenTelemetry tracing against a real Keystone, spans exported over OTLP/HTTP to a
 * receiver the test starts (test/harness/otlp-receiver.ts decodes what it gets):
 *
 * - a request with the client's sampled `traceparent` continues the client's trace: the
 *   edge's server span is the client span's child; validation, its tiers and the Keystone
 *   call are below it; the forward is a client span whose id the service receives in its
 *   `traceparent` (replacing the client's);
 * - an unsampled `traceparent` exports nothing, yet the service still gets the trace,
 *   marked unsampled;
 * - no span attribute, name or status holds a token.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import {
  startOtlpReceiver,
  type OtlpReceiver,
  type ReceivedSpan,
} from "../harness/otlp-receiver.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
let echo: EchoUpstream;
let receiver: OtlpReceiver;
let edge: RunningEdge;
let url = "";
let token = "";

const CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN = "00f067aa0ba902b7";

beforeAll(async () => {
  echo = await startEchoUpstream();
  receiver = await startOtlpReceiver();
  const document = edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) });
  ({ edge, url } = await startTestEdge({
    ...document,
    tracing: { otlp_endpoint: receiver.url, sample_ratio: 1 },
  }));
  token = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}, 300_000);

afterAll(async () => {
  await edge.close(1_000);
  await receiver.close();
  await echo.stop();
});

/** The request through the edge; the headers the service received. */
async function through(
  headers: Record<string, string>,
): Promise<{ status: number; seen: Record<string, string> }> {
  const res = await fetch(`${url}/v2.1/servers?secret=x`, { headers });
  const body = (await res.json()) as { headers: Record<string, string> };
  return { status: res.status, seen: body.headers };
}

function inTrace(spans: readonly ReceivedSpan[], traceId: string): ReceivedSpan[] {
  return spans.filter((s) => s.traceId === traceId);
}

function one(spans: readonly ReceivedSpan[], name: string): ReceivedSpan {
  const found = spans.filter((s) => s.name === name);
  expect(found.map((s) => s.name)).toEqual([name]);
  return found[0] as ReceivedSpan;
}

describe("tracing", () => {
  it("continues the client's trace: request, validation tiers, Keystone call, forward", async () => {
    const { status, seen } = await through({
      "X-Auth-Token": token,
      traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`,
      tracestate: "vendor=abc",
    });
    expect(status).toBe(200);
    const spans = inTrace(
      await receiver.waitForSpans(
        (all) => inTrace(all, CLIENT_TRACE).some((s) => s.name === "forward"),
        10_000,
      ),
      CLIENT_TRACE,
    );
    const server = one(spans, "GET");
    expect(server).toMatchObject({
      kind: "server",
      parentSpanId: CLIENT_SPAN,
      serviceName: "keystone-edge",
    });
    expect(server.attributes).toMatchObject({
      "http.request.method": "GET",
      "url.path": "/v2.1/servers",
      "http.response.status_code": 200,
      "keystone_edge.outcome": "valid",
      "keystone_edge.tier": "keystone",
    });
    const validate = one(spans, "validate");
    expect(validate.parentSpanId).toBe(server.spanId);
    expect(validate.attributes).toMatchObject({ "keystone_edge.tier": "keystone" });
    expect(one(spans, "decrypt").parentSpanId).toBe(validate.spanId);
    const call = one(spans, "GET /auth/tokens");
    expect(call).toMatchObject({ kind: "client", parentSpanId: validate.spanId });
    expect(call.attributes["http.response.status_code"]).toBe(200);
    const forward = one(spans, "forward");
    expect(forward).toMatchObject({ kind: "client", parentSpanId: server.spanId });
    // The service continues from the forward's span, the client's tracestate kept.
    expect(seen["traceparent"]).toBe(`00-${CLIENT_TRACE}-${forward.spanId}-01`);
    expect(seen["tracestate"]).toBe("vendor=abc");

    // A second request is an in-process cache hit: no validation span, the tier named.
    const again = "1bf92f3577b34da6a3ce929d0e0e4736";
    await through({ "X-Auth-Token": token, traceparent: `00-${again}-${CLIENT_SPAN}-01` });
    const hit = inTrace(
      await receiver.waitForSpans(
        (all) => inTrace(all, again).some((s) => s.name === "forward"),
        10_000,
      ),
      again,
    );
    expect(hit.map((s) => s.name).sort()).toEqual(["GET", "forward"]);
    expect(one(hit, "GET").attributes["keystone_edge.tier"]).toBe("l1");
  });

  it("starts a trace of its own without a traceparent, and marks a refusal", async () => {
    const before = receiver.spans().length;
    const res = await fetch(`${url}/v2.1/servers`, {
      headers: { "X-Auth-Token": `${token.slice(0, -4)}AAAA` },
    });
    await res.arrayBuffer();
    expect(res.status).toBe(401);
    const spans = await receiver.waitForSpans(
      (all) => all.slice(before).some((s) => s.name === "GET" && s.kind === "server"),
      10_000,
    );
    const server = spans.slice(before).find((s) => s.name === "GET" && s.kind === "server");
    expect(server?.parentSpanId).toBeUndefined();
    expect(server?.attributes).toMatchObject({
      "http.response.status_code": 401,
      "keystone_edge.outcome": "invalid",
      "keystone_edge.tier": "local_reject",
    });
  });

  it("exports nothing of an unsampled trace, and passes it on unsampled", async () => {
    const unsampled = "2bf92f3577b34da6a3ce929d0e0e4736";
    const { status, seen } = await through({
      "X-Auth-Token": token,
      traceparent: `00-${unsampled}-${CLIENT_SPAN}-00`,
    });
    expect(status).toBe(200);
    expect(seen["traceparent"]).toMatch(new RegExp(`^00-${unsampled}-[0-9a-f]{16}-00$`));
    // Something sampled after it: once it has arrived, the unsampled one would have too.
    const marker = "3bf92f3577b34da6a3ce929d0e0e4736";
    await through({ "X-Auth-Token": token, traceparent: `00-${marker}-${CLIENT_SPAN}-01` });
    await receiver.waitForSpans((all) => inTrace(all, marker).length >= 2, 10_000);
    expect(inTrace(receiver.spans(), unsampled)).toEqual([]);
  });

  it("never puts a token in a span", () => {
    const text = JSON.stringify(receiver.spans());
    expect(text).not.toContain(token);
    expect(text).not.toContain(token.slice(0, 32));
    expect(text).not.toContain("secret=x");
  });
});
