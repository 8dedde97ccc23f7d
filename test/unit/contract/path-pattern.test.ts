/**
 * Access-rule path patterns (src/contract/path-pattern.ts): keystonemiddleware's semantics
 * on hand-picked cases, the refusals, the bounds, and the cost of hostile patterns counted
 * in work (NFA nodes visited + characters read), never in time. The comparison with the
 * real keystonemiddleware is in path-pattern.kmw.test.ts.
 */
import { describe, expect, it } from "vitest";
import {
  compilePathPattern,
  DEFAULT_MAX_MATCH_WORK,
  DEFAULT_MAX_PATH_LENGTH,
  DEFAULT_MAX_PATTERN_LENGTH,
  kmwRegexSource,
  type PathPattern,
} from "../../../src/contract/path-pattern.js";

const matches = (path: string, pattern: string): boolean =>
  compilePathPattern(pattern).matches(path);

describe("kmwRegexSource, keystonemiddleware's translation", () => {
  it("turns * and {name} into one segment, ** into .*, keeps the rest as written", () => {
    expect(kmwRegexSource("/v2.1/servers/*")).toBe("^/v2.1/servers/[^\\/]+$");
    expect(kmwRegexSource("/v2/{project_id}/x/**")).toBe("^/v2/[^\\/]+/x/.*$");
    expect(kmwRegexSource("/***")).toBe("^/.*[^\\/]+$");
    expect(kmwRegexSource("/****")).toBe("^/.*.*$");
    expect(kmwRegexSource("/*****")).toBe("^/.*.*[^\\/]+$");
  });

  it("drops unbalanced braces and takes a tag up to the first }", () => {
    expect(kmwRegexSource("/a{b")).toBe("^/ab$");
    expect(kmwRegexSource("/a}b")).toBe("^/ab$");
    expect(kmwRegexSource("/{a{b}c}")).toBe("^/[^\\/]+c$");
    expect(kmwRegexSource("/{}")).toBe("^/[^\\/]+$");
    expect(kmwRegexSource("/{*}/x")).toBe("^/[^\\/]+/x$");
  });

  it("keeps astral characters whole", () => {
    expect(kmwRegexSource("/😀*")).toBe("^/😀[^\\/]+$");
  });
});

