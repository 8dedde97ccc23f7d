import { existsSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, stat, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";

import {
  AuditLog,
  AuditLogError,
  type AuditFile,
  type AuditLogOptions,
  type AuditRecord,
} from "../../../src/audit/audit-log.js";
import { tokenHash } from "../../../src/log.js";
import { ManualClock, RecordingLogger } from "../../harness/doubles.js";
import { waitUntil } from "../helpers.js";

let dir: string;
let opened: AuditLog[];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), "ke-audit-"));
  opened = [];
});

afterEach(async () => {
  await Promise.all(opened.map((log) => log.close()));
  await rm(dir, { recursive: true, force: true });
});

/**
 * Opens a writer (closed after the test) on `audit.log` of the test's directory, flushing
 * every 10 ms unless told otherwise.
 */
async function openLog(
  options: Partial<AuditLogOptions> = {},
): Promise<{ log: AuditLog; path: string; drops: number[] }> {
  const path = options.path ?? join(dir, "audit.log");
  const drops: number[] = [];
  const log = await AuditLog.open({
    onDrop: (n) => drops.push(n),
    flushIntervalMs: 10,
    ...options,
    path,
  });
  opened.push(log);
  return { log, path, drops };
}

async function readLines(path: string): Promise<string[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  return text.split("\n").filter((l) => l !== "");
}

async function waitForLines(path: string, n: number): Promise<Record<string, unknown>[]> {
  await waitUntil(async () => (await readLines(path)).length >= n, 5_000, `${n} lines`);
  return (await readLines(path)).map((l) => JSON.parse(l) as Record<string, unknown>);
}

const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);

function rec(extra: Partial<AuditRecord> = {}): AuditRecord {
  return {
    listener: "proxy",
    method: "GET",
    path: "/v2.1/servers",
    status: 200,
    outcome: "valid",
    latency_ms: 1.5,
    ...extra,
  };
}

/** A file whose writes wait until released; counts writes in flight. */
class GatedFile implements AuditFile {
  readonly writes: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  closed = false;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;

  hold(): void {
    this.gate = new Promise((resolve) => {
      this.openGate = resolve;
    });
  }
  release(): void {
    this.openGate?.();
    this.gate = undefined;
  }
  async write(buffer: Uint8Array, offset: number, length: number) {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    await this.gate;
    this.inFlight--;
    this.writes.push(Buffer.from(buffer.subarray(offset, offset + length)).toString("utf8"));
    return { bytesWritten: length };
  }
  close(): Promise<void> {
    this.closed = true;
    return Promise.resolve();
  }
  lines(): string[] {
    return this.writes
      .join("")
      .split("\n")
      .filter((l) => l !== "");
  }
}

