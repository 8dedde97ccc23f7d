/**
 * Structured logging.
 *
 * Owns: the logger interface every module takes (never a global), and the JSON-lines
 * implementation (pino). Callers must never pass a token or a secret in
 * `fields`: log `tokenHash()` of a token instead.
 */
import { createHash } from "node:crypto";
import pino from "pino";

export type LogLevel = "debug" | "info" | "warn" | "error";
export type LogFields = Readonly<Record<string, unknown>>;

export interface Logger {
  debug(message: string, fields?: LogFields): void;
  info(message: string, fields?: LogFields): void;
  warn(message: string, fields?: LogFields): void;
  error(message: string, fields?: LogFields): void;
}

/** Options of {@link jsonLogger}. */
export interface JsonLoggerOptions {
  /** Lowest level written. Default `"info"`. */
  readonly level?: LogLevel;
  /** Where lines go: a file descriptor. Default 1 (stdout). */
  readonly fd?: number;
  /** Receives each line instead of a file descriptor (tests). */
  readonly write?: (line: string) => void;
  /** Fields on every line (e.g. `{ worker: 2 }`). Default none. */
  readonly fields?: LogFields;
}

/**
 * A logger writing one JSON object per line (pino): `{"level", "time", "msg", ...fields}`.
 * Asynchronous, buffered writes keep logging off the request path's critical section.
 */
export function jsonLogger(options: JsonLoggerOptions = {}): Logger {
  const destination = options.write
    ? { write: options.write }
    : pino.destination({ fd: options.fd ?? 1, sync: false });
  const base = pino(
    {
      level: options.level ?? "info",
      base: { name: "keystone-edge", ...options.fields },
      formatters: { level: (label) => ({ level: label }) },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
  return {
    debug: (m, f) => {
      base.debug(f ?? {}, m);
    },
    info: (m, f) => {
      base.info(f ?? {}, m);
    },
    warn: (m, f) => {
      base.warn(f ?? {}, m);
    },
    error: (m, f) => {
      base.error(f ?? {}, m);
    },
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

/**
 * A short, non-reversible name for a token, safe to log: the first 12 hex characters of
 * its SHA-256. Enough to correlate log lines, useless to replay.
 */
export function tokenHash(token: string): string {
  return createHash("sha256").update(token).digest("hex").slice(0, 12);
}

/**
 * One log line per `intervalMs` at most for an event a client can repeat at will (a flood
 * while Keystone is down must not become a flood of log lines): the first occurrence is
 * logged at once, later ones within the interval are counted and reported with the next
 * line as `suppressed`.
 */
export class ThrottledLog {
  private nextAtMs = -Infinity;
  private suppressed = 0;

  /**
   * @param intervalMs Least time between two lines. Default 10 000 ms.
   * @param nowMs The clock. Default `Date.now`.
   */
  constructor(
    private readonly log: (message: string, fields?: LogFields) => void,
    private readonly intervalMs = 10_000,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Logs `message` now, or counts it for the next line. */
  write(message: string, fields: LogFields = {}): void {
    const now = this.nowMs();
    if (now < this.nextAtMs) {
      this.suppressed++;
      return;
    }
    this.nextAtMs = now + this.intervalMs;
    const suppressed = this.suppressed;
    this.suppressed = 0;
    this.log(message, suppressed > 0 ? { ...fields, suppressed } : fields);
  }
}
