/**
 * `createOtelTracing` against a real OTLP/HTTP receiver on loopback
 * (test/harness/otlp-receiver.ts): spans continue an incoming `traceparent`, nest across
 * `await`s (and not across concurrent requests), `inject` names the active span, the
 * sampler honours the caller's decision whatever the ratio, a rejection marks the span and
 * propagates unchanged, attributes keep their types, and a collector that is not there
 * costs nothing but a logged warning. Waits are on the receiver, with deadlines; "nothing
 * exported" is read after `shutdown()`, which resolves once the last export is answered.
 */
import { afterEach, describe, expect, it } from "vitest";

import {
  createOtelTracing,
  tracesUrl,
  type OtelTracingOptions,
} from "../../../src/tracing/otel-tracing.js";
import type { Tracing } from "../../../src/tracing.js";
import { RecordingLogger } from "../../harness/doubles.js";
import { freePort } from "../../harness/net.js";
import {
  startOtlpReceiver,
  type OtlpReceiver,
  type ReceivedSpan,
} from "../../harness/otlp-receiver.js";

const REMOTE_TRACE = "0af7651916cd43dd8448eb211c80319c";
const REMOTE_SPAN = "b7ad6b7169203331";
const SAMPLED_PARENT = `00-${REMOTE_TRACE}-${REMOTE_SPAN}-01`;
const UNSAMPLED_PARENT = `00-${REMOTE_TRACE}-${REMOTE_SPAN}-00`;

const receivers: OtlpReceiver[] = [];
const tracings: Tracing[] = [];
afterEach(async () => {
  for (const t of tracings.splice(0)) await t.shutdown();
  for (const r of receivers.splice(0)) await r.close();
});

async function setup(options: Partial<OtelTracingOptions> = {}) {
  const receiver = await startOtlpReceiver();
  receivers.push(receiver);
  const tracing = createOtelTracing({
    otlpEndpoint: receiver.url,
    scheduledDelayMs: 10,
    ...options,
  });
  tracings.push(tracing);
  return { receiver, tracing };
}

/** Lets other tasks run: a macrotask turn, so `await`s really suspend. */
const turn = () => new Promise((resolve) => setImmediate(resolve));

const named = (spans: readonly ReceivedSpan[], name: string): ReceivedSpan => {
  const found = spans.filter((s) => s.name === name);
  if (found.length !== 1) throw new Error(`expected one span ${name}, got ${String(found.length)}`);
  return found[0] as ReceivedSpan;
};

const hasAll =
  (...names: string[]) =>
  (spans: readonly ReceivedSpan[]) =>
    names.every((n) => spans.some((s) => s.name === n));

