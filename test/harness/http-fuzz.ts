/**
 * Owns: the HTTP-level fuzzer of the edge's listener — fast-check arbitraries of whole
 * request heads as an attacker writes them (methods, targets in every form, header floods,
 * CR/LF/NUL smuggling, duplicated and conflicting framing headers, oversized lines) each
 * carrying a token that must not validate (garbage, Fernet-shaped noise, a valid token
 * truncated or with a flipped bit, a token signed with a foreign key), sent on raw sockets;
 * and the verdict on each answer. The invariant: every case is answered 4xx (or the
 * connection closed without a word), never 2xx or 5xx, within a deadline; the caller adds
 * "the process lives" and "Keystone was never asked".
 */
import { connect } from "node:net";
import fc from "fast-check";

/** One generated request. */
export interface FuzzCase {
  /** The bytes sent, as is. */
  readonly bytes: Buffer;
  /** `OPTIONS *`, which the edge rightly answers 200 itself. */
  readonly asterisk: boolean;
}

/** What came back for one case. */
export type FuzzAnswer =
  | { readonly kind: "answered"; readonly status: number }
  | { readonly kind: "closed" }
  | { readonly kind: "timeout" };

/** Tokens the fuzzer derives bad tokens from. */
export interface TokenSources {
  /** Valid tokens of the region (the fuzzer only ever sends them damaged). */
  readonly valid: readonly string[];
  /** Well-formed tokens signed with a key the region does not hold. */
  readonly forged: readonly string[];
}

const TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=";

const chars = (alphabet: string, min: number, max: number): fc.Arbitrary<string> =>
  fc
    .array(fc.constantFrom(...alphabet.split("")), { minLength: min, maxLength: max })
    .map((a) => a.join(""));

/** Any byte as a Latin-1 character (the wire's view). */
const anyByteString = (max: number): fc.Arbitrary<string> =>
  fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b).toString("latin1"));

/** A token that must never validate. */
function badToken(sources: TokenSources): fc.Arbitrary<string> {
  const damaged = fc
    .tuple(fc.constantFrom(...sources.valid), fc.nat(), fc.integer({ min: 1, max: 63 }))
    .chain(([token, at, bit]) =>
      fc.constantFrom(
        // Truncated.
        token.slice(0, at % token.length),
        // One bit flipped in the decoded bytes (HMAC must catch it).
        flipBit(token, at, bit),
        // Extended.
        `${token}A`,
        // Padded differently.
        `${token.replace(/=+$/, "")}==`,
      ),
    );
  return fc.oneof(
    { weight: 3, arbitrary: damaged },
    { weight: 2, arbitrary: fc.constantFrom(...sources.forged) },
    { weight: 2, arbitrary: chars(B64URL, 0, 300) },
    // Fernet-shaped noise: version 0x80, then random bytes, base64url.
    {
      weight: 2,
      arbitrary: fc
        .uint8Array({ minLength: 40, maxLength: 300 })
        .map((b) => Buffer.concat([Buffer.from([0x80]), Buffer.from(b)]).toString("base64url")),
    },
    { weight: 1, arbitrary: anyByteString(200) },
    {
      weight: 1,
      arbitrary: fc.constantFrom("", " ", "null", "Bearer x", "gAAAAA", "=".repeat(60)),
    },
    // Oversized: built by repetition, not character by character (cheap to generate).
    {
      weight: 1,
      arbitrary: fc
        .tuple(chars(B64URL, 1, 8), fc.integer({ min: 1_000, max: 10_000 }))
        .map(([unit, n]) => unit.repeat(n)),
    },
  );
}

function flipBit(token: string, at: number, bit: number): string {
  const bytes = Buffer.from(token, "base64url");
  if (bytes.length === 0) return token;
  const i = at % bytes.length;
  bytes[i] = (bytes[i] ?? 0) ^ (1 << (bit % 8));
  return bytes.toString("base64url");
}

const segment = fc.oneof(
  chars("abcdefghijklmnopqrstuvwxyz0123456789-_.~", 0, 12),
  fc.constantFrom("..", ".", "%2e%2e", "%2F", "..%2f", "%00", "%ff", "%", "%zz", "**", "*", "{x}"),
);
const originPath = fc
  .array(segment, { maxLength: 12 })
  .chain((segs) =>
    fc
      .option(chars("abcdefghijklmnopqrstuvwxyz=&%+0123456789", 0, 40), { nil: undefined })
      .map((q) => `/${segs.join("/")}${q === undefined ? "" : `?${q}`}`),
  );

