/**
 * A Keystone call under tracing: a client span, child of the span active when the call is
 * made, whose id Keystone receives in `traceparent`; a 5xx or a failed call marks the span
 * as error; the tokens sent never reach a span. Tracing off: the call goes out as it is.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";

import { KeystoneEndpoint } from "../../../src/keystone/endpoint.js";
import { tracedCall } from "../../../src/keystone/validate.js";
import { noTracing } from "../../../src/tracing.js";
import { createOtelTracing } from "../../../src/tracing/otel-tracing.js";
import { startOtlpReceiver, type OtlpReceiver } from "../../harness/otlp-receiver.js";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function keystoneStandIn(status: number) {
  const seen: IncomingHttpHeaders[] = [];
  const server: Server = createServer((req, res) => {
    req.resume();
    seen.push(req.headers);
    res.writeHead(status, { "content-type": "application/json" }).end("{}");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(
    () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(r);
      }),
  );
  const { port } = server.address() as AddressInfo;
  const endpoint = new KeystoneEndpoint({
    url: `http://127.0.0.1:${String(port)}/v3`,
    name: "master",
    timeoutMs: 5_000,
  });
  cleanups.push(() => endpoint.close());
  return { endpoint, seen };
}

async function receiver(): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver();
  cleanups.push(() => r.close());
  return r;
}

const SUBJECT = "gAAAAAB-subject-token-value";

describe("tracedCall", () => {
  it("sends the client span's traceparent to Keystone, under the active span", async () => {
    const { endpoint, seen } = await keystoneStandIn(200);
    const otlp = await receiver();
    const tracing = createOtelTracing({ otlpEndpoint: otlp.url, scheduledDelayMs: 10 });
    await tracing.inSpan("validate", "internal", {}, () =>
      tracedCall(tracing, endpoint, {
        method: "GET",
        path: "/auth/tokens?nocatalog",
        headers: { "x-subject-token": SUBJECT },
      }),
    );
    await tracing.shutdown();
    const spans = otlp.spans();
    const parent = spans.find((s) => s.name === "validate");
    const call = spans.find((s) => s.name === "GET /auth/tokens");
    expect(call).toMatchObject({
      kind: "client",
      parentSpanId: parent?.spanId,
      statusCode: "unset",
    });
    expect(call?.attributes).toMatchObject({
      "http.request.method": "GET",
      "http.response.status_code": 200,
      "keystone_edge.endpoint": "master",
    });
    expect(seen[0]?.["traceparent"]).toBe(`00-${String(call?.traceId)}-${String(call?.spanId)}-01`);
    expect(JSON.stringify(spans)).not.toContain(SUBJECT);
  });

  it("marks a 5xx as an error of the span", async () => {
    const { endpoint } = await keystoneStandIn(503);
    const otlp = await receiver();
    const tracing = createOtelTracing({ otlpEndpoint: otlp.url, scheduledDelayMs: 10 });
    const outcome = await tracedCall(tracing, endpoint, {
      method: "GET",
      path: "/auth/tokens",
      headers: {},
    });
    expect(outcome.kind === "response" && outcome.status).toBe(503);
    await tracing.shutdown();
    expect(otlp.spans()[0]).toMatchObject({ statusCode: "error", statusMessage: "HTTP 503" });
  });

  it("sends no traceparent with tracing off", async () => {
    const { endpoint, seen } = await keystoneStandIn(200);
    await tracedCall(noTracing, endpoint, { method: "GET", path: "/auth/tokens", headers: {} });
    expect(seen[0]?.["traceparent"]).toBeUndefined();
  });
});
