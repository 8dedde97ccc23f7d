import { describe, expect, it } from "vitest";
import { jsonLogger, tokenHash, ThrottledLog } from "../../src/log.js";

describe("logging", () => {
  it("writes one JSON object per line with level, time, message and fields", () => {
    const lines: string[] = [];
    const log = jsonLogger({ write: (l) => lines.push(l), level: "info" });
    log.debug("hidden");
    log.warn("key repository reload failed", { code: "key_repository_empty" });
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0] ?? "") as Record<string, unknown>;
    expect(entry).toMatchObject({
      level: "warn",
      msg: "key repository reload failed",
      code: "key_repository_empty",
    });
    expect(typeof entry.time).toBe("string");
  });

  it("names a token by a short hash that does not contain it", () => {
    const token = "gAAAAABpSecretTokenMaterial";
    const h = tokenHash(token);
    expect(h).toMatch(/^[0-9a-f]{12}$/);
    expect(token).not.toContain(h);
    expect(tokenHash(token)).toBe(h);
    expect(tokenHash(token + "x")).not.toBe(h);
  });
});

describe("ThrottledLog", () => {
  it("logs the first occurrence at once, then one line per interval with what it suppressed", () => {
    let now = 1_000;
    const lines: { message: string; fields: unknown }[] = [];
    const log = new ThrottledLog(
      (message, fields) => lines.push({ message, fields }),
      10_000,
      () => now,
    );
    log.write("not relayed", { method: "POST" });
    for (let i = 0; i < 500; i++) log.write("not relayed", { method: "POST" });
    expect(lines).toEqual([{ message: "not relayed", fields: { method: "POST" } }]);
    now += 10_000;
    log.write("not relayed", { method: "GET" });
    expect(lines[1]).toEqual({
      message: "not relayed",
      fields: { method: "GET", suppressed: 500 },
    });
    now += 9_999;
    log.write("not relayed");
    expect(lines).toHaveLength(2);
  });
});
