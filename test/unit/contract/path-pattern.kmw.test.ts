/**
 * Access-rule path patterns against the real thing: Debian's keystonemiddleware
 * `_path_matches` under /usr/bin/python3, one process per batch
 * (test/harness/access_rules_reference.py). A fixed corpus of tricky cases, then a few
 * thousand generated (pattern, path) pairs, seed-stable. Without keystonemiddleware the
 * Python call fails, and so does this file (the unit suite's convention: never skipped).
 *
 * For every case: the expression the edge builds is the one keystonemiddleware handed to
 * `re.match`; a compiled pattern answers as keystonemiddleware does; a pattern the edge
 * calls invalid is one Python refuses; a pattern Python refuses matches nothing here; and
 * the edge never allows what keystonemiddleware refuses. Patterns the edge refuses as
 * unsupported (valid Python it does not run) are the only ones where it may say no to a
 * yes, and they are counted.
 */
import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { compilePathPattern, kmwRegexSource } from "../../../src/contract/path-pattern.js";
import { runPythonJson } from "../../harness/kmw-python.js";

const REFERENCE = fileURLToPath(
  new URL("../../harness/access_rules_reference.py", import.meta.url),
);

type Reference = { match: boolean; regex: string } | { error: string; regex: string | null };

async function reference(cases: readonly (readonly [string, string])[]): Promise<Reference[]> {
  const out = (await runPythonJson([REFERENCE], { matches: cases })) as { matches: Reference[] };
  expect(out.matches).toHaveLength(cases.length);
  return out.matches;
}

interface Verdicts {
  /** Cases where the two disagree in a way the contract forbids. */
  readonly wrong: { path: string; pattern: string; why: string }[];
  /** Unsupported patterns keystonemiddleware would have let through (refused here). */
  strictOnUnsupported: number;
  compiled: number;
  positives: number;
  pythonErrors: number;
}

async function compare(cases: readonly (readonly [string, string])[]): Promise<Verdicts> {
  const want = await reference(cases);
  const verdicts: Verdicts = {
    wrong: [],
    strictOnUnsupported: 0,
    compiled: 0,
    positives: 0,
    pythonErrors: 0,
  };
  cases.forEach(([path, pattern], i) => {
    const ref = want[i];
    if (ref === undefined) throw new Error("missing reference answer");
    const wrong = (why: string): void => {
      verdicts.wrong.push({ path, pattern, why });
    };
    const compiled = compilePathPattern(pattern);
    const got = compiled.matches(path);
    if (ref.regex !== kmwRegexSource(pattern))
      wrong(`regex ${kmwRegexSource(pattern)} ≠ ${ref.regex ?? "none"}`);
    if ("error" in ref) {
      verdicts.pythonErrors++;
      if (compiled.refusal === undefined) wrong(`compiled; Python: ${ref.error}`);
      if (got) wrong("matched; Python refuses the pattern");
      return;
    }
    if (ref.match) verdicts.positives++;
    if (compiled.refusal === undefined) {
      verdicts.compiled++;
      if (got !== ref.match) wrong(`edge ${got}, keystonemiddleware ${ref.match}`);
    } else if (compiled.refusal.kind === "invalid") {
      wrong(`refused as invalid (${compiled.refusal.message}); Python compiles it`);
    } else if (ref.match) {
      verdicts.strictOnUnsupported++;
    }
    if (got && !ref.match) wrong("edge allows what keystonemiddleware refuses");
  });
  return verdicts;
}