describe("AuditLog lines", () => {
  it("are JSON objects with the record's fields in order, undefined ones left out", async () => {
    const clock = new ManualClock();
    const { log, path } = await openLog({ clock });
    log.record(
      rec({
        request_id: "req-1",
        listener: "identity",
        method: "POST",
        path: "/v3/auth/tokens",
        status: 401,
        outcome: "invalid",
        reason: "revoked",
        tier: "revocation",
        token: "0123456789ab",
        user_id: "u1",
        project_id: "p1",
        domain_id: undefined,
        latency_ms: 12.345_678,
      }),
    );
    const [line] = await waitForLines(path, 1);
    expect(line).toEqual({
      time: "2030-03-17T17:46:40.000Z",
      request_id: "req-1",
      listener: "identity",
      method: "POST",
      path: "/v3/auth/tokens",
      status: 401,
      outcome: "invalid",
      reason: "revoked",
      tier: "revocation",
      token: "0123456789ab",
      user_id: "u1",
      project_id: "p1",
      latency_ms: 12.346,
    });
    expect(Object.keys(line ?? {})).toEqual([
      "time",
      "request_id",
      "listener",
      "method",
      "path",
      "status",
      "outcome",
      "reason",
      "tier",
      "token",
      "user_id",
      "project_id",
      "latency_ms",
    ]);
    expect(log.recorded).toBe(1);
    expect(log.written).toBe(1);
    expect(log.dropped).toBe(0);
  });

  it("never carry the query string (nor a fragment) of the path", async () => {
    const { log, path } = await openLog();
    log.record(rec({ path: "/v2.1/servers?name=secret&token=gAAAA" }));
    log.record(rec({ path: "/v3/users#frag?x=1" }));
    log.record(rec({ path: "/?" }));
    const lines = await waitForLines(path, 3);
    expect(lines.map((l) => l.path)).toEqual(["/v2.1/servers", "/v3/users", "/"]);
    expect(await readFile(path, "utf8")).not.toContain("secret");
  });

  it("keep a time the caller gives, and write no field the record type does not list", async () => {
    const { log, path } = await openLog();
    const extra = { ...rec({ time: "2031-01-01T00:00:00.000Z" }), password: "hunter2" };
    log.record(extra);
    const [line] = await waitForLines(path, 1);
    expect(line?.time).toBe("2031-01-01T00:00:00.000Z");
    expect(line).not.toHaveProperty("password");
  });

  it("carry the hash of a token passed by mistake, never the token", async () => {
    const token = "gAAAAAB" + "x".repeat(180);
    const { log, path } = await openLog();
    log.record(rec({ token }));
    const [line] = await waitForLines(path, 1);
    expect(line?.token).toBe(tokenHash(token));
    expect(await readFile(path, "utf8")).not.toContain("gAAAAAB");
  });

  it("stay one line each whatever the strings hold", async () => {
    const { log, path } = await openLog();
    log.record(rec({ path: "/a\nb\u2028c", reason: 'x"\n{}', user_id: "\ud800" }));
    const [line] = await waitForLines(path, 1);
    expect(line?.path).toBe("/a\nb\u2028c");
    expect(await readLines(path)).toHaveLength(1);
  });

  it("are appended to what the file already holds, created with mode 0640 at most", async () => {
    const first = await openLog();
    first.log.record(rec({ request_id: "a" }));
    await first.log.close();
    const second = await openLog();
    second.log.record(rec({ request_id: "b" }));
    const lines = await waitForLines(second.path, 2);
    expect(lines.map((l) => l.request_id)).toEqual(["a", "b"]);
    expect((await stat(second.path)).mode & 0o777 & ~0o640).toBe(0);
  });
});

describe("AuditLog sampling", () => {
  it("writes nothing at 0, and never draws", async () => {
    let draws = 0;
    const { log, path, drops } = await openLog({
      sampleRatio: 0,
      random: () => (draws++, 0),
    });
    for (let i = 0; i < 50; i++) log.record(rec());
    await log.close();
    expect(await readLines(path)).toEqual([]);
    expect(draws).toBe(0);
    expect([log.recorded, log.dropped, log.written, drops.length]).toEqual([0, 0, 0, 0]);
  });

  it("writes every decision at 1, and never draws", async () => {
    let draws = 0;
    const { log, path } = await openLog({ sampleRatio: 1, random: () => (draws++, 0.999) });
    for (let i = 0; i < 50; i++) log.record(rec({ request_id: String(i) }));
    const lines = await waitForLines(path, 50);
    expect(lines.map((l) => l.request_id)).toEqual(Array.from({ length: 50 }, (_, i) => `${i}`));
    expect(draws).toBe(0);
  });

  it("keeps exactly the decisions whose draw is below the ratio", async () => {
    const draws = [0.1, 0.3, 0.2999, 0.9, 0, 0.3001, 0.5];
    let next = 0;
    const { log, path } = await openLog({ sampleRatio: 0.3, random: () => draws[next++] ?? 1 });
    draws.forEach((_, i) => log.record(rec({ request_id: `r${i}` })));
    await log.close();
    const lines = (await readLines(path)).map((l) => (JSON.parse(l) as AuditRecord).request_id);
    expect(lines).toEqual(["r0", "r2", "r4"]);
    expect(log.recorded).toBe(3);
    expect(log.dropped).toBe(0);
  });
});

