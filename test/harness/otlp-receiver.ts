/**
 * Owns: a minimal OTLP/HTTP trace receiver for tests — a Node HTTP server on a free
 * loopback port taking `POST /v1/traces` in OTLP JSON (`application/json`, optionally
 * gzip-encoded), decoding each `ExportTraceServiceRequest` into flat {@link ReceivedSpan}s
 * and answering 200 `{}`. Protobuf (`application/x-protobuf`) is refused with 415: the edge
 * exports JSON. Other paths answer 404, other methods 405, a body that is not OTLP JSON 400.
 *
 * The edge's exporter (`@opentelemetry/otlp-transformer`'s JSON encoder) sends trace and
 * span ids as lower-case hex; proto3 JSON proper (other SDKs, collectors) sends them as
 * base64. Both decode here to lower-case hex. Likewise `intValue` arrives as a JSON number
 * or a decimal string, `kind` and `status.code` as numbers or enum names.
 *
 * Only node: built-ins.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";

export type ReceivedSpanKind =
  "unspecified" | "internal" | "server" | "client" | "producer" | "consumer";
export type ReceivedStatusCode = "unset" | "ok" | "error";

/** One span as received, decoded and flattened. */
export interface ReceivedSpan {
  /** 32 lower-case hex digits. */
  readonly traceId: string;
  /** 16 lower-case hex digits. */
  readonly spanId: string;
  /** 16 lower-case hex digits; absent for a root span. */
  readonly parentSpanId?: string;
  readonly name: string;
  readonly kind: ReceivedSpanKind;
  /** Scalar attributes by key; array, map and bytes values are left out. */
  readonly attributes: Readonly<Record<string, string | number | boolean>>;
  readonly statusCode: ReceivedStatusCode;
  /** The status message, when the span has one. */
  readonly statusMessage?: string;
  /** The resource's `service.name`, `""` when it has none. */
  readonly serviceName: string;
  /** All scalar resource attributes (`service.instance.id`, `telemetry.sdk.*`…). */
  readonly resourceAttributes: Readonly<Record<string, string | number | boolean>>;
}

export interface OtlpReceiver {
  /** The base URL, `http://127.0.0.1:<port>` (as `OTEL_EXPORTER_OTLP_ENDPOINT`). */
  readonly url: string;
  /** Every span received so far, in arrival order. */
  spans(): ReceivedSpan[];
  /** Export requests received so far (accepted or not). */
  requests(): number;
  /**
   * Resolves with all spans received once `predicate` holds for them (checked at once and
   * after each export request); rejects after `timeoutMs` (default 5 000) naming what
   * arrived.
   */
  waitForSpans(
    predicate: (spans: readonly ReceivedSpan[]) => boolean,
    timeoutMs?: number,
  ): Promise<ReceivedSpan[]>;
  /** Stops listening and cuts open connections. */
  close(): Promise<void>;
}

const KINDS: readonly ReceivedSpanKind[] = [
  "unspecified",
  "internal",
  "server",
  "client",
  "producer",
  "consumer",
];
const STATUS_CODES: readonly ReceivedStatusCode[] = ["unset", "ok", "error"];

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function objects(value: unknown): Json[] {
  return Array.isArray(value) ? value.filter(isObject) : [];
}

/** An id of `bytes` bytes, hex (as the JS exporter sends) or base64 (proto3 JSON), as hex. */
function decodeId(value: unknown, bytes: number): string | undefined {
  if (typeof value !== "string" || value === "") return undefined;
  if (value.length === bytes * 2 && /^[0-9a-fA-F]+$/.test(value)) return value.toLowerCase();
  const decoded = Buffer.from(value, "base64");
  if (decoded.length !== bytes) throw new Error(`bad ${String(bytes)}-byte id ${value}`);
  return decoded.toString("hex");
}

function decodeEnum<T>(value: unknown, names: readonly T[], prefix: string): T {
  if (typeof value === "number" && names[value] !== undefined) return names[value];
  if (typeof value === "string") {
    const name = value.startsWith(prefix) ? value.slice(prefix.length).toLowerCase() : value;
    const found = names.find((n) => n === name);
    if (found !== undefined) return found;
  }
  if (value === undefined) return names[0] as T;
  throw new Error(`unknown ${prefix}value ${JSON.stringify(value)}`);
}

