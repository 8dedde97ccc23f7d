/**
 * `noTracing`, tracing off: `inSpan` is a plain call of its function (the same value, the
 * same promise, the same throw), its span records nothing, `inject` writes no header.
 */
import { describe, expect, it } from "vitest";

import { noTracing, spanErrorMessage } from "../../../src/tracing.js";
import { TokenError } from "../../../src/errors.js";

describe("noTracing", () => {
  it("is off, and inSpan returns what fn returns", async () => {
    expect(noTracing.enabled).toBe(false);
    expect(noTracing.inSpan("sync", "server", { a: 1 }, () => 42)).toBe(42);
    const promise = Promise.resolve("async");
    expect(noTracing.inSpan("async", "client", {}, () => promise)).toBe(promise);
    const value = noTracing.inSpan("async", "internal", {}, async () => {
      await promise;
      return "value";
    });
    expect(await value).toBe("value");
  });

  it("lets a throw or a rejection through unchanged", async () => {
    const failure = new Error("boom");
    expect(() =>
      noTracing.inSpan("throws", "internal", {}, () => {
        throw failure;
      }),
    ).toThrow(failure);
    await expect(
      noTracing.inSpan("rejects", "internal", {}, () => Promise.reject(failure)),
    ).rejects.toBe(failure);
  });

  it("hands fn a span that records nothing, and injects nothing", async () => {
    const headers: Record<string, string> = { accept: "application/json" };
    noTracing.inSpan(
      "request",
      "server",
      {},
      (span) => {
        expect(span.recording).toBe(false);
        span.setAttribute("k", "v");
        span.end("error");
        noTracing.inject(headers);
      },
      { traceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" },
    );
    expect(headers).toEqual({ accept: "application/json" });
    await expect(noTracing.shutdown()).resolves.toBeUndefined();
  });
});

describe("spanErrorMessage", () => {
  it("gives an edge error's code, another error's name, and only a non-error's type", () => {
    expect(spanErrorMessage(new TokenError("expired", "token expired"))).toBe(
      "expired: token expired",
    );
    expect(spanErrorMessage(new RangeError("out of range"))).toBe("RangeError: out of range");
    expect(spanErrorMessage("secret-ish string")).toBe("thrown string");
    expect(spanErrorMessage(null)).toBe("thrown null");
  });
});
