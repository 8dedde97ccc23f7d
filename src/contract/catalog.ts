/**
 * The `X-Service-Catalog` header value, byte for byte as keystonemiddleware renders it.
 *
 * Owns: keystonemiddleware's v3 → v2 catalog conversion (`_request._normalize_catalog`) and a
 * reimplementation of CPython's `json.dumps` with default arguments (what
 * `oslo_serialization.jsonutils.dumps` calls): `", "` and `": "` separators, `ensure_ascii`
 * escapes, Python `repr` floats, `NaN`/`Infinity` allowed, keys in insertion order.
 */
import type { CatalogService } from "../token/body.js";

/** A JSON value as JavaScript holds it after `JSON.parse`. */
export type JsonValue =
  null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

/** One v2 endpoint group: `region` (when truthy) then `<interface>URL` keys, first-seen order. */
export type V2Endpoint = { readonly [key: string]: string };

/** One service of the v2-shaped catalog keystonemiddleware puts in `X-Service-Catalog`. */
export type V2Service = {
  readonly type: string;
  readonly name?: string;
  readonly endpoints: readonly V2Endpoint[];
};

/**
 * keystonemiddleware's `_normalize_catalog`: per service `{type, name?, endpoints}` where the
 * endpoints of one region are merged into one object `{region?, publicURL, internalURL, ...}`.
 *
 * Faithful details: `name` is copied only when the key exists; `region` is the v3 `region`
 * field (not `region_id`); endpoints without a region (absent or `null`) share one group and
 * endpoints with region `""` another, and neither carries a `region` key (Python truthiness);
 * the interface is lower-cased and suffixed with `URL`; a later endpoint with the same
 * interface in the same region overwrites the URL but keeps the key's position; groups are in
 * the order their region first appears.
 */
export function normalizeCatalog(catalog: readonly CatalogService[]): V2Service[] {
  const services: V2Service[] = [];
  for (const v3 of catalog) {
    const regions = new Map<string | null, Record<string, string>>();
    // Python: v3_service.get('endpoints', [])
    for (const endpoint of Object.hasOwn(v3, "endpoints") ? v3.endpoints : []) {
      const regionName = endpoint.region ?? null;
      let region = regions.get(regionName);
      if (region === undefined) {
        region = regionName ? { region: regionName } : {};
        regions.set(regionName, region);
      }
      region[`${endpoint.interface.toLowerCase()}URL`] = endpoint.url;
    }
    const endpoints = [...regions.values()];
    services.push(
      v3.name !== undefined // Python copies 'name' whenever the key exists
        ? { type: v3.type, name: v3.name, endpoints }
        : { type: v3.type, endpoints },
    );
  }
  return services;
}

/**
 * The exact `X-Service-Catalog` value keystonemiddleware sets for a v3 token's catalog:
 * `jsonutils.dumps(_normalize_catalog(catalog))`. Pure ASCII. Computed once per context:
 * the tokens answered from one context share its prepared header lists
 * (validation/prepared-tokens.ts), this value among them.
 */
export function serviceCatalogHeaderValue(catalog: readonly CatalogService[]): string {
  return pythonJsonDumps(normalizeCatalog(catalog));
}

// ---------------------------------------------------------------------------------------------
// CPython json.dumps

const SHORT_ESCAPES: Readonly<Record<number, string>> = {
  0x22: '\\"',
  0x5c: "\\\\",
  0x0a: "\\n",
  0x0d: "\\r",
  0x09: "\\t",
  0x08: "\\b",
  0x0c: "\\f",
};

/** Anything json's `ESCAPE_ASCII` (`([\\"]|[^\ -~])`) would touch. */
const NEEDS_ESCAPE = /[^\x20\x21\x23-\x5b\x5d-\x7e]/;

/**
 * `json.encoder.py_encode_basestring_ascii`: `"`, `\` and the five short escapes, every other
 * UTF-16 code unit outside `' '..'~'` as `\uxxxx` (lowercase hex), so astral characters come
 * out as their surrogate pair and lone surrogates as themselves.
 */
