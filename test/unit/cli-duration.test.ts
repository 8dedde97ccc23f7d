/**
 * The one time parser of the command line (src/cli/duration.ts): the forms it reads, the
 * range it checks (zero only when asked, as `serve --grace 0` needs), and its messages.
 */
import { describe, expect, it } from "vitest";
import { formatDuration, MAX_DURATION_MS, parseDurationArgument } from "../../src/cli/duration.js";
import { UsageError } from "../../src/errors.js";

/** The UsageError's message for `text`, or a failure when it parses. */
function refusal(text: string, range?: Parameters<typeof parseDurationArgument>[2]): string {
  try {
    parseDurationArgument(text, "--grace", range);
  } catch (error) {
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).code).toBe("usage");
    return (error as UsageError).message;
  }
  throw new Error(`${text} parsed`);
}

describe("parseDurationArgument", () => {
  it.each([
    ["10", 10_000],
    ["10s", 10_000],
    ["5m", 300_000],
    ["500ms", 500],
    ["1h", 3_600_000],
    ["1.5s", 1_500],
    ["0.25", 250],
    [".5m", 30_000],
    [" 2m ", 120_000],
  ])("reads %j as %d ms", (text, ms) => {
    expect(parseDurationArgument(text, "--grace")).toBe(ms);
  });

  it.each(["-1", "5 minutes", "5min", "1d", "10S", "1e3", "", "s", "1h30m", "NaN", "Infinity"])(
    "refuses %j, saying what a time looks like",
    (text) => {
      expect(refusal(text)).toMatch(/^--grace: expected a time such as 10s, 2m or 500ms, got /);
    },
  );

  it("echoes what it refuses only when short and printable", () => {
    expect(refusal("-1")).toBe("--grace: expected a time such as 10s, 2m or 500ms, got -1");
    const long = "gAAAAA" + "x".repeat(100);
    expect(refusal(long)).toBe(
      "--grace: expected a time such as 10s, 2m or 500ms, got a value of 106 characters (not shown)",
    );
  });

  it("refuses zero unless asked (min: 0), and a time rounding to zero", () => {
    expect(refusal("0")).toBe("--grace: must be above 0, got 0");
    expect(refusal("0.0001s")).toBe("--grace: must be above 0, got 0.0001s");
    expect(parseDurationArgument("0", "--grace", { min: 0 })).toBe(0);
    expect(parseDurationArgument("0s", "--grace", { min: 0 })).toBe(0);
  });

  it("checks the range: min and max inclusive, a day at most by default", () => {
    expect(refusal("500ms", { min: 1_000 })).toBe("--grace: must be at least 1s, got 500ms");
    expect(parseDurationArgument("1s", "--grace", { min: 1_000 })).toBe(1_000);
    expect(parseDurationArgument("1h", "--grace", { max: 3_600_000 })).toBe(3_600_000);
    expect(refusal("61m", { max: 3_600_000 })).toBe("--grace: must be at most 1h, got 61m");
    expect(parseDurationArgument("24h", "--grace")).toBe(MAX_DURATION_MS);
    expect(refusal("25h")).toBe("--grace: must be at most 24h, got 25h");
  });
});

describe("formatDuration", () => {
  it.each([
    [500, "500ms"],
    [1_000, "1s"],
    [1_500, "1.5s"],
    [90_000, "90s"],
    [120_000, "2m"],
    [3_600_000, "1h"],
  ])("%d ms reads %s", (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});