describe("compilePathPattern, as keystonemiddleware's _path_matches", () => {
  it("passes keystonemiddleware's own test_path_matches", () => {
    const good: [string, string][] = [
      ["/v2/servers", "/v2/servers"],
      ["/v2/servers/123", "/v2/servers/{server_id}"],
      ["/v2/servers/123/", "/v2/servers/{server_id}/"],
      ["/v2/servers/123", "/v2/servers/*"],
      ["/v2/servers/123/", "/v2/servers/*/"],
      ["/v2/servers/123", "/v2/servers/**"],
      ["/v2/servers/123/", "/v2/servers/**"],
      ["/v2/servers/123/456", "/v2/servers/**"],
      ["/v2/servers", "**"],
      ["/v2/servers/", "**"],
      ["/v2/servers/123", "**"],
      ["/v2/servers/123/456", "**"],
      ["/v2/servers/123/volume/456", "**"],
      ["/v2/servers/123/456", "/v2/*/*/*"],
      ["/v2/123/servers/466", "/v2/{project_id}/servers/{server_id}"],
    ];
    const bad: [string, string][] = [
      ["/v2/servers/someuuid", "/v2/servers"],
      ["/v2/servers//", "/v2/servers/{server_id}"],
      ["/v2/servers/123/", "/v2/servers/{server_id}"],
      ["/v2/servers/123/456", "/v2/servers/{server_id}"],
      ["/v2/servers/123/456", "/v2/servers/*"],
      ["/v2/servers", "v2/servers"],
      ["/v2/servers/123/456/789", "/v2/*/*/*"],
      ["/v2/servers/123/", "/v2/*/*/*"],
      ["/v2/servers/", "/v2/servers/{server_id}"],
      ["/v2/servers", "/v2/servers/{server_id}"],
    ];
    for (const [path, pattern] of good)
      expect(matches(path, pattern), `${pattern} ${path}`).toBe(true);
    for (const [path, pattern] of bad)
      expect(matches(path, pattern), `${pattern} ${path}`).toBe(false);
  });

  it("reads '.' as any character but \\n, in the pattern and in what ** becomes", () => {
    expect(matches("/v2x1/servers", "/v2.1/servers")).toBe(true);
    expect(matches("/v2/1/servers", "/v2.1/servers")).toBe(true);
    expect(matches("/v2\n1/servers", "/v2.1/servers")).toBe(false);
    expect(matches("/a/b\nc", "/a/**")).toBe(false);
    // [^\/]+ takes a newline
    expect(matches("/a/b\nc", "/a/*")).toBe(true);
  });

  it("lets $ match before a final newline, and only there", () => {
    expect(matches("/v2.1/servers\n", "/v2.1/servers")).toBe(true);
    expect(matches("/v2.1/servers\n\n", "/v2.1/servers")).toBe(false);
    expect(matches("/v2.1/servers\nx", "/v2.1/servers")).toBe(false);
    expect(matches("/a\n", "/a/**")).toBe(false);
    expect(matches("\n", "**")).toBe(true);
    expect(matches("", "**")).toBe(true);
    expect(matches("", "*")).toBe(false);
  });

  it("needs one character or more, none a /, for * and {name}; ** takes / and nothing", () => {
    expect(matches("/a//b", "/a/*/b")).toBe(false);
    expect(matches("/a//b", "/a/**/b")).toBe(true);
    expect(matches("/a/b", "/a/**/b")).toBe(false);
    expect(matches("/a/x/y/b", "/a/**/b")).toBe(true);
    expect(matches("/a/", "/a/{id}")).toBe(false);
  });

  it("runs the other metacharacters as Python's re would", () => {
    // top-level | splits the whole expression: ^/x  or  /y$  (re.match: a prefix suffices)
    expect(matches("/x/anything", "/x|/y")).toBe(true);
    expect(matches("/y", "/x|/y")).toBe(true);
    expect(matches("/z/y", "/x|/y")).toBe(false);
    expect(matches("/v2/servers", "/v2/(servers|images)")).toBe(true);
    expect(matches("/v2/flavors", "/v2/(servers|images)")).toBe(false);
    expect(matches("/v2", "/v2?")).toBe(true);
    expect(matches("/v", "/v2?")).toBe(true);
    expect(matches("/v222", "/v2+")).toBe(true);
    expect(matches("/v3", "/v[0-9]")).toBe(true);
    expect(matches("/v3", "/v[^0-9]")).toBe(false);
    expect(matches("/v3", "/v\\d")).toBe(true);
    expect(matches("/a.b", "/a\\.b")).toBe(true);
    expect(matches("/axb", "/a\\.b")).toBe(false);
    expect(matches("/a", "/(?:a)(?#comment)")).toBe(true);
    expect(matches("/ab", "/a(?P<x>b)")).toBe(true);
    // a trailing backslash escapes the closing $: a literal '$' and no end anchor
    expect(matches("/a$", "/a\\")).toBe(true);
    expect(matches("/a$/more", "/a\\")).toBe(true);
    expect(matches("/a", "/a\\")).toBe(false);
    // an inner $ or \Z
    expect(matches("/a", "/a$")).toBe(true);
    expect(matches("/a\n", "/a\\Z")).toBe(false);
    expect(matches("/ab", "/a\\b")).toBe(false);
    expect(matches("/a-", "/a\\b-")).toBe(true);
    // *? and **? are lazy: the same language
    expect(matches("/a/b", "/a/*?")).toBe(true);
    expect(matches("/a/b/c", "/a/**?")).toBe(true);
  });

  it("refuses what Python's re refuses, and what the edge does not run", () => {
    const refusal = (pattern: string): string | undefined =>
      compilePathPattern(pattern).refusal?.kind;
    for (const p of [
      "/a(b",
      "/a)b",
      "/a[b",
      "/[z-a]",
      "/\\q",
      "?x",
      "/a??+",
      "/x|?",
      "/\\1",
      "/$?",
    ]) {
      expect(refusal(p), p).toBe("invalid");
    }
    for (const p of [
      "/(a)\\1",
      "/(?=a)",
      "/(?<=a)b",
      "/(?>a)",
      "/a*+",
      "/a**+",
      "/(?i:a)",
      "/(?P<x>a)(?P=x)",
      "/(a)(?(1)b)",
    ]) {
      expect(refusal(p), p).toBe("unsupported");
    }
    expect(refusal("/a".repeat(DEFAULT_MAX_PATTERN_LENGTH))).toBe("too_long");
    expect(refusal(`${"(".repeat(101)}${")".repeat(101)}`)).toBe("unsupported");
    expect(refusal(`${"(".repeat(100)}${")".repeat(100)}`)).toBeUndefined();
    expect(matches("/a(b", "/a(b")).toBe(false);
    expect(matches("/a", "/(?=a)a")).toBe(false);
  });

  it("matches nothing beyond its bounds", () => {
    expect(matches(`/${"a".repeat(DEFAULT_MAX_PATH_LENGTH - 1)}`, "/**")).toBe(true);
    expect(matches(`/${"a".repeat(DEFAULT_MAX_PATH_LENGTH)}`, "/**")).toBe(false);
    expect(compilePathPattern("/**", { maxPathLength: 3 }).matches("/abc")).toBe(false);
    expect(compilePathPattern("/**", { maxPathLength: 4 }).matches("/abc")).toBe(true);
    expect(compilePathPattern("/abc", { maxPatternLength: 3 }).refusal?.kind).toBe("too_long");
  });

  it("walks code points, as Python's str does", () => {
    expect(matches("/😀", "/.")).toBe(true);
    expect(matches("/😀x", "/..")).toBe(true);
    expect(matches("/\ud800", "/.")).toBe(true);
    expect(matches("/é", "/\\w")).toBe(true);
    expect(matches("/\u00a0", "/\\s")).toBe(true);
    expect(matches("/٣", "/\\d")).toBe(true);
  });

  it("gives the same answers with and without its DFA cache, and after it fills", () => {
    const patterns = [
      "/v2.1/servers/*",
      "/**a.....",
      "/(a|b)*a(a|b)(a|b)(a|b)",
      "/x|/y",
      "/a\\b**",
    ];
    const paths = [
      "/v2.1/servers/x",
      "/abababbbaaab",
      "/ba",
      "/x",
      "/y",
      "/a-b",
      "/aaaaaaaaaa",
      "",
    ];
    for (const pattern of patterns) {
      const cached = compilePathPattern(pattern, { maxDfaStates: 4 });
      const big = compilePathPattern(pattern);
      const none = compilePathPattern(pattern, { maxDfaStates: 0 });
      for (let round = 0; round < 2; round++) {
        for (const path of paths) {
          const want = none.matches(path);
          expect(cached.matches(path), `${pattern} ${path}`).toBe(want);
          expect(big.matches(path), `${pattern} ${path}`).toBe(want);
        }
      }
    }
  });
});