describe("AuditLog bound", () => {
  it("drops and counts what does not fit; written + dropped = attempts", async () => {
    const { log, path, drops } = await openLog({ maxBufferedBytes: 2_000 });
    const attempts = 1_000;
    for (let i = 0; i < attempts; i++) log.record(rec({ request_id: `req-${i}` }));
    expect(log.recorded).toBeGreaterThan(0);
    expect(log.recorded).toBeLessThan(30);
    expect(log.dropped).toBe(attempts - log.recorded);
    expect(sum(drops)).toBe(log.dropped);
    await log.close();
    expect(log.written).toBe(log.recorded);
    expect(log.written + sum(drops)).toBe(attempts);
    expect(await readLines(path)).toHaveLength(log.written);
  });

  it("counts the batch being written: nothing fits while a full buffer is in flight", async () => {
    const file = new GatedFile();
    file.hold();
    const { log, drops } = await openLog({
      openFile: () => Promise.resolve(file),
      maxBufferedBytes: 1_000,
      flushThresholdBytes: 500,
    });
    while (log.bufferedBytes < 500) log.record(rec());
    await waitUntil(() => file.inFlight === 1, 5_000, "the first write");
    const lineBytes = Buffer.byteLength(JSON.stringify(rec()));
    const attempts = log.recorded + 100;
    for (let i = 0; i < 100; i++) log.record(rec());
    // Full: the batch in flight and the lines buffered since fill the bound.
    expect(log.bufferedBytes).toBeLessThanOrEqual(1_000);
    expect(log.bufferedBytes).toBeGreaterThan(1_000 - 2 * lineBytes);
    expect(log.dropped).toBeGreaterThan(90);
    file.release();
    await waitUntil(() => log.written === log.recorded, 5_000, "every line written");
    expect(file.maxInFlight).toBe(1);
    expect(file.writes).toHaveLength(2); // the second batch: every line accepted meanwhile
    expect(log.bufferedBytes).toBe(0);
    expect(log.written + sum(drops)).toBe(attempts);
  });
});

describe("AuditLog batching", () => {
  it("writes a burst past the threshold without waiting for the interval", async () => {
    const file = new GatedFile();
    const { log } = await openLog({
      openFile: () => Promise.resolve(file),
      flushIntervalMs: 3_600_000,
      flushThresholdBytes: 1_000,
    });
    while (log.recorded * 150 < 1_200) log.record(rec());
    await waitUntil(() => log.written === log.recorded, 5_000, "the burst written");
    expect(file.writes).toHaveLength(1);
  });

  it("writes a line below the threshold within the interval", async () => {
    const file = new GatedFile();
    const { log } = await openLog({ openFile: () => Promise.resolve(file), flushIntervalMs: 20 });
    log.record(rec());
    log.record(rec());
    await waitUntil(() => log.written === 2, 5_000, "two lines written");
    expect(file.writes).toHaveLength(1);
  });

  it("keeps one write in flight, and sends what came meanwhile in the next", async () => {
    const file = new GatedFile();
    file.hold();
    const { log } = await openLog({ openFile: () => Promise.resolve(file), flushIntervalMs: 5 });
    log.record(rec({ request_id: "a" }));
    await waitUntil(() => file.inFlight === 1, 5_000, "the first write");
    for (const id of ["b", "c", "d"]) log.record(rec({ request_id: id }));
    await new Promise((r) => setImmediate(r));
    expect(file.inFlight).toBe(1);
    file.release();
    await waitUntil(() => log.written === 4, 5_000, "four lines written");
    expect(file.maxInFlight).toBe(1);
    expect(file.writes.map((w) => w.split("\n").length - 1)).toEqual([1, 3]);
    expect(file.lines().map((l) => (JSON.parse(l) as AuditRecord).request_id)).toEqual([
      "a",
      "b",
      "c",
      "d",
    ]);
  });
});