/** Tricky cases, each against keystonemiddleware. */
const CORPUS: [string, string][] = [
  // the ReDoS pattern, short enough for Python to backtrack through
  ["/v2.1/a/a/a/a/a/a/a/a/a/a/a/a/a/a", "/v2.1/**/**/**/**/**/**/**/zzz"],
  ["/v2.1/a/a/a/a/a/a/a/zzz", "/v2.1/**/**/**/**/**/**/**/zzz"],
  ["/v2.1/zzz", "/v2.1/**/**/**/**/**/**/**/zzz"],
  ["/v2.1//////////zzz", "/v2.1/**/**/**/**/**/**/**/zzz"],
  // '.' is any character but \n
  ["/v2x1/servers", "/v2.1/servers"],
  ["/v2.1/servers", "/v2.1/servers"],
  ["/v2\n1/servers", "/v2.1/servers"],
  ["/v2/1/servers", "/v2.1/servers"],
  // a trailing \n: $ matches before it, ** does not cross it, * does
  ["/v2.1/servers\n", "/v2.1/servers"],
  ["/v2.1/servers\n\n", "/v2.1/servers"],
  ["/v2.1/servers/\n", "/v2.1/servers/**"],
  ["/v2.1/servers/a\nb", "/v2.1/servers/**"],
  ["/v2.1/servers/a\nb", "/v2.1/servers/*"],
  ["/v2.1/servers/\n", "/v2.1/servers/*"],
  ["\n", "**"],
  ["", "**"],
  ["", ""],
  ["\n", ""],
  ["", "*"],
  // empty segments, * against nothing
  ["/a//b", "/a/*/b"],
  ["/a//b", "/a/**/b"],
  ["/a//b", "/a/{x}/b"],
  ["/a/b", "/a/**/b"],
  ["/a/", "/a/*"],
  ["/a/", "/a/**"],
  ["/a", "/a/**"],
  ["//", "/*/"],
  ["//", "/**/"],
  // star runs
  ["/a", "/***"],
  ["/a/b", "/***"],
  ["/", "/***"],
  ["/a/b", "/****"],
  ["/ab", "/*****"],
  ["/a/b/c", "/*/*/*"],
  ["/a*b", "/a\\*b"],
  ["/a\\b", "/a\\*b"],
  ["/a[b", "/a\\*b"],
  // braces: balanced, unclosed, stray, nested, empty
  ["/v2/x", "/v2/{id"],
  ["/v2/id", "/v2/{id"],
  ["/v2/x", "/v2/id}"],
  ["/v2/id", "/v2/id}"],
  ["/v2/x", "/v2/{}"],
  ["/v2/x/y", "/v2/{a{b}/y"],
  ["/v2/x}", "/v2/{a}}"],
  ["/v2/x", "/v2/{*}"],
  ["/v2/x/y", "/v2/{**}/y"],
  ["/v2/x", "/v2/{a/b}"],
  // metacharacters
  ["/x/whatever", "/x|/y"],
  ["/y", "/x|/y"],
  ["/zy", "/x|/y"],
  ["/v2/servers", "/v2/(servers|images)"],
  ["/v2/flavors", "/v2/(servers|images)"],
  ["/v2", "/v2?"],
  ["/v", "/v2?"],
  ["/v222", "/v2+"],
  ["/v2/x", "/v2/[a-z]"],
  ["/v2/X", "/v2/[a-z]"],
  ["/v2/x", "/v2/[^a-z]"],
  ["/v2/-", "/v2/[a-]"],
  ["/v2/]", "/v2/[]]"],
  ["/v2/]", "/v2/[^]]"],
  ["/v2/a", "/v2/[\\d-z]"],
  ["/v2/a", "/v2/[z-a]"],
  ["/v2/a", "/v2/[a"],
  ["/v2/[", "/v2/[[]"],
  ["/v2/.", "/v2/\\."],
  ["/v2/x", "/v2/\\."],
  ["/v2/3", "/v2/\\d"],
  ["/v2/x", "/v2/\\w"],
  ["/v2/ ", "/v2/\\s"],
  ["/v2/a", "/v2/\\q"],
  ["/v2/a", "/v2/\\"],
  ["/v2/$", "/v2/\\"],
  ["/v2/$/x", "/v2/\\"],
  ["/v2/a", "/v2/(a"],
  ["/v2/a)", "/v2/a)"],
  ["/v2/a", "/v2/(?:a)"],
  ["/v2/a", "/v2/(?P<id>a)"],
  ["/v2/a", "/v2/(?P<1d>a)"],
  ["/v2/aa", "/v2/(?P<x>a)(?P=x)"],
  ["/v2/aa", "/v2/(a)\\1"],
  ["/v2/a", "/v2/\\1"],
  ["/v2/a", "/v2/(?#note)a"],
  ["/v2/a", "/v2/a(?#note)?"],
  ["/v2/a", "/v2/(?=a)a"],
  ["/v2/a", "/v2/(?!b)a"],
  ["/v2/a", "/v2/(?<=/)a"],
  ["/v2/a", "/v2/(?>a)"],
  ["/v2/A", "/v2/(?i:a)"],
  ["/v2/a", "/v2/(?i)a"],
  ["/v2/ab", "/v2/a*+"],
  ["/v2/ab", "/v2/a**+"],
  ["/v2/ab", "/v2/a*?"],
  ["/v2/a/b", "/v2/a**?"],
  ["/v2/a", "/v2/a??"],
  ["/v2/a", "/v2/a???"],
  ["/v2/a", "/v2/a+?+"],
  ["/v2/a", "^/v2/a"],
  ["/v2/a", "/v2/^a"],
  ["/v2/a", "/v2/a$"],
  ["/v2/a\n", "/v2/a$"],
  ["/v2/a\n", "/v2/a\\Z"],
  ["/v2/a", "/v2/a\\Z"],
  ["/v2/a", "/v2/\\Aa"],
  ["/v2/a-", "/v2/a\\b-"],
  ["/v2/ab", "/v2/a\\bb"],
  ["/v2/ab", "/v2/a\\Bb"],
  ["/v2/a", "/v2/a$?"],
  ["/v2/a", "?"],
  ["/v2/a", "/v2/a|?"],
  ["/v2/\u0007", "/v2/\\a"],
  ["/v2/A", "/v2/\\x41"],
  ["/v2/A", "/v2/\\x4"],
  ["/v2/A", "/v2/\\u0041"],
  ["/v2/A", "/v2/\\U00000041"],
  ["/v2/A", "/v2/\\U00110000"],
  ["/v2/\u0000", "/v2/\\0"],
  ["/v2/A", "/v2/\\101"],
  ["/v2/\u00ff", "/v2/\\377"],
  ["/v2/a", "/v2/\\400"],
  ["/v2/a", "/v2/\\N"],
  ["/v2/é", "/v2/."],
  ["/v2/😀", "/v2/."],
  ["/v2/😀", "/v2/.."],
  ["/v2/😀", "/v2/*"],
  ["/v2/é", "/v2/\\w"],
  ["/v2/\u00a0", "/v2/\\s"],
  ["/v2/٣", "/v2/\\d"],
  // realistic rules
  ["/v2.1/servers/6f70656e-7374-6163-6b00-000000000000", "/v2.1/servers/{server_id}"],
  ["/v2.1/servers/x/action", "/v2.1/servers/{server_id}/action"],
  ["/v2.1/servers/x/y/action", "/v2.1/servers/{server_id}/action"],
  ["/v1/AUTH_abc/container/a/b/c.txt", "/v1/AUTH_*/container/**"],
  ["/v1/AUTH_abc/other/a", "/v1/AUTH_*/container/**"],
  ["/v3/projects/abc/users/def/roles/ghi", "/v3/projects/*/users/*/roles/*"],
  ["/v2/images/abc/file", "/v2/images/{image_id}/file"],
  ["/v2.0/networks.json", "/v2.0/networks.json"],
  ["/v2.0/networksxjson", "/v2.0/networks.json"],
  ["/v1/my%20container/o", "/v1/my%20container/*"],
  ["/v1/AUTH_x/~user/obj", "/v1/AUTH_x/~user/*"],
];

