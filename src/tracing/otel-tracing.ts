/**
 * Tracing: the OpenTelemetry implementation.
 *
 * Owns: {@link createOtelTracing}, the {@link Tracing} of `tracing.ts` built on the
 * OpenTelemetry JS SDK: a `BasicTracerProvider` with a `BatchSpanProcessor` over the
 * OTLP/HTTP exporter (JSON), a parent-based ratio sampler, and W3C Trace Context for
 * `traceparent`/`tracestate` in and out.
 *
 * Registers nothing global: no global tracer provider, context manager, propagator, diag
 * logger or error handler. The active span travels in this instance's own
 * `AsyncLocalStorage<Context>` (set by `inSpan`, so it survives `await`s), and the W3C
 * propagator is called directly. Two instances (a test beside an edge) never see each
 * other's spans.
 *
 * Nothing here throws into the request path once created: export failures (collector
 * down, refusing, slow) are reported by the exporter's callback, logged as a throttled
 * warning, and the batch dropped; past `maxQueueSize` ended spans waiting for export are
 * dropped. OpenTelemetry's own `diag` messages go nowhere, as no diag logger is set.
 *
 * Never put a token, a secret or a header value that may hold one in a span name, an
 * attribute or an error message: spans leave the process for the collector.
 *
 * The OTel exporter still reads some `OTEL_EXPORTER_OTLP_*` variables for what these
 * options do not set (extra headers, compression, TLS certificates); the options here win
 * for the endpoint, the timeout, the batch sizes and the sampler.
 */
import {
  ROOT_CONTEXT,
  SpanKind as OtelSpanKind,
  SpanStatusCode,
  defaultTextMapGetter,
  defaultTextMapSetter,
  trace,
  type Context,
  type Span,
} from "@opentelemetry/api";
import {
  ExportResultCode,
  W3CTraceContextPropagator,
  type ExportResult,
} from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { defaultResource, resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type SpanExporter,
} from "@opentelemetry/sdk-trace-base";
import { AsyncLocalStorage } from "node:async_hooks";

import { ThrottledLog, silentLogger, type Logger } from "../log.js";
import {
  spanErrorMessage,
  type IncomingTraceHeaders,
  type SpanAttributeValue,
  type SpanAttributes,
  type SpanKind,
  type TraceSpan,
  type Tracing,
} from "../tracing.js";

/** Options of {@link createOtelTracing}. */
export interface OtelTracingOptions {
  /**
   * The collector's base URL, as in `OTEL_EXPORTER_OTLP_ENDPOINT` (`http://otel:4318`);
   * spans are posted to `<otlpEndpoint>/v1/traces` (a trailing `/` is fine). Required.
   */
  readonly otlpEndpoint: string;
  /**
   * Share of new traces recorded, 0 to 1. Default 1 (every trace, OpenTelemetry's own
   * default; lower it for a busy region). Applies to traces the edge starts; a request
   * whose `traceparent` is sampled (flags `01`) is always recorded and one whose
   * `traceparent` is not (`00`) never is, whatever the ratio: the caller decided.
   */
  readonly sampleRatio?: number;
  /** The resource's `service.name`. Default `"keystone-edge"`. */
  readonly serviceName?: string;
  /** The resource's `service.instance.id` (e.g. host name and worker). Default none. */
  readonly instanceId?: string;
  /**
   * How long one export request may take, retries included, before the batch is given up.
   * Default 10 000 ms.
   */
  readonly exportTimeoutMs?: number;
  /**
   * Ended spans waiting for export, at most; spans ending when it is full are dropped.
   * Default 2048.
   */
  readonly maxQueueSize?: number;
  /** Longest wait between the first span queued and its export. Default 1000 ms. */
  readonly scheduledDelayMs?: number;
  /** Receives export failures (throttled, one line per 10 s). Default silent. */
  readonly logger?: Logger;
}

const DEFAULT_SERVICE_NAME = "keystone-edge";
const DEFAULT_SAMPLE_RATIO = 1;
const DEFAULT_EXPORT_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_QUEUE_SIZE = 2048;
const DEFAULT_SCHEDULED_DELAY_MS = 1000;
/** Spans per export request, at most (OpenTelemetry's default), capped by the queue. */
const MAX_EXPORT_BATCH_SIZE = 512;

const KINDS: Readonly<Record<SpanKind, OtelSpanKind>> = {
  server: OtelSpanKind.SERVER,
  client: OtelSpanKind.CLIENT,
  internal: OtelSpanKind.INTERNAL,
};

