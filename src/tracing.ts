/**
 * Tracing: the interface.
 *
 * Owns: the small tracing interface every module takes as an injected option (never a
 * global), the no-op implementation {@link noTracing} used when tracing is off, and the
 * one rule for turning a thrown value into a span's error message. The OpenTelemetry
 * implementation lives in `tracing/otel-tracing.ts`; nothing here knows OpenTelemetry.
 *
 * Callers on the hot path test `tracing.enabled` and skip building names and attributes
 * when it is false; `noTracing`'s calls cost a function call and nothing more anyway.
 *
 * Never put a token, a secret or a header value that may hold one in a span name, an
 * attribute or an error message: a trace leaves the process. Record `tokenHash()` (log.ts)
 * of a token if a span needs to name it.
 */
import { EdgeError } from "./errors.js";

/** What a span stands for: serving a request, calling out, or work inside the edge. */
export type SpanKind = "server" | "client" | "internal";

/** A span attribute's value: only scalars (OpenTelemetry's arrays are not needed here). */
export type SpanAttributeValue = string | number | boolean;

/** A span's attributes, by OpenTelemetry semantic-convention key (`http.request.method`…). */
export type SpanAttributes = Readonly<Record<string, SpanAttributeValue>>;

/**
 * W3C Trace Context headers of an incoming request. An `IncomingHttpHeaders` (`req.headers`)
 * fits as is: only these two lower-case keys are read; a repeated `traceparent` counts by
 * its first value, repeated `tracestate`s are joined.
 */
export interface IncomingTraceHeaders {
  readonly traceparent?: string | readonly string[] | undefined;
  readonly tracestate?: string | readonly string[] | undefined;
}

/** The span `inSpan` runs its function in. */
export interface TraceSpan {
  /**
   * Whether the span is recorded (tracing on and the span sampled). When false, every
   * call below does nothing: skip computing attributes that cost something.
   */
  readonly recording: boolean;
  /** Sets (or replaces) one attribute; ignored once the span has ended. */
  setAttribute(key: string, value: SpanAttributeValue): void;
  /**
   * Ends the span now; `error` marks its status as error with that message (no token in
   * it). Only the first end counts: `inSpan` ending the span when its function settles does
   * nothing after an explicit `end`. Use it for an outcome that is an error without a throw
   * (an answer of 5xx), after setting the last attributes.
   */
  end(error?: string): void;
}

/** Tracing, as the rest of the code sees it. Injected; {@link noTracing} when off. */
export interface Tracing {
  /** False for {@link noTracing}: callers skip all tracing work. */
  readonly enabled: boolean;
  /**
   * Runs `fn` in a new span and returns what `fn` returns (the very same promise when it
   * returns one). The span is active inside `fn`, across its `await`s too, so `inSpan`
   * calls made there are its children and `inject` names it.
   *
   * The parent: for kind `"server"`, the remote span the `incoming` headers' `traceparent`
   * names, or none (a new trace) when they name none; never the active span, since a
   * request's handler can inherit an unrelated async context (a listener opened inside a
   * span). For the other kinds, the active span, or none; `incoming` is ignored.
   *
   * The span ends when `fn` returns or throws, or, if `fn` returns a promise, when that
   * promise settles; a throw or rejection marks its status as error (see
   * {@link spanErrorMessage}) and propagates unchanged.
   */
  inSpan<T>(
    name: string,
    kind: SpanKind,
    attributes: SpanAttributes,
    fn: (span: TraceSpan) => T,
    incoming?: IncomingTraceHeaders,
  ): T;
  /**
   * Sets `traceparent` (and `tracestate`, when the trace has one) in outgoing request
   * headers for the active span, replacing any there — an unsampled one too (flags `00`:
   * the service downstream does not record it either). Does nothing when no span is active.
   */
  inject(headers: Record<string, string>): void;
  /** Exports what is still queued and stops; never rejects. Later spans are dropped. */
  shutdown(): Promise<void>;
}

/** The span of {@link noTracing}: records nothing. */
const noSpan: TraceSpan = {
  recording: false,
  setAttribute: () => undefined,
  end: () => undefined,
};

/** Tracing off: `inSpan` just calls `fn`, the rest does nothing. */
export const noTracing: Tracing = {
  enabled: false,
  inSpan: (_name, _kind, _attributes, fn) => fn(noSpan),
  inject: () => undefined,
  shutdown: () => Promise.resolve(),
};

/**
 * A span's error message for what `fn` threw: an {@link EdgeError}'s stable code and
 * message, another error's name and message, or only the type of a thrown non-error (its
 * contents are unknown, and could hold anything).
 */
export function spanErrorMessage(thrown: unknown): string {
  if (thrown instanceof EdgeError) return `${thrown.code}: ${thrown.message}`;
  if (thrown instanceof Error) return `${thrown.name}: ${thrown.message}`;
  return `thrown ${thrown === null ? "null" : typeof thrown}`;
}