const target = fc.oneof(
  { weight: 16, arbitrary: originPath },
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.constantFrom("http", "https", "HTTP", "ftp", "file", "javascript", "gopher"),
        fc.constantFrom(
          "evil.example",
          "127.0.0.1:8774",
          "[::1]:80",
          "user:pw@evil.example",
          "",
          "evil.example:99999",
          "a b",
        ),
        originPath,
      )
      .map(([s, a, p]) => `${s}://${a}${p}`),
  },
  { weight: 1, arbitrary: fc.constantFrom("*", "evil.example:443", "", "//evil.example/x") },
  { weight: 1, arbitrary: anyByteString(60) },
  { weight: 1, arbitrary: fc.integer({ min: 8_000, max: 40_000 }).map((n) => `/${"a".repeat(n)}`) },
);

const method = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.constantFrom("GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"),
  },
  { weight: 1, arbitrary: fc.constantFrom("CONNECT", "TRACE", "get", "PRI", "M-SEARCH") },
  { weight: 1, arbitrary: chars(TCHAR, 1, 12) },
  { weight: 1, arbitrary: anyByteString(10) },
);

const version = fc.oneof(
  { weight: 30, arbitrary: fc.constant("HTTP/1.1") },
  { weight: 1, arbitrary: fc.constantFrom("HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1 x", "") },
);

/** Header names an attacker reaches for: identity headers, framing, proxy headers. */
const headerName = fc.oneof(
  {
    weight: 12,
    arbitrary: fc.constantFrom(
      "X-Identity-Status",
      "X-Roles",
      "X-User-Id",
      "X_USER_ID",
      "X-Service-Roles",
      "X-Service-Token",
      "X-Storage-Token",
      "Forwarded",
      "X-Real-IP",
      "X-Forwarded-Prefix",
      "X-Forwarded-For",
      "Connection",
      "Upgrade",
      "Expect",
      "Accept",
      "Host",
    ),
  },
  { weight: 6, arbitrary: chars(TCHAR, 1, 24) },
  { weight: 1, arbitrary: anyByteString(16) },
);

const headerValue = fc.oneof(
  { weight: 16, arbitrary: chars(TCHAR + " ,;=/", 0, 64) },
  // Smuggling attempts: a bare CR, LF or NUL inside a value.
  {
    weight: 1,
    arbitrary: fc
      .tuple(
        chars(TCHAR, 0, 10),
        fc.constantFrom("\r", "\n", "\0", "\r\nX-Roles: admin", "\r\n\r\nGET / HTTP/1.1"),
        chars(TCHAR, 0, 10),
      )
      .map(([a, b, c]) => a + b + c),
  },
  { weight: 1, arbitrary: anyByteString(64) },
  { weight: 1, arbitrary: fc.integer({ min: 4_000, max: 20_000 }).map((n) => "v".repeat(n)) },
);

/** Framing: no body, a body that matches, one that lies, chunked, or both. */
const framing = fc.oneof(
  { weight: 12, arbitrary: fc.constant({ headers: [] as [string, string][], body: "" }) },
  {
    weight: 2,
    arbitrary: chars(TCHAR, 0, 200).map((b) => ({
      headers: [["Content-Length", String(b.length)]] as [string, string][],
      body: b,
    })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      {
        headers: [
          ["Content-Length", "10"],
          ["Content-Length", "11"],
        ] as [string, string][],
        body: "0123456789",
      },
      { headers: [["Content-Length", "-1"]] as [string, string][], body: "" },
      { headers: [["Content-Length", "1e3"]] as [string, string][], body: "" },
      {
        headers: [["Transfer-Encoding", "chunked"]] as [string, string][],
        body: "5\r\nhello\r\n0\r\n\r\n",
      },
      {
        headers: [["Transfer-Encoding", "chunked"]] as [string, string][],
        body: "zz\r\nhello\r\n",
      },
      {
        headers: [
          ["Transfer-Encoding", "chunked"],
          ["Content-Length", "5"],
        ] as [string, string][],
        body: "0\r\n\r\n",
      },
      {
        headers: [["Transfer-Encoding", "gzip, chunked"]] as [string, string][],
        body: "0\r\n\r\n",
      },
      { headers: [["Content-Length", "99999999999"]] as [string, string][], body: "short" },
    ),
  },
);

