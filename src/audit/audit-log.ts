/**
 * The audit log: one JSON line per authentication decision, appended to a file.
 *
 * Owns: the audit file (opened in append mode, `0o640` when created) and everything between
 * a decision and its line on disk. {@link AuditLog.record} runs on the request path and
 * never waits, never throws: it samples, serialises the record to one line and appends it to
 * a bounded in-memory buffer; a line that does not fit, a record that cannot be serialised
 * and a batch the file refuses are dropped and counted (`onDrop`), never retried. Buffered
 * lines go out in the background, batched: one write of every buffered line at a time, at
 * most one write in flight, at least every `flushIntervalMs` and at once past
 * `flushThresholdBytes`. The timers do not keep the process alive.
 *
 * Lines never carry a token (the caller passes its `tokenHash()`) nor a query string (cut
 * from `path` here). Rotation: logrotate's `copytruncate` needs nothing (every write
 * appends, so writes after a truncation land at the new end), and rename-then-reload needs
 * the caller to `close()` the old writer and {@link AuditLog.open} a new one on the same
 * path; both may write meanwhile, each batch being whole lines appended in one write.
 */
import { open } from "node:fs/promises";

import { silentLogger, ThrottledLog, tokenHash, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import { AuditLogError } from "../errors.js";

export { AuditLogError } from "../errors.js";

/** Default bound of the lines held in memory (buffered and being written), bytes: 4 MiB. */
export const DEFAULT_AUDIT_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** Default longest time a line waits in the buffer before a write starts, ms. */
export const DEFAULT_AUDIT_FLUSH_INTERVAL_MS = 200;
/** Default buffered size past which a write starts at once, bytes: 64 KiB. */
export const DEFAULT_AUDIT_FLUSH_THRESHOLD_BYTES = 64 * 1024;
/** Default longest wait of `close()` for the buffered lines to be written, ms. */
export const DEFAULT_AUDIT_CLOSE_TIMEOUT_MS = 2_000;

/** A `token` longer than this is not a hash: its `tokenHash()` is written instead. */
const MAX_TOKEN_HASH_LENGTH = 64;

/** Which listener took the decision. */
export type AuditListener = "proxy" | "identity";

/** Where a decision came from (see the validation tiers). */
export type AuditTier =
  | "l1"
  | "context"
  | "memcached"
  | "keystone"
  | "degraded"
  | "local_reject"
  | "negative"
  | "revocation";

/**
 * One authentication decision, as the caller reports it; the line written holds these
 * fields in this order, and leaves out those that are undefined. Fields not listed here are
 * never written.
 */
export interface AuditRecord {
  /** When the decision was taken, ISO 8601. Default: the writer's clock at `record()`. */
  readonly time?: string | undefined;
  /** The request's id (`X-Openstack-Request-Id` or the edge's own), if any. */
  readonly request_id?: string | undefined;
  readonly listener: AuditListener;
  /** HTTP method of the request. */
  readonly method: string;
  /** Path of the request; anything from the first `?` or `#` on is cut before writing. */
  readonly path: string;
  /** HTTP status answered. */
  readonly status: number;
  /** The decision: `"valid"`, `"invalid"`, `"unavailable"`, `"delayed_invalid"`, … */
  readonly outcome: string;
  /** Why, when refused: `"revoked"`, `"expired"`, `"bad_signature"`, … */
  readonly reason?: string | undefined;
  readonly tier?: AuditTier | undefined;
  /**
   * The token's `tokenHash()` (log.ts), never the token. A value longer than 64 characters
   * (a token passed by mistake) is written as its `tokenHash()`.
   */
  readonly token?: string | undefined;
  readonly user_id?: string | undefined;
  readonly project_id?: string | undefined;
  /** The domain of a domain-scoped token. */
  readonly domain_id?: string | undefined;
  /** The system scope (`"all"`) of a system-scoped token. */
  readonly system?: string | undefined;
  /** Time the decision took, ms; written rounded to 0.001 ms. */
  readonly latency_ms: number;
}

/**
 * Where lines are written: what `node:fs/promises` `open()` returns satisfies it. `write`
 * appends (the file is opened in append mode) and may write less than asked.
 */
export interface AuditFile {
  write(buffer: Uint8Array, offset: number, length: number): Promise<{ bytesWritten: number }>;
  close(): Promise<void>;
}

/** Options of {@link AuditLog.open}. */
export interface AuditLogOptions {
  /** The audit file; created (mode `0o640`, less the umask) when missing, appended to. */
  readonly path: string;
  /** Share of decisions written, 0–1: 1 writes every one, 0 none. Default 1. */
  readonly sampleRatio?: number;
  /**
   * Most bytes of lines held in memory, buffered or being written; a line that would pass
   * it is dropped. Default 4 MiB ({@link DEFAULT_AUDIT_MAX_BUFFERED_BYTES}).
   */
  readonly maxBufferedBytes?: number;
  /**
   * Longest a line waits before a write of the buffer starts (longer while the write
   * before is still running), ms. Default 200 ms ({@link DEFAULT_AUDIT_FLUSH_INTERVAL_MS}).
   */
  readonly flushIntervalMs?: number;
  /**
   * Buffered bytes past which a write starts without waiting for `flushIntervalMs`.
   * Default 64 KiB, or half of `maxBufferedBytes` when that is less.
   */
  readonly flushThresholdBytes?: number;
  /**
   * Longest `close()` waits for the buffered lines to be written, ms; lines still buffered
   * then are dropped. Default 2 000 ms ({@link DEFAULT_AUDIT_CLOSE_TIMEOUT_MS}).
   */
  readonly closeTimeoutMs?: number;
  /**
   * Called with the number of lines just dropped (buffer full, bad record, failed write,
   * closed writer); wire a counter here. Must not throw (what it throws is ignored).
   * Default: none.
   */
  readonly onDrop?: (count: number) => void;
  /** Stamps records that carry no `time`. Default the system clock. */
  readonly clock?: Clock;
  /** Draws for sampling, uniform in [0, 1). Default `Math.random`. */
  readonly random?: () => number;
  /** Receives write failures and recoveries (once each per outage). Default: silent. */
  readonly logger?: Logger;
  /** Opens `path` for appending (tests). Default `open(path, "a", 0o640)` of node:fs/promises. */
  readonly openFile?: (path: string) => Promise<AuditFile>;
}

/** A JSON-lines audit log writer; see the module comment. Get one with {@link AuditLog.open}. */
export class AuditLog {
  private readonly path: string;
  private readonly sampleRatio: number;
  private readonly maxBufferedBytes: number;
  private readonly flushIntervalMs: number;
  private readonly flushThresholdBytes: number;
  private readonly closeTimeoutMs: number;
  private readonly onDrop: (count: number) => void;
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly logger: Logger;
  private readonly bufferFull: ThrottledLog;

  /** Lines waiting for a write, each ending with `\n`. */
  private pending: string[] = [];
  private pendingBytes = 0;
  private inFlightBytes = 0;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  /** A write failed part-way: the file may end inside a line. */
  private torn = false;
  /** Writes are failing; lines dropped since the first failure. */
  private failingDropped: number | undefined;
  private closed = false;
  /** `close()` gave up waiting: no write starts any more. */
  private abandoned = false;
  private closing: Promise<void> | undefined;

  private recordedCount = 0;
  private droppedCount = 0;
  private writtenCount = 0;

  private constructor(
    private readonly file: AuditFile,
    options: AuditLogOptions,
  ) {
    this.path = options.path;
    this.sampleRatio = options.sampleRatio ?? 1;
    this.maxBufferedBytes = options.maxBufferedBytes ?? DEFAULT_AUDIT_MAX_BUFFERED_BYTES;
    this.flushIntervalMs = options.flushIntervalMs ?? DEFAULT_AUDIT_FLUSH_INTERVAL_MS;
    this.flushThresholdBytes =
      options.flushThresholdBytes ??
      Math.max(
        1,
        Math.min(DEFAULT_AUDIT_FLUSH_THRESHOLD_BYTES, Math.floor(this.maxBufferedBytes / 2)),
      );
    this.closeTimeoutMs = options.closeTimeoutMs ?? DEFAULT_AUDIT_CLOSE_TIMEOUT_MS;
    this.onDrop = options.onDrop ?? (() => undefined);
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? Math.random;
    this.logger = options.logger ?? silentLogger;
    this.bufferFull = new ThrottledLog(
      (message, fields) => {
        this.logger.warn(message, fields);
      },
      10_000,
      () => this.clock.nowMs(),
    );
  }

  /**
   * Opens `options.path` for appending and returns its writer.
   *
   * @throws RangeError when an option is out of range.
   * @throws AuditLogError (`audit_log_unwritable`) when the file cannot be opened.
   */
  static async open(options: AuditLogOptions): Promise<AuditLog> {
    checkOptions(options);
    const openFile = options.openFile ?? ((path: string) => open(path, "a", 0o640));
    let file: AuditFile;
    try {
      file = await openFile(options.path);
    } catch (error) {
      throw new AuditLogError(
        `cannot open the audit log ${options.path} for appending: ${describe(error)}`,
        options.path,
        { cause: error },
      );
    }
    return new AuditLog(file, options);
  }

  /** Lines accepted into the buffer (sampled in, serialised, within the bound). */
  get recorded(): number {
    return this.recordedCount;
  }

  /** Lines dropped: buffer full, bad record, failed write, or recorded after `close()`. */
  get dropped(): number {
    return this.droppedCount;
  }

  /** Lines written to the file. */
  get written(): number {
    return this.writtenCount;
  }

  /** Bytes of lines held in memory now, buffered or being written (a gauge). */
  get bufferedBytes(): number {
    return this.pendingBytes + this.inFlightBytes;
  }

  /**
   * Records one decision: samples it, then buffers its line or drops it (counted). Cheap,
   * synchronous, never throws; the line is written later.
   */
  record(record: AuditRecord): void {
    try {
      if (this.closed) {
        this.drop(1);
        return;
      }
      if (this.sampleRatio < 1 && !(this.sampleRatio > 0 && this.random() < this.sampleRatio)) {
        return;
      }
      const line = this.serialise(record);
      const bytes = Buffer.byteLength(line, "utf8");
      if (this.pendingBytes + this.inFlightBytes + bytes > this.maxBufferedBytes) {
        // Logged first: a logger that throws lands in the catch below, which counts the drop.
        this.bufferFull.write("audit log buffer full: lines dropped", { path: this.path });
        this.drop(1);
        return;
      }
      this.pending.push(line);
      this.pendingBytes += bytes;
      this.recordedCount++;
      if (this.pendingBytes >= this.flushThresholdBytes) {
        this.immediate ??= setImmediate(() => {
          this.immediate = undefined;
          this.startWrite();
        }).unref();
      } else if (this.pending.length === 1) {
        this.timer ??= setTimeout(() => {
          this.timer = undefined;
          this.startWrite();
        }, this.flushIntervalMs).unref();
      }
    } catch {
      this.drop(1);
    }
  }

  /**
   * Writes what is buffered, waiting at most `closeTimeoutMs` (lines still buffered then
   * are dropped and counted), and closes the file. Records made from now on are dropped.
   * Idempotent; never rejects.
   */
  close(): Promise<void> {
    this.closing ??= this.closeWithin();
    return this.closing;
  }

  private async closeWithin(): Promise<void> {
    this.closed = true;
    this.clearTimers();
    let deadline: NodeJS.Timeout | undefined;
    const late = new Promise<true>((resolve) => {
      deadline = setTimeout(() => {
        resolve(true);
      }, this.closeTimeoutMs);
    });
    const timedOut = await Promise.race([this.drainAndClose().then(() => false), late]);
    clearTimeout(deadline);
    if (!timedOut) return;
    this.abandoned = true;
    const lines = this.pending.length;
    this.pending = [];
    this.pendingBytes = 0;
    if (lines > 0) this.drop(lines);
    this.logger.warn("audit log close timed out: buffered lines dropped", {
      path: this.path,
      lines,
      timeout_ms: this.closeTimeoutMs,
    });
  }

  /** Writes batches until the buffer is empty (or close gave up), then closes the file. */
  private async drainAndClose(): Promise<void> {
    while (!this.abandoned && (this.writing !== undefined || this.pending.length > 0)) {
      this.startWrite();
      await this.writing;
    }
    try {
      await this.file.close();
    } catch (error) {
      this.logger.warn("audit log close failed", { path: this.path, error: describe(error) });
    }
  }

  /** Starts a write of every buffered line, unless one is in flight. */
  private startWrite(): void {
    if (this.writing !== undefined || this.pending.length === 0 || this.abandoned) return;
    this.clearTimers();
    const lines = this.pending;
    this.inFlightBytes = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    this.writing = this.writeBatch(lines).finally(() => {
      this.writing = undefined;
      this.inFlightBytes = 0;
      this.afterWrite();
    });
  }

  /** The next write: now if the buffer is past the threshold or its timer fired meanwhile. */
  private afterWrite(): void {
    if (this.closed || this.pending.length === 0) return;
    if (this.timer === undefined || this.pendingBytes >= this.flushThresholdBytes) {
      this.startWrite();
    }
  }

  /** Appends `lines` in one write (repeated on a short write). Never rejects. */
  private async writeBatch(lines: readonly string[]): Promise<void> {
    // After a write that failed part-way, end the torn line so that the next one parses.
    const buffer = Buffer.from((this.torn ? "\n" : "") + lines.join(""), "utf8");
    let offset = 0;
    try {
      while (offset < buffer.length) {
        const { bytesWritten } = await this.file.write(buffer, offset, buffer.length - offset);
        if (!(bytesWritten > 0)) throw new Error("the write wrote nothing");
        offset += bytesWritten;
      }
    } catch (error) {
      if (offset > 0) this.torn = true;
      // Lines of a batch that failed part-way count as dropped, even those written whole.
      this.drop(lines.length);
      if (this.failingDropped === undefined) {
        this.failingDropped = 0;
        this.logger.error("audit log write failed: lines dropped until a write succeeds", {
          path: this.path,
          lines: lines.length,
          error: describe(error),
        });
      }
      this.failingDropped += lines.length;
      return;
    }
    this.torn = false;
    this.writtenCount += lines.length;
    if (this.failingDropped !== undefined) {
      this.logger.info("audit log writable again", {
        path: this.path,
        dropped: this.failingDropped,
      });
      this.failingDropped = undefined;
    }
  }

  private drop(count: number): void {
    this.droppedCount += count;
    try {
      this.onDrop(count);
    } catch {
      // The counter is the caller's: a fault there must not reach the request path.
    }
  }

  private clearTimers(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.immediate !== undefined) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  /** The line of `r` (ending with `\n`); throws on a record that cannot be serialised. */
  private serialise(r: AuditRecord): string {
    let token = r.token;
    if (typeof token === "string" && token.length > MAX_TOKEN_HASH_LENGTH) {
      token = tokenHash(token);
    }
    const line = JSON.stringify({
      time: typeof r.time === "string" ? r.time : new Date(this.clock.nowMs()).toISOString(),
      request_id: r.request_id,
      listener: r.listener,
      method: r.method,
      path: withoutQuery(r.path),
      status: r.status,
      outcome: r.outcome,
      reason: r.reason,
      tier: r.tier,
      token,
      user_id: r.user_id,
      project_id: r.project_id,
      domain_id: r.domain_id,
      system: r.system,
      latency_ms: Math.round(r.latency_ms * 1000) / 1000,
    });
    return line + "\n";
  }
}

/** `path` without its query string or fragment. */
function withoutQuery(path: string): string {
  let end = path.indexOf("?");
  const hash = path.indexOf("#");
  if (hash !== -1 && (end === -1 || hash < end)) end = hash;
  return end === -1 ? path : path.slice(0, end);
}

function checkOptions(options: AuditLogOptions): void {
  const { sampleRatio, maxBufferedBytes, flushIntervalMs, flushThresholdBytes, closeTimeoutMs } =
    options;
  if (typeof options.path !== "string" || options.path === "") {
    throw new RangeError("path must be a non-empty string");
  }
  if (sampleRatio !== undefined && !(sampleRatio >= 0 && sampleRatio <= 1)) {
    throw new RangeError("sampleRatio must be between 0 and 1");
  }
  const positive = { maxBufferedBytes, flushIntervalMs, flushThresholdBytes, closeTimeoutMs };
  for (const [name, value] of Object.entries(positive)) {
    if (value !== undefined && !(Number.isSafeInteger(value) && value > 0)) {
      throw new RangeError(`${name} must be a positive integer`);
    }
  }
}

/** A short description of a system error: its code and message. */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && !error.message.startsWith(code)
    ? `${code}: ${error.message}`
    : error.message;
}