describe("AuditLog.record", () => {
  it("never throws: bad records, a throwing onDrop or random are dropped and counted", async () => {
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const { log, path, drops } = await openLog();
    const bad: unknown[] = [
      null,
      undefined,
      42,
      rec({ user_id: circular as unknown as string }),
      rec({ status: 10n as unknown as number }),
      rec({ path: undefined as unknown as string }),
      Object.defineProperty(rec(), "method", {
        get: () => {
          throw new Error("boom");
        },
        enumerable: true,
      }),
    ];
    for (const r of bad) expect(() => log.record(r as AuditRecord)).not.toThrow();
    expect(log.dropped).toBe(bad.length);
    expect(sum(drops)).toBe(bad.length);
    log.record(rec({ request_id: "good" }));
    const lines = await waitForLines(path, 1);
    expect(lines.map((l) => l.request_id)).toEqual(["good"]);

    const throwing = await openLog({
      path: join(dir, "other.log"),
      onDrop: () => {
        throw new Error("counter broke");
      },
      sampleRatio: 0.5,
      random: () => {
        throw new Error("random broke");
      },
    });
    expect(() => throwing.log.record(rec())).not.toThrow();
    expect(throwing.log.dropped).toBe(1);
  });

  it("drops and counts records made after close()", async () => {
    const { log, path, drops } = await openLog();
    await log.close();
    expect(() => log.record(rec())).not.toThrow();
    expect(log.dropped).toBe(1);
    expect(drops).toEqual([1]);
    expect(await readLines(path)).toEqual([]);
  });
});

describe("AuditLog.close", () => {
  it("writes what is buffered, then closes the file; idempotent", async () => {
    const file = new GatedFile();
    const { log } = await openLog({
      openFile: () => Promise.resolve(file),
      flushIntervalMs: 3_600_000,
    });
    for (let i = 0; i < 10; i++) log.record(rec());
    expect(file.writes).toHaveLength(0);
    await Promise.all([log.close(), log.close()]);
    expect(log.written).toBe(10);
    expect(file.lines()).toHaveLength(10);
    expect(file.closed).toBe(true);
  });

  it("flushes to the file before resolving", async () => {
    const { log, path } = await openLog({ flushIntervalMs: 3_600_000 });
    for (let i = 0; i < 25; i++) log.record(rec());
    await log.close();
    expect(await readLines(path)).toHaveLength(25);
  });

  it("gives up after closeTimeoutMs: what is still buffered is dropped and counted", async () => {
    const file = new GatedFile();
    file.hold();
    const logger = new RecordingLogger();
    const { log, drops } = await openLog({
      openFile: () => Promise.resolve(file),
      closeTimeoutMs: 50,
      flushIntervalMs: 1,
      logger,
    });
    log.record(rec());
    await waitUntil(() => file.inFlight === 1, 5_000, "the first write");
    log.record(rec());
    log.record(rec());
    await log.close();
    expect(drops).toEqual([2]);
    expect(logger.at("warn").map((l) => l.message)).toEqual([
      "audit log close timed out: buffered lines dropped",
    ]);
    file.release(); // the write in flight ends late: counted then, and the file closed
    await waitUntil(() => file.closed, 5_000, "the file closed");
    expect(log.written).toBe(1);
    expect(file.writes).toHaveLength(1);
  });
});

describe("AuditLog.open", () => {
  it("names the path when its directory is missing", async () => {
    const path = join(dir, "missing", "audit.log");
    const error = await AuditLog.open({ path }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuditLogError);
    expect(error).toMatchObject({ code: "audit_log_unwritable", path, name: "AuditLogError" });
    expect((error as Error).message).toContain(path);
    expect((error as Error).message).toContain("ENOENT");
    expect((error as AuditLogError).toJSON().code).toBe("audit_log_unwritable");
  });

  it("names the path when it is a directory", async () => {
    const error = await AuditLog.open({ path: dir }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: "audit_log_unwritable", path: dir });
  });

  it("refuses options out of range", async () => {
    const path = join(dir, "audit.log");
    await expect(AuditLog.open({ path, sampleRatio: 1.5 })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ path, sampleRatio: Number.NaN })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ path, maxBufferedBytes: 0 })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ path, flushIntervalMs: -1 })).rejects.toThrow(RangeError);
    await expect(AuditLog.open({ path: "" })).rejects.toThrow(RangeError);
    expect(existsSync(path)).toBe(false);
  });
});