/** Pattern pieces: kmw's syntax, path characters, and every regex metacharacter. */
const PATTERN_PIECES: [string, number][] = [
  ...["/", "*", "**", "{x}", "."].map((p): [string, number] => [p, 12]),
  ...["a", "b", "v2", "1", "-", "_", "~", "%20", "servers"].map((p): [string, number] => [p, 6]),
  ...[
    "(",
    ")",
    "[",
    "]",
    "^",
    "$",
    "|",
    "?",
    "+",
    "\\",
    "\\.",
    "\\d",
    "\\w",
    "\\s",
    "\\b",
    "\\B",
    "\\Z",
    "\\A",
    "\\1",
    "(?:",
    "(?P<n>",
    "(?#c)",
    "(?=",
    "[^",
    "\n",
    "é",
    "{",
    "}",
    ":",
    "!",
    "<",
    ">",
    "P",
    "#",
    "=",
    "[a-z]",
    "\\x41",
    "\\n",
    "\\/",
  ].map((p): [string, number] => [p, 2]),
];

function weighted(pieces: readonly [string, number][]): fc.Arbitrary<string> {
  return fc.oneof(...pieces.map(([p, weight]) => ({ arbitrary: fc.constant(p), weight })));
}

/** A path near a pattern: its pieces made concrete, some mutated. */
function pathFrom(pieces: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(
      ...pieces.map((p) => {
        switch (p) {
          case "*":
          case "{x}":
            return fc.constantFrom("a", "abc", "", "a/b", "x.y");
          case "**":
            return fc.constantFrom("", "a", "a/b", "/", "a/b/c", "\n");
          case ".":
            return fc.constantFrom(".", "x", "/", "\n");
          default:
            return fc.oneof(
              { arbitrary: fc.constant(p.replace(/\\/g, "")), weight: 6 },
              { arbitrary: fc.constantFrom("", "x", "/", "a", "$", "\n"), weight: 1 },
            );
        }
      }),
    )
    .map((parts) => parts.join(""));
}

