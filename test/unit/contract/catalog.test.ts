/**
 * X-Service-Catalog: keystonemiddleware's v3 → v2 conversion and CPython's json.dumps,
 * checked against the installed keystonemiddleware and /usr/bin/python3 on fixtures and on
 * thousands of generated values (one Python process per batch).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  normalizeCatalog,
  pythonFloatRepr,
  pythonJsonDumps,
  serviceCatalogHeaderValue,
  type JsonValue,
} from "../../../src/contract/catalog.js";
import type { CatalogService } from "../../../src/token/body.js";
import { CATALOG } from "../../harness/contract-fixtures.js";
import { runPythonSnippet } from "../../harness/kmw-python.js";

/** json.dumps(json.loads(text)) for each text. */
const DUMPS_PY = `
import json, sys
texts = json.loads(sys.stdin.buffer.read().decode("utf-8"))
print(json.dumps([json.dumps(json.loads(t)) for t in texts]))
`;

/** json.dumps(float) for each IEEE-754 bit pattern (hex). */
const FLOATS_PY = `
import json, struct, sys
bits = json.loads(sys.stdin.buffer.read().decode("utf-8"))
print(json.dumps([json.dumps(struct.unpack(">d", bytes.fromhex(b))[0]) for b in bits]))
`;

/** keystonemiddleware's own conversion and header value. */
const CATALOG_PY = `
import json, sys
from oslo_serialization import jsonutils
from keystonemiddleware.auth_token import _request
catalogs = json.loads(sys.stdin.buffer.read().decode("utf-8"))
out = []
for c in catalogs:
    n = _request._normalize_catalog(c)
    out.append({"normalized": n, "header": jsonutils.dumps(n)})
print(json.dumps(out))
`;

async function pythonDumps(values: readonly unknown[]): Promise<string[]> {
  return (await runPythonSnippet(
    DUMPS_PY,
    values.map((v) => JSON.stringify(v)),
  )) as string[];
}

function bitsOf(x: number): string {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  return [...new Uint8Array(view.buffer)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** One UTF-16 code unit, any (control characters, lone surrogates, the escapable ones). */
const anyCodeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
/** A nasty string unit: ASCII, escapes, controls, Latin-1, U+2028/9, BMP, astral, lone surrogates. */
const nastyUnit = fc.oneof(
  fc.constantFrom('"', "\\", "/", "\n", "\r", "\t", "\b", "\f", "\u007f", "\u2028", "\u2029", "\0"),
  fc.string({ unit: "binary-ascii", minLength: 1, maxLength: 1 }),
  fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
  anyCodeUnit,
);
const nastyString = fc.string({ unit: nastyUnit, maxLength: 24 });

describe("pythonJsonDumps", () => {
  it("formats the basics like json.dumps", () => {
    expect(pythonJsonDumps({ a: [1, 2.5, "x"], b: null, c: true, d: false, e: {} })).toBe(
      '{"a": [1, 2.5, "x"], "b": null, "c": true, "d": false, "e": {}}',
    );
    expect(pythonJsonDumps([])).toBe("[]");
    expect(pythonJsonDumps("é😀\u2028\u0001\u007f")).toBe(
      '"\\u00e9\\ud83d\\ude00\\u2028\\u0001\\u007f"',
    );
    expect(pythonJsonDumps([0.1, 1e16, 1e-5, 0.0001, 1e21, 123456789012345680000])).toBe(
      "[0.1, 10000000000000000, 1e-05, 0.0001, 1e+21, 123456789012345680000]",
    );
    // an integral double below 1e21 is what JSON.stringify writes as an int; as a float:
    expect([1e16, 1e15, 2.5e-7, -1.5e300].map(pythonFloatRepr)).toEqual([
      "1e+16",
      "1000000000000000.0",
      "2.5e-07",
      "-1.5e+300",
    ]);
    expect(pythonJsonDumps([NaN, Infinity, -Infinity, -0])).toBe("[NaN, Infinity, -Infinity, 0]");
    expect(pythonJsonDumps(12n ** 30n)).toBe((12n ** 30n).toString());
  });

  it("matches CPython json.dumps on generated JSON values (nasty strings, keys, numbers)", async () => {
    const values = fc.sample(
      fc.oneof(
        fc.jsonValue({ stringUnit: nastyUnit, maxDepth: 4 }),
        fc.jsonValue({ maxDepth: 3 }),
        fc.array(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), fc.integer())),
        nastyString,
      ),
      { numRuns: 3000, seed: 20240501 },
    ) as JsonValue[];
    const expected = await pythonDumps(values);
    expect(expected).toHaveLength(values.length);
    const mismatches = values
      .map((v, i) => ({ v, got: pythonJsonDumps(v), want: expected[i] }))
      .filter((m) => m.got !== m.want);
    expect(mismatches.slice(0, 5)).toEqual([]);
  });

  it("matches CPython on every string of single code units 0..0xFFFF and astral pairs", async () => {
    const strings: string[] = [];
    for (let c = 0; c <= 0xffff; c += 64) {
      strings.push(Array.from({ length: 64 }, (_, i) => String.fromCharCode(c + i)).join(""));
    }
    strings.push("😀𝄞\u{10ffff}\u{10000}", "\ud800", "\udfff", "\ud800x\udc00");
    const expected = await pythonDumps(strings);
    expect(strings.map((s) => pythonJsonDumps(s))).toEqual(expected);
  });
});