/** Whole requests, each with a token (or none) that must not validate. */
export function fuzzCases(sources: TokenSources): fc.Arbitrary<FuzzCase> {
  const tokenHeaders = fc.oneof(
    { weight: 1, arbitrary: fc.constant([] as [string, string][]) },
    {
      weight: 6,
      arbitrary: fc
        .tuple(
          fc.constantFrom("X-Auth-Token", "x-auth-token", "X-Storage-Token"),
          badToken(sources),
        )
        .map(([n, v]) => [[n, v]] as [string, string][]),
    },
    {
      weight: 1,
      arbitrary: fc.tuple(badToken(sources), badToken(sources)).map(
        ([a, b]) =>
          [
            ["X-Auth-Token", a],
            ["X-Service-Token", b],
          ] as [string, string][],
      ),
    },
  );
  return fc
    .record({
      method,
      target,
      version,
      host: fc.oneof(
        {
          weight: 8,
          arbitrary: fc.constant([["Host", "nova.example:8774"]] as [string, string][]),
        },
        { weight: 1, arbitrary: fc.constant([] as [string, string][]) },
        {
          weight: 1,
          arbitrary: fc.constant([
            ["Host", "a"],
            ["Host", "b"],
          ] as [string, string][]),
        },
      ),
      tokens: tokenHeaders,
      extra: fc.oneof(
        { weight: 6, arbitrary: fc.array(fc.tuple(headerName, headerValue), { maxLength: 8 }) },
        {
          weight: 1,
          arbitrary: fc.array(fc.tuple(headerName, headerValue), { minLength: 90, maxLength: 250 }),
        },
      ),
      framing,
      lineEnd: fc.oneof(
        { weight: 19, arbitrary: fc.constant("\r\n") },
        { weight: 1, arbitrary: fc.constant("\n") },
      ),
    })
    .chain((parts) =>
      fc
        .shuffledSubarray(
          [...parts.host, ...parts.tokens, ...parts.extra, ...parts.framing.headers],
          {
            minLength:
              parts.host.length +
              parts.tokens.length +
              parts.extra.length +
              parts.framing.headers.length,
          },
        )
        .map((headers) => {
          const e = parts.lineEnd;
          const head =
            `${parts.method} ${parts.target} ${parts.version}${e}` +
            headers.map(([n, v]) => `${n}: ${v}${e}`).join("") +
            e;
          return {
            bytes: Buffer.from(head + parts.framing.body, "latin1"),
            asterisk: parts.method === "OPTIONS" && parts.target === "*",
          };
        }),
    );
}

/**
 * Sends one case on a fresh connection, half-closes it (so an incomplete head is judged at
 * once rather than at the head deadline), and reads the status of the first answer.
 */
export function sendCase(port: number, bytes: Buffer, timeoutMs: number): Promise<FuzzAnswer> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let received = "";
    let settled = false;
    const settle = (answer: FuzzAnswer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    const timer = setTimeout(() => settle({ kind: "timeout" }), timeoutMs);
    socket.on("data", (c: Buffer) => {
      received += c.toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3}) /.exec(received);
      if (m) settle({ kind: "answered", status: Number(m[1]) });
    });
    socket.on("error", () => settle(received === "" ? { kind: "closed" } : { kind: "closed" }));
    socket.on("close", () => settle({ kind: "closed" }));
    socket.end(bytes);
  });
}

/** Why an answer breaks the invariant, or undefined when it holds. */
export function judge(fuzzCase: FuzzCase, answer: FuzzAnswer): string | undefined {
  switch (answer.kind) {
    case "closed":
      return undefined;
    case "timeout":
      return "no answer within the deadline";
    case "answered":
      if (answer.status >= 400 && answer.status < 500) return undefined;
      if (fuzzCase.asterisk && answer.status === 200) return undefined;
      return `answered ${String(answer.status)}`;
  }
}

/** A short, printable rendering of a failing case (never more than 300 characters). */
export function describeCase(fuzzCase: FuzzCase): string {
  const text = JSON.stringify(fuzzCase.bytes.toString("latin1"));
  return text.length > 300
    ? `${text.slice(0, 300)}… (${String(fuzzCase.bytes.length)} bytes)`
    : text;
}