const PATH_UNITS = [
  "/",
  "a",
  "b",
  "v2",
  "1",
  ".",
  "-",
  "_",
  "~",
  "\n",
  "é",
  "(",
  ")",
  "[",
  "$",
  " ",
  "x",
  "A",
];

const CASE: fc.Arbitrary<[string, string]> = fc
  .tuple(
    fc.array(weighted(PATTERN_PIECES), { minLength: 1, maxLength: 8 }),
    fc.oneof({ arbitrary: fc.constant("/"), weight: 4 }, { arbitrary: fc.constant(""), weight: 1 }),
  )
  .chain(([pieces, prefix]) =>
    fc.tuple(
      fc.oneof(
        { arbitrary: pathFrom(pieces).map((p) => prefix + p), weight: 3 },
        {
          arbitrary: fc
            .array(fc.constantFrom(...PATH_UNITS), { maxLength: 10 })
            .map((u) => u.join("")),
          weight: 1,
        },
      ),
      fc.constant(prefix + pieces.join("")),
    ),
  );

describe("path patterns against keystonemiddleware's _path_matches (CPython)", () => {
  it("agrees on the corpus of tricky cases", async () => {
    const v = await compare(CORPUS);
    expect(v.wrong).toEqual([]);
    expect(v.positives).toBeGreaterThan(40);
    expect(v.pythonErrors).toBeGreaterThan(10);
  });

  it("agrees on thousands of generated patterns × paths (fixed seed)", async () => {
    const cases = fc.sample(CASE, { numRuns: 5000, seed: 13 });
    const v = await compare(cases);
    expect(v.wrong.slice(0, 10)).toEqual([]);
    // the sample exercises all sides
    expect(v.compiled).toBeGreaterThan(2500);
    expect(v.positives).toBeGreaterThan(800);
    expect(v.pythonErrors).toBeGreaterThan(200);
    // refusing unsupported constructs costs little in practice
    expect(v.strictOnUnsupported).toBeLessThan(cases.length / 100);
  });
});