function decodeAttributes(value: unknown): Record<string, string | number | boolean> {
  const out: Record<string, string | number | boolean> = {};
  for (const kv of objects(value)) {
    const key = kv.key;
    const v = kv.value;
    if (typeof key !== "string" || !isObject(v)) continue;
    if (typeof v.stringValue === "string") out[key] = v.stringValue;
    else if (typeof v.boolValue === "boolean") out[key] = v.boolValue;
    else if (typeof v.intValue === "number" || typeof v.intValue === "string")
      out[key] = Number(v.intValue);
    else if (typeof v.doubleValue === "number") out[key] = v.doubleValue;
  }
  return out;
}

/** The spans of one OTLP JSON `ExportTraceServiceRequest`; throws on a malformed one. */
export function decodeExportTraceServiceRequest(body: unknown): ReceivedSpan[] {
  if (!isObject(body) || !Array.isArray(body.resourceSpans))
    throw new Error("not an ExportTraceServiceRequest: no resourceSpans");
  const out: ReceivedSpan[] = [];
  for (const resourceSpans of objects(body.resourceSpans)) {
    const resource = isObject(resourceSpans.resource) ? resourceSpans.resource : {};
    const resourceAttributes = decodeAttributes(resource.attributes);
    const serviceName = resourceAttributes["service.name"];
    for (const scopeSpans of objects(resourceSpans.scopeSpans)) {
      for (const span of objects(scopeSpans.spans)) {
        const traceId = decodeId(span.traceId, 16);
        const spanId = decodeId(span.spanId, 8);
        if (traceId === undefined || spanId === undefined)
          throw new Error("span without traceId or spanId");
        const parentSpanId = decodeId(span.parentSpanId, 8);
        const status = isObject(span.status) ? span.status : {};
        out.push({
          traceId,
          spanId,
          ...(parentSpanId !== undefined ? { parentSpanId } : {}),
          name: typeof span.name === "string" ? span.name : "",
          kind: decodeEnum(span.kind, KINDS, "SPAN_KIND_"),
          attributes: decodeAttributes(span.attributes),
          statusCode: decodeEnum(status.code, STATUS_CODES, "STATUS_CODE_"),
          ...(typeof status.message === "string" && status.message !== ""
            ? { statusMessage: status.message }
            : {}),
          serviceName: typeof serviceName === "string" ? serviceName : "",
          resourceAttributes,
        });
      }
    }
  }
  return out;
}

function answer(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}

/** Starts a receiver on 127.0.0.1, on a free port. */
export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const received: ReceivedSpan[] = [];
  const listeners = new Set<() => void>();
  let requests = 0;

  const handle = (req: IncomingMessage, res: ServerResponse, raw: Buffer): void => {
    requests++;
    if ((req.url ?? "").split("?")[0] !== "/v1/traces") {
      answer(res, 404, JSON.stringify({ message: "not found" }));
      return;
    }
    if (req.method !== "POST") {
      answer(res, 405, JSON.stringify({ message: "method not allowed" }));
      return;
    }
    const type = (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase();
    if (type !== "application/json") {
      answer(res, 415, JSON.stringify({ message: `unsupported content type ${String(type)}` }));
      return;
    }
    let spans: ReceivedSpan[];
    try {
      const body = req.headers["content-encoding"] === "gzip" ? gunzipSync(raw) : raw;
      spans = decodeExportTraceServiceRequest(JSON.parse(body.toString("utf8")));
    } catch (error) {
      answer(res, 400, JSON.stringify({ message: String(error) }));
      return;
    }
    received.push(...spans);
    answer(res, 200, "{}");
    for (const listener of [...listeners]) listener();
  };

  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      handle(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://127.0.0.1:${String(port)}`,
    spans: () => [...received],
    requests: () => requests,
    waitForSpans: (predicate, timeoutMs = 5_000) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          if (!predicate(received)) return;
          clearTimeout(timer);
          listeners.delete(check);
          resolve([...received]);
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          const names = received.map((s) => s.name).join(", ");
          reject(
            new Error(
              `timed out after ${String(timeoutMs)} ms waiting for spans; received ${String(received.length)}: [${names}]`,
            ),
          );
        }, timeoutMs);
        listeners.add(check);
        check();
      }),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          resolve();
        });
      }),
  };
}