describe("pythonFloatRepr", () => {
  it("is json.dumps(float) for generated doubles, including NaN, ±Infinity, -0.0 and subnormals", async () => {
    const doubles = [
      ...fc.sample(fc.double(), { numRuns: 5000, seed: 7 }),
      ...fc.sample(fc.double({ min: -1e-300, max: 1e-300 }), { numRuns: 500, seed: 8 }),
      ...fc.sample(
        fc.integer().map((i) => i / 1000),
        { numRuns: 500, seed: 9 },
      ),
      0,
      -0,
      1,
      -1,
      0.5,
      1e15,
      1e16,
      1e17,
      2 ** 53 + 2,
      -(2 ** 60),
      1e-4,
      1e-5,
      5e-324,
      1.7976931348623157e308,
      Number("123456789.123456789"),
      0.1 + 0.2,
      NaN,
      Infinity,
      -Infinity,
    ];
    const expected = (await runPythonSnippet(FLOATS_PY, doubles.map(bitsOf))) as string[];
    expect(expected).toHaveLength(doubles.length);
    const mismatches = doubles
      .map((x, i) => ({ x, got: pythonFloatRepr(x), want: expected[i] }))
      .filter((m) => m.got !== m.want);
    expect(mismatches.slice(0, 5)).toEqual([]);
  });
});

const endpointArb = fc.record(
  {
    id: fc.uuid(),
    interface: fc.oneof(
      fc.constantFrom("public", "internal", "admin", "Public", "ADMIN"),
      fc.string({ unit: "grapheme-ascii", minLength: 1, maxLength: 6 }),
    ),
    region: fc.oneof(
      fc.constantFrom(null, "", "RegionOne", "RegionTwo", "Région-Ω", "😀"),
      fc.string({ unit: nastyUnit, maxLength: 5 }),
    ),
    url: fc.oneof(fc.webUrl(), nastyString),
  },
  { requiredKeys: ["id", "interface", "url"] },
);

const serviceArb = fc.record(
  {
    endpoints: fc.array(endpointArb, { maxLength: 7 }),
    id: fc.uuid(),
    type: fc.oneof(fc.constantFrom("compute", "identity", "object-store"), nastyString),
    name: nastyString,
  },
  { requiredKeys: ["endpoints", "id", "type"] },
);

describe("normalizeCatalog and X-Service-Catalog", () => {
  it("merges endpoints per region, region key only when truthy, interfaces lower-cased + URL", () => {
    const [compute, swift, image, placement, identity] = normalizeCatalog(CATALOG);
    expect(compute).toEqual({
      type: "compute",
      name: "nova",
      endpoints: [
        {
          region: "RegionOne",
          publicURL: "https://nova.example/v2.1",
          internalURL: "http://nova.internal:8774/v2.1",
          adminURL: "http://nova.admin:8774/v2.1",
        },
        { region: "RegionTwo", publicURL: "https://nova.two.example/v2.1" },
      ],
    });
    // region order = first appearance
    expect(swift?.endpoints.map((e) => e["region"])).toEqual(["RegionTwo", "RegionOne"]);
    // no name key: none copied; null/absent share a group, "" is another, later URL wins
    expect(image).toEqual({
      type: "image",
      endpoints: [
        {
          publicURL: "https://glance-2.example",
          internalURL: "http://glance.internal:9292",
        },
        { adminURL: "http://glance.admin" },
      ],
    });
    expect(placement).toEqual({ type: "placement", name: "", endpoints: [] });
    expect(identity?.endpoints).toEqual([
      { region: "Région-Ω", publicURL: 'https://keystone.example/v3?x="q"&y=\\z' },
    ]);
  });

  it("renders the header value keystonemiddleware renders, for the fixture catalog", async () => {
    const [py] = (await runPythonSnippet(CATALOG_PY, [CATALOG])) as {
      normalized: unknown;
      header: string;
    }[];
    expect(normalizeCatalog(CATALOG)).toEqual(py?.normalized);
    expect(serviceCatalogHeaderValue(CATALOG)).toBe(py?.header);
    expect(serviceCatalogHeaderValue(CATALOG)).toMatch(/^[\x20-\x7e]*$/);
    expect(serviceCatalogHeaderValue([])).toBe("[]");
  });

  it("matches keystonemiddleware on generated catalogs (key order and bytes)", async () => {
    const catalogs: CatalogService[][] = fc.sample(fc.array(serviceArb, { maxLength: 6 }), {
      numRuns: 400,
      seed: 42,
    });
    const py = (await runPythonSnippet(CATALOG_PY, catalogs)) as { header: string }[];
    expect(py).toHaveLength(catalogs.length);
    const mismatches = catalogs
      .map((c, i) => ({ c, got: serviceCatalogHeaderValue(c), want: py[i]?.header }))
      .filter((m) => m.got !== m.want);
    expect(mismatches.slice(0, 3)).toEqual([]);
  });
});

describe("serviceCatalogHeaderValue: each catalog its own value", () => {
  it("gives another catalog object its own value", () => {
    const a = structuredClone(CATALOG) as CatalogService[];
    const b = structuredClone(CATALOG) as CatalogService[];
    const first = b[0];
    if (first === undefined) throw new Error("the fixture catalog is empty");
    b[0] = { ...first, type: "another-type" };
    expect(serviceCatalogHeaderValue(a)).toBe(serviceCatalogHeaderValue(structuredClone(a)));
    expect(serviceCatalogHeaderValue(b)).toContain('"type": "another-type"');
    expect(serviceCatalogHeaderValue(a)).not.toContain("another-type");
  });
});