function encodeString(s: string): string {
  if (!NEEDS_ESCAPE.test(s)) return `"${s}"`;
  let out = '"';
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c <= 0x7e && c !== 0x22 && c !== 0x5c) continue;
    if (i > start) out += s.slice(start, i);
    out += SHORT_ESCAPES[c] ?? `\\u${c.toString(16).padStart(4, "0")}`;
    start = i + 1;
  }
  return `${out}${s.slice(start)}"`;
}

/**
 * CPython `float.__repr__` (shortest round-trip digits, like JavaScript's): positional when
 * the decimal point falls within -4 < decpt <= 16, always with a fractional part (`1.0`),
 * else `d.ddde±XX` with at least two exponent digits.
 */
export function pythonFloatRepr(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (x === Infinity) return "Infinity";
  if (x === -Infinity) return "-Infinity";
  if (x === 0) return Object.is(x, -0) ? "-0.0" : "0.0";
  const exponential = x.toExponential(); // shortest digits: "-1.2345e+2"
  const e = exponential.indexOf("e");
  const negative = x < 0;
  const digits = exponential.slice(negative ? 1 : 0, e).replace(".", "");
  const exp10 = Number(exponential.slice(e + 1));
  const decpt = exp10 + 1; // digits = 0.d1d2... × 10^decpt
  const sign = negative ? "-" : "";
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) return `${sign}0.${"0".repeat(-decpt)}${digits}`;
    if (decpt >= digits.length) return `${sign}${digits}${"0".repeat(decpt - digits.length)}.0`;
    return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
  }
  const mantissa = digits.length > 1 ? `${digits[0] ?? ""}.${digits.slice(1)}` : digits;
  const expSign = exp10 < 0 ? "-" : "+";
  return `${sign}${mantissa}e${expSign}${String(Math.abs(exp10)).padStart(2, "0")}`;
}

/**
 * Numbers follow "JSON.stringify, then Python json.loads": an integral value below 1e21 in
 * magnitude is a Python int (its decimal digits as `String(n)` writes them; `-0` is `0`),
 * anything else a Python float ({@link pythonFloatRepr}); `NaN` and `±Infinity` are written as
 * Python does (`allow_nan=True`).
 */
function encodeNumber(n: number): string {
  if (Number.isInteger(n) && Math.abs(n) < 1e21) return String(n);
  return pythonFloatRepr(n);
}

function encode(value: unknown, inArray: boolean): string | undefined {
  switch (typeof value) {
    case "string":
      return encodeString(value);
    case "number":
      return encodeNumber(value);
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return value.toString();
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) {
        if (value.length === 0) return "[]";
        let out = "[";
        for (let i = 0; i < value.length; i++) {
          if (i > 0) out += ", ";
          out += encode(value[i] as unknown, true) ?? "null";
        }
        return `${out}]`;
      }
      let out = "{";
      let first = true;
      for (const [key, item] of Object.entries(value)) {
        const encoded = encode(item, false);
        if (encoded === undefined) continue;
        out += `${first ? "" : ", "}${encodeString(key)}: ${encoded}`;
        first = false;
      }
      return `${out}}`;
    }
    default:
      // undefined, functions, symbols: dropped from objects, null in arrays (as JSON.stringify).
      return inArray ? "null" : undefined;
  }
}

/**
 * CPython's `json.dumps(value)` with default arguments, byte for byte: separators `", "` and
 * `": "`, `ensure_ascii=True` (every code unit outside printable ASCII as `\uxxxx`, lowercase,
 * surrogate pairs for astral characters), `allow_nan=True`, object keys in JavaScript's own
 * key order (the order `JSON.stringify` uses, which is the order Python gets from
 * `json.loads(JSON.stringify(value))`). Numbers: see the note on integral values below 1e21
 * (Python int) versus others (Python float `repr`); a `bigint` is written as a Python int.
 */
export function pythonJsonDumps(value: JsonValue | bigint): string {
  return encode(value, false) ?? "null";
}