describe("createOtelTracing", () => {
  it("continues the trace of an incoming traceparent in a server span", async () => {
    const { receiver, tracing } = await setup({ instanceId: "edge-1/worker-2" });
    expect(tracing.enabled).toBe(true);
    const answer = tracing.inSpan(
      "GET /v2.1/servers",
      "server",
      { "http.request.method": "GET" },
      () => 42,
      { traceparent: SAMPLED_PARENT, tracestate: "vendor=opaque" },
    );
    expect(answer).toBe(42);
    const span = named(
      await receiver.waitForSpans(hasAll("GET /v2.1/servers")),
      "GET /v2.1/servers",
    );
    expect(span).toMatchObject({
      traceId: REMOTE_TRACE,
      parentSpanId: REMOTE_SPAN,
      kind: "server",
      statusCode: "unset",
      serviceName: "keystone-edge",
    });
    expect(span.spanId).toMatch(/^[0-9a-f]{16}$/);
    expect(span.spanId).not.toBe(REMOTE_SPAN);
    expect(span.resourceAttributes["service.instance.id"]).toBe("edge-1/worker-2");
  });

  it("starts a new trace for a server span without (or with a broken) traceparent, even inside another span", async () => {
    const { receiver, tracing } = await setup({ serviceName: "edge-test" });
    tracing.inSpan("startup", "internal", {}, () => {
      tracing.inSpan("request-a", "server", {}, () => undefined);
      tracing.inSpan("request-b", "server", {}, () => undefined, {
        traceparent: "00-not-a-traceparent-01",
      });
    });
    const spans = await receiver.waitForSpans(hasAll("startup", "request-a", "request-b"));
    const startup = named(spans, "startup");
    for (const name of ["request-a", "request-b"]) {
      const span = named(spans, name);
      expect(span.parentSpanId).toBeUndefined();
      expect(span.traceId).not.toBe(startup.traceId);
      expect(span.serviceName).toBe("edge-test");
    }
  });

  it("nests spans across awaits, and keeps concurrent requests apart", async () => {
    const { receiver, tracing } = await setup();
    const request = (id: string) =>
      tracing.inSpan(`request-${id}`, "server", {}, async () => {
        await turn();
        await tracing.inSpan(`validate-${id}`, "internal", {}, async () => {
          await turn();
          await tracing.inSpan(`keystone-${id}`, "client", {}, async () => {
            await turn();
          });
        });
        await turn();
        await tracing.inSpan(`forward-${id}`, "client", {}, () => turn());
        return id;
      });
    expect(await Promise.all([request("a"), request("b")])).toEqual(["a", "b"]);

    const spans = await receiver.waitForSpans(
      hasAll(
        ...["a", "b"].flatMap((id) =>
          ["request", "validate", "keystone", "forward"].map((step) => `${step}-${id}`),
        ),
      ),
    );
    for (const id of ["a", "b"]) {
      const root = named(spans, `request-${id}`);
      const validate = named(spans, `validate-${id}`);
      const keystone = named(spans, `keystone-${id}`);
      const forward = named(spans, `forward-${id}`);
      expect(root.parentSpanId).toBeUndefined();
      expect(validate).toMatchObject({ traceId: root.traceId, parentSpanId: root.spanId });
      expect(keystone).toMatchObject({
        traceId: root.traceId,
        parentSpanId: validate.spanId,
        kind: "client",
      });
      expect(forward).toMatchObject({ traceId: root.traceId, parentSpanId: root.spanId });
    }
    expect(named(spans, "request-a").traceId).not.toBe(named(spans, "request-b").traceId);
  });

  it("injects a traceparent naming the active span, and nothing outside a span", async () => {
    const { receiver, tracing } = await setup();
    const outside: Record<string, string> = {};
    tracing.inject(outside);
    expect(outside).toEqual({});

    const headers: Record<string, string> = { traceparent: "00-stale-from-the-client-01" };
    await tracing.inSpan(
      "request",
      "server",
      {},
      async () => {
        await turn();
        await tracing.inSpan("forward", "client", {}, async () => {
          await turn();
          tracing.inject(headers);
        });
      },
      { traceparent: SAMPLED_PARENT, tracestate: "vendor=opaque" },
    );
    const forward = named(await receiver.waitForSpans(hasAll("forward")), "forward");
    expect(headers).toEqual({
      traceparent: `00-${REMOTE_TRACE}-${forward.spanId}-01`,
      tracestate: "vendor=opaque",
    });
  });

  it("with sampleRatio 0 exports no trace of its own, but honours a sampled incoming parent", async () => {
    const { receiver, tracing } = await setup({ sampleRatio: 0 });
    const headers: Record<string, string> = {};
    await tracing.inSpan("dropped", "server", {}, async (span) => {
      expect(span.recording).toBe(false);
      span.setAttribute("ignored", true);
      await turn();
      tracing.inSpan("dropped-child", "client", {}, () => {
        tracing.inject(headers);
      });
    });
    // Propagated all the same, marked unsampled: the service downstream records nothing.
    expect(headers["traceparent"]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    const passedOn: Record<string, string> = {};
    tracing.inSpan(
      "refused-by-caller",
      "server",
      {},
      () => {
        tracing.inject(passedOn);
      },
      { traceparent: UNSAMPLED_PARENT },
    );
    // The caller's trace goes on, unsampled.
    expect(passedOn["traceparent"]).toMatch(new RegExp(`^00-${REMOTE_TRACE}-[0-9a-f]{16}-00$`));
    await tracing.inSpan(
      "kept",
      "server",
      {},
      async (span) => {
        expect(span.recording).toBe(true);
        await tracing.inSpan("kept-child", "internal", {}, () => turn());
      },
      { traceparent: SAMPLED_PARENT },
    );
    // shutdown() resolves once the receiver has answered the last export.
    await tracing.shutdown();
    const spans = receiver.spans();
    expect(spans.map((s) => s.name).sort()).toEqual(["kept", "kept-child"]);
    expect(named(spans, "kept")).toMatchObject({
      traceId: REMOTE_TRACE,
      parentSpanId: REMOTE_SPAN,
    });
    expect(named(spans, "kept-child").parentSpanId).toBe(named(spans, "kept").spanId);
  });

  it("with sampleRatio 1 still leaves out a request whose caller did not sample it", async () => {
    const { receiver, tracing } = await setup({ sampleRatio: 1 });
    tracing.inSpan("not-sampled", "server", {}, () => undefined, {
      traceparent: UNSAMPLED_PARENT,
    });
    tracing.inSpan("sampled", "server", {}, () => undefined);
    await tracing.shutdown();
    expect(receiver.spans().map((s) => s.name)).toEqual(["sampled"]);
  });

  it("marks a span whose function rejects or throws as error, and lets the error through unchanged", async () => {
    const { receiver, tracing } = await setup();
    const failure = new TypeError("upstream went away");
    const promise = tracing.inSpan("rejects", "client", {}, async () => {
      await turn();
      throw failure;
    });
    await expect(promise).rejects.toBe(failure);
    expect(() =>
      tracing.inSpan("throws", "internal", {}, () => {
        throw failure;
      }),
    ).toThrow(failure);
    tracing.inSpan("ends-itself", "server", {}, (span) => {
      span.setAttribute("http.response.status_code", 503);
      span.end("no Keystone endpoint answering");
      span.setAttribute("after-end", true);
    });
    const spans = await receiver.waitForSpans(hasAll("rejects", "throws", "ends-itself"));
    for (const name of ["rejects", "throws"])
      expect(named(spans, name)).toMatchObject({
        statusCode: "error",
        statusMessage: "TypeError: upstream went away",
      });
    expect(named(spans, "ends-itself")).toMatchObject({
      statusCode: "error",
      statusMessage: "no Keystone endpoint answering",
      attributes: { "http.response.status_code": 503 },
    });
    expect(named(spans, "ends-itself").attributes).not.toHaveProperty("after-end");
  });

  it("returns the very promise fn returns", async () => {
    const { tracing } = await setup();
    const inner = Promise.resolve("value");
    const outer = tracing.inSpan("same", "internal", {}, () => inner);
    expect(outer).toBe(inner);
    expect(await outer).toBe("value");
  });

  it("keeps attribute types: strings, integers, doubles, booleans", async () => {
    const { receiver, tracing } = await setup();
    tracing.inSpan(
      "typed",
      "internal",
      { "http.request.method": "GET", "server.port": 8774, ratio: 0.25, "cache.hit": false },
      (span) => {
        span.setAttribute("http.response.status_code", 200);
        span.setAttribute("keystone.degraded", true);
      },
    );
    const span = named(await receiver.waitForSpans(hasAll("typed")), "typed");
    expect(span.attributes).toStrictEqual({
      "http.request.method": "GET",
      "server.port": 8774,
      ratio: 0.25,
      "cache.hit": false,
      "http.response.status_code": 200,
      "keystone.degraded": true,
    });
  });

  it("survives a collector that is not there: nothing throws, shutdown resolves, a warning is logged", async () => {
    const port = await freePort();
    const logger = new RecordingLogger();
    const tracing = createOtelTracing({
      otlpEndpoint: `http://127.0.0.1:${String(port)}/`,
      scheduledDelayMs: 10,
      exportTimeoutMs: 300,
      logger,
    });
    tracings.push(tracing);
    for (let i = 0; i < 5; i++)
      await tracing.inSpan(`span-${String(i)}`, "server", {}, async () => {
        await turn();
        tracing.inject({});
      });
    await expect(tracing.shutdown()).resolves.toBeUndefined();
    await expect(tracing.shutdown()).resolves.toBeUndefined();
    expect(logger.at("warn").map((l) => l.message)).toContain(
      "tracing: span export failed, spans dropped",
    );
    // After shutdown, spans are still harmless.
    expect(tracing.inSpan("late", "internal", {}, () => "ok")).toBe("ok");
  });

  it("posts to <otlpEndpoint>/v1/traces, with or without a trailing slash", () => {
    expect(tracesUrl("http://collector:4318")).toBe("http://collector:4318/v1/traces");
    expect(tracesUrl("http://collector:4318/")).toBe("http://collector:4318/v1/traces");
    expect(tracesUrl("https://gw.example/otlp/")).toBe("https://gw.example/otlp/v1/traces");
  });

  it("refuses options out of range at creation", () => {
    expect(() => createOtelTracing({ otlpEndpoint: "not a url" })).toThrow(RangeError);
    expect(() => createOtelTracing({ otlpEndpoint: "ftp://collector" })).toThrow(RangeError);
    expect(() => createOtelTracing({ otlpEndpoint: "http://c:4318", sampleRatio: 1.5 })).toThrow(
      RangeError,
    );
    expect(() => createOtelTracing({ otlpEndpoint: "http://c:4318", maxQueueSize: 0 })).toThrow(
      RangeError,
    );
  });
});