/** `<endpoint>/v1/traces`, for an http(s) base URL with or without a trailing `/`. */
export function tracesUrl(otlpEndpoint: string): string {
  let url: URL;
  try {
    url = new URL(otlpEndpoint);
  } catch {
    throw new RangeError(`tracing: otlpEndpoint is not a URL: ${JSON.stringify(otlpEndpoint)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new RangeError(`tracing: otlpEndpoint must be http(s), not ${url.protocol}`);
  return `${otlpEndpoint.replace(/\/+$/, "")}/v1/traces`;
}

/** `url` without its user and password, fit for a log line. */
function withoutCredentials(url: string): string {
  const parsed = new URL(url);
  parsed.username = "";
  parsed.password = "";
  return parsed.href;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value <= 0)
    throw new RangeError(`tracing: ${name} must be a positive integer, not ${String(value)}`);
  return value;
}

/**
 * Tracing exported over OTLP/HTTP (JSON) to `options.otlpEndpoint`. Throws `RangeError`
 * for an option out of range; nothing it returns throws afterwards.
 */
export function createOtelTracing(options: OtelTracingOptions): Tracing {
  const url = tracesUrl(options.otlpEndpoint);
  const sampleRatio = options.sampleRatio ?? DEFAULT_SAMPLE_RATIO;
  if (!(sampleRatio >= 0 && sampleRatio <= 1))
    throw new RangeError(`tracing: sampleRatio must be within 0..1, not ${String(sampleRatio)}`);
  const exportTimeoutMs = positiveInteger(
    "exportTimeoutMs",
    options.exportTimeoutMs ?? DEFAULT_EXPORT_TIMEOUT_MS,
  );
  const maxQueueSize = positiveInteger(
    "maxQueueSize",
    options.maxQueueSize ?? DEFAULT_MAX_QUEUE_SIZE,
  );
  const scheduledDelayMs = positiveInteger(
    "scheduledDelayMs",
    options.scheduledDelayMs ?? DEFAULT_SCHEDULED_DELAY_MS,
  );
  const logger = options.logger ?? silentLogger;

  const exporter = new ReportingExporter(
    new OTLPTraceExporter({ url, timeoutMillis: exportTimeoutMs }),
    new ThrottledLog((message, fields) => {
      logger.warn(message, fields);
    }),
    withoutCredentials(url),
  );
  const provider = new BasicTracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({
        "service.name": options.serviceName ?? DEFAULT_SERVICE_NAME,
        ...(options.instanceId !== undefined ? { "service.instance.id": options.instanceId } : {}),
      }),
    ),
    sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(sampleRatio) }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        maxQueueSize,
        maxExportBatchSize: Math.min(MAX_EXPORT_BATCH_SIZE, maxQueueSize),
        scheduledDelayMillis: scheduledDelayMs,
        exportTimeoutMillis: exportTimeoutMs,
      }),
    ],
  });
  const tracer = provider.getTracer(DEFAULT_SERVICE_NAME);
  const propagator = new W3CTraceContextPropagator();
  const active = new AsyncLocalStorage<Context>();

  let stopped: Promise<void> | undefined;
  const stop = async (): Promise<void> => {
    try {
      // Flushes the queue through the exporter, then shuts the exporter down; rejects when
      // the last export failed (already logged by the exporter), which skips the latter.
      await provider.shutdown();
    } catch (error) {
      logger.warn("tracing: flushing spans at shutdown failed", {
        error: spanErrorMessage(error),
      });
    }
    await exporter.shutdown();
  };

  return {
    enabled: true,
    inSpan<T>(
      name: string,
      kind: SpanKind,
      attributes: SpanAttributes,
      fn: (span: TraceSpan) => T,
      incoming?: IncomingTraceHeaders,
    ): T {
      const parent =
        kind === "server"
          ? incoming === undefined
            ? ROOT_CONTEXT
            : propagator.extract(ROOT_CONTEXT, incoming, defaultTextMapGetter)
          : (active.getStore() ?? ROOT_CONTEXT);
      const otelSpan = tracer.startSpan(name, { kind: KINDS[kind], attributes }, parent);
      const span = new OtelTraceSpan(otelSpan);
      return active.run(trace.setSpan(parent, otelSpan), () => endWhenSettled(span, fn));
    },
    inject(headers: Record<string, string>): void {
      const context = active.getStore();
      if (context === undefined) return;
      const spanContext = trace.getSpanContext(context);
      // Unsampled too (flags 00), as W3C Trace Context asks: the service downstream then
      // knows the trace is not being recorded rather than starting one of its own.
      if (spanContext === undefined) return;
      propagator.inject(context, headers, defaultTextMapSetter);
    },
    shutdown(): Promise<void> {
      stopped ??= stop();
      return stopped;
    },
  };
}

/** Calls `fn(span)` and ends `span` when it returns, throws, or its promise settles. */
function endWhenSettled<T>(span: OtelTraceSpan, fn: (span: TraceSpan) => T): T {
  let result: T;
  try {
    result = fn(span);
  } catch (error) {
    span.end(spanErrorMessage(error));
    throw error;
  }
  if (isPromiseLike(result)) {
    result.then(
      () => {
        span.end();
      },
      (error: unknown) => {
        span.end(spanErrorMessage(error));
      },
    );
  } else {
    span.end();
  }
  return result;
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (
    (typeof value === "object" || typeof value === "function") &&
    value !== null &&
    typeof (value as { then?: unknown }).then === "function"
  );
}

/** A {@link TraceSpan} over an OTel span; ends it once. */
class OtelTraceSpan implements TraceSpan {
  readonly recording: boolean;
  private ended = false;

  constructor(private readonly span: Span) {
    this.recording = span.isRecording();
  }

  setAttribute(key: string, value: SpanAttributeValue): void {
    if (!this.ended) this.span.setAttribute(key, value);
  }

  end(error?: string): void {
    if (this.ended) return;
    this.ended = true;
    if (error !== undefined) this.span.setStatus({ code: SpanStatusCode.ERROR, message: error });
    this.span.end();
  }
}

/**
 * The OTLP exporter, with every failed export logged (throttled) and `shutdown` made
 * idempotent (the provider's shutdown skips it when the last export failed).
 */
class ReportingExporter implements SpanExporter {
  private stopped: Promise<void> | undefined;

  constructor(
    private readonly inner: SpanExporter,
    private readonly log: ThrottledLog,
    private readonly url: string,
  ) {}

  export(spans: ReadableSpan[], resultCallback: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS)
        this.log.write("tracing: span export failed, spans dropped", {
          url: this.url,
          spans: spans.length,
          error: result.error !== undefined ? spanErrorMessage(result.error) : "unknown",
        });
      resultCallback(result);
    });
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }

  shutdown(): Promise<void> {
    this.stopped ??= this.inner.shutdown().catch(() => undefined);
    return this.stopped;
  }
}
