/**
 * Shared helpers of the cache tests: a clock moved by hand, a Keystone token body, a logger
 * that records what it is told, and a memcached stand-in held in a Map.
 */
import type { SharedStore } from "../../src/cache/memcached.js";
import type { KeystoneToken } from "../../src/token/body.js";
import type { LogFields, Logger, LogLevel } from "../../src/log.js";
import type { Clock, EpochMillis } from "../../src/units.js";

/** 2030-03-17T17:46:40Z. */
export const T0_MS = 1_900_000_000_000;

/** A clock that only moves when told to. */
export class ManualClock implements Clock {
  constructor(private ms: number = T0_MS) {}
  nowMs(): EpochMillis {
    return this.ms as EpochMillis;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
}

/** A plausible validated token body for `userId`. */
export function tokenBody(userId = "u1", extra: Record<string, unknown> = {}): KeystoneToken {
  return {
    methods: ["password"],
    user: { id: userId, name: "alice", domain: { id: "default", name: "Default" } },
    audit_ids: ["GGgSgA3DRS-CUo4CYEd1cA"],
    expires_at: "2030-03-17T18:46:40.000000Z",
    issued_at: "2030-03-17T17:46:40.000000Z",
    project: { id: "p1", name: "demo", domain: { id: "default", name: "Default" } },
    roles: [{ id: "r1", name: "member" }],
    ...extra,
  };
}

/** A Fernet-looking token: 0x80 envelope bytes rendered base64url without padding. */
export function fakeToken(seed: number): string {
  const bytes = Buffer.alloc(137);
  bytes[0] = 0x80;
  for (let i = 1; i < bytes.length; i++) bytes[i] = (seed * 131 + i * 7919) & 0xff;
  return bytes.toString("base64url");
}

export interface LogLine {
  readonly level: LogLevel;
  readonly message: string;
  readonly fields: LogFields;
}

/** A logger that keeps every line. */
export class RecordingLogger implements Logger {
  readonly lines: LogLine[] = [];
  debug(message: string, fields: LogFields = {}): void {
    this.lines.push({ level: "debug", message, fields });
  }
  info(message: string, fields: LogFields = {}): void {
    this.lines.push({ level: "info", message, fields });
  }
  warn(message: string, fields: LogFields = {}): void {
    this.lines.push({ level: "warn", message, fields });
  }
  error(message: string, fields: LogFields = {}): void {
    this.lines.push({ level: "error", message, fields });
  }
  at(level: LogLevel): LogLine[] {
    return this.lines.filter((l) => l.level === level);
  }
  /** Everything logged, as one string (to look for leaks). */
  text(): string {
    return JSON.stringify(this.lines);
  }
}

/** A memcached stand-in: a Map, with the TTL of each write recorded. */
export class MapStore implements SharedStore {
  readonly values = new Map<string, Buffer>();
  readonly ttls = new Map<string, number>();
  gets = 0;
  sets = 0;
  closed = false;
  get(key: string): Promise<Buffer | undefined> {
    this.gets++;
    return Promise.resolve(this.values.get(key));
  }
  set(key: string, value: Buffer, ttlSeconds: number): Promise<void> {
    this.sets++;
    this.values.set(key, value);
    this.ttls.set(key, ttlSeconds);
    return Promise.resolve();
  }
  close(): void {
    this.closed = true;
  }
}