describe("the cost of a match", () => {
  /** The bound the design promises: one closure per position, each node once per closure. */
  const bound = (m: PathPattern, path: string): number => path.length + (path.length + 1) * m.size;

  it("is linear for the ReDoS pattern of issue 13 on an 8 KiB path that does not match", () => {
    const pattern = "/v2.1/**/**/**/**/**/**/**/**/**/**/**/**/zzz";
    const path = `/v2.1${"/a".repeat(4094)}`.slice(0, DEFAULT_MAX_PATH_LENGTH);
    expect(path.length).toBe(DEFAULT_MAX_PATH_LENGTH);
    const cached = compilePathPattern(pattern);
    const first = cached.measure(path);
    expect(first.outcome).toBe("no_match");
    // the DFA settles after a few characters: about one unit of work per character
    expect(first.work).toBeLessThan(2 * path.length);
    expect(cached.measure(path).work).toBeLessThan(path.length + 100);
    const nfa = compilePathPattern(pattern, { maxDfaStates: 0 });
    const plain = nfa.measure(path);
    expect(plain.outcome).toBe("no_match");
    expect(plain.work).toBeLessThanOrEqual(bound(nfa, path));
    expect(nfa.matches(`${path.slice(0, -4)}/zzz`)).toBe(true);
  });

  it("stops past its work budget, and answers no", () => {
    const buster = `/**a${".".repeat(40)}`;
    let x = 7;
    let path = "/";
    while (path.length < DEFAULT_MAX_PATH_LENGTH) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      path += x & 0x10000 ? "a" : "b";
    }
    const unbounded = compilePathPattern(buster, { maxMatchWork: Number.MAX_SAFE_INTEGER });
    const full = unbounded.measure(path);
    expect(full.work).toBeGreaterThan(DEFAULT_MAX_MATCH_WORK / 10);
    const capped = compilePathPattern(buster, { maxMatchWork: full.work / 4 });
    const m = capped.measure(path);
    expect(m.outcome).toBe("over_budget");
    expect(m.work).toBeLessThanOrEqual(full.work / 4 + capped.size + 1);
    expect(capped.matches(path)).toBe(false);
    expect(unbounded.measure(path, 1000).outcome).toBe("over_budget");
    // realistic rules are nowhere near it
    const rule = compilePathPattern("/v1/AUTH_*/container/**");
    expect(rule.measure(`/v1/AUTH_x/container${"/seg".repeat(2040)}`).work).toBeLessThan(
      DEFAULT_MAX_PATH_LENGTH + 500,
    );
  });

  it("stays within path length × NFA size on hostile patterns, with or without the DFA", () => {
    const hostile = [
      `/${"**/".repeat(100)}zzz`,
      `/${"*".repeat(200)}x`,
      `/**a${".".repeat(40)}`,
      `/${"(a|a)".repeat(30)}x`,
      `/${"(a*)*".repeat(20)}x`,
      `/((((((a*)*)*)*)*)*)*b`,
      `/${"(|a)".repeat(40)}b`,
      `/${"**\\b".repeat(30)}x`,
      `/${"(?:**|*)".repeat(20)}$$x`,
    ];
    const paths = [
      `/${"a".repeat(8000)}`,
      `/${"a/".repeat(4000)}`,
      `/${"ab".repeat(4000)}`,
      `/${"a".repeat(8000)}\n`,
    ];
    for (const pattern of hostile) {
      for (const maxDfaStates of [0, 64]) {
        const m = compilePathPattern(pattern, {
          maxDfaStates,
          maxMatchWork: Number.MAX_SAFE_INTEGER,
        });
        expect(m.refusal, pattern).toBeUndefined();
        expect(m.size).toBeLessThanOrEqual(2 * pattern.length + 8);
        for (const path of paths) {
          expect(m.measure(path).work, `${pattern} on ${path.slice(0, 8)}…`).toBeLessThanOrEqual(
            bound(m, path),
          );
        }
      }
    }
  });
});