describe("AuditLog write errors", () => {
  it.skipIf(!existsSync("/dev/full"))(
    "are logged once, and the lines dropped and counted (/dev/full)",
    async () => {
      const logger = new RecordingLogger();
      const { log, drops } = await openLog({ path: "/dev/full", logger, flushIntervalMs: 1 });
      log.record(rec());
      await waitUntil(() => log.dropped === 1, 5_000, "the first batch dropped");
      log.record(rec());
      log.record(rec());
      await waitUntil(() => log.dropped === 3, 5_000, "the second batch dropped");
      expect(log.written).toBe(0);
      expect(sum(drops)).toBe(3);
      const errors = logger.at("error");
      expect(errors).toHaveLength(1);
      expect(errors[0]?.fields).toMatchObject({ path: "/dev/full" });
      expect(String(errors[0]?.fields.error)).toContain("ENOSPC");
    },
  );

  it("do not stop the writer: the next batch is tried, and recovery is logged", async () => {
    let failing = true;
    const file = new GatedFile();
    const flaky: AuditFile = {
      write: (buffer, offset, length) =>
        failing
          ? Promise.reject(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }))
          : file.write(buffer, offset, length),
      close: () => file.close(),
    };
    const logger = new RecordingLogger();
    const { log } = await openLog({ openFile: () => Promise.resolve(flaky), logger });
    log.record(rec());
    await waitUntil(() => log.dropped === 1, 5_000, "the batch dropped");
    failing = false;
    log.record(rec({ request_id: "after" }));
    await waitUntil(() => log.written === 1, 5_000, "the next batch written");
    expect(logger.lines.map((l) => [l.level, l.message, l.fields.dropped])).toEqual([
      ["error", "audit log write failed: lines dropped until a write succeeds", undefined],
      ["info", "audit log writable again", 1],
    ]);
    expect(file.lines()).toHaveLength(1);
  });

  it("that cut a line part-way leave the next lines parseable", async () => {
    const file = new GatedFile();
    let calls = 0;
    const tearing: AuditFile = {
      write: (buffer, offset, length) => {
        calls++;
        if (calls === 1) return file.write(buffer, offset, 10);
        if (calls === 2) return Promise.reject(new Error("ENOSPC: no space left on device"));
        return file.write(buffer, offset, length);
      },
      close: () => file.close(),
    };
    const { log } = await openLog({ openFile: () => Promise.resolve(tearing) });
    log.record(rec({ request_id: "torn" }));
    await waitUntil(() => log.dropped === 1, 5_000, "the torn batch dropped");
    log.record(rec({ request_id: "next" }));
    await waitUntil(() => log.written === 1, 5_000, "the next batch written");
    const lines = file.lines();
    expect(lines).toHaveLength(2);
    expect(() => JSON.parse(lines[0] ?? "") as unknown).toThrow();
    expect((JSON.parse(lines[1] ?? "") as AuditRecord).request_id).toBe("next");
  });
});

describe("AuditLog and log rotation", () => {
  it("copytruncate: writes after a truncation land at the start, with no hole", async () => {
    const { log, path } = await openLog({ flushIntervalMs: 1 });
    for (let i = 0; i < 20; i++) log.record(rec({ request_id: `old-${i}` }));
    await waitForLines(path, 20);
    await truncate(path, 0);
    log.record(rec({ request_id: "new" }));
    const lines = await waitForLines(path, 1);
    expect(lines.map((l) => l.request_id)).toEqual(["new"]);
    expect(await readFile(path, "utf8")).not.toContain("\0");
  });

  it("rename, then close and open a writer on the same path", async () => {
    const old = await openLog();
    old.log.record(rec({ request_id: "before" }));
    await waitForLines(old.path, 1);
    await rename(old.path, `${old.path}.1`);
    old.log.record(rec({ request_id: "late" })); // still goes to the renamed file
    const fresh = await openLog();
    await old.log.close();
    fresh.log.record(rec({ request_id: "after" }));
    await fresh.log.close();
    const rotated = (await readLines(`${old.path}.1`)).map(
      (l) => (JSON.parse(l) as AuditRecord).request_id,
    );
    const current = (await readLines(fresh.path)).map(
      (l) => (JSON.parse(l) as AuditRecord).request_id,
    );
    expect(rotated).toEqual(["before", "late"]);
    expect(current).toEqual(["after"]);
  });
});
