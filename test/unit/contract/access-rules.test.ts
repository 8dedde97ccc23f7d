import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

import {
  accessRestrictionOf,
  checkAccessRules,
  COMPILED_PATTERN_CACHE_SIZE,
  pathMatches,
  requestPathOf,
  wsgiPath,
  type AccessRestriction,
} from "../../../src/contract/access-rules.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import { runPythonJson } from "../../harness/kmw-python.js";

const REFERENCE = fileURLToPath(
  new URL("../../harness/access_rules_reference.py", import.meta.url),
);

function token(
  appCred: unknown,
  catalogTypes: string[] | null = ["compute", "identity"],
): KeystoneToken {
  const body: unknown = {
    methods: ["application_credential"],
    user: { id: "u", name: "n", domain: { id: "default", name: "Default" } },
    audit_ids: ["a"],
    expires_at: "2030-01-01T00:00:00.000000Z",
    issued_at: "2029-12-31T23:00:00.000000Z",
    ...(appCred === undefined ? {} : { application_credential: appCred }),
    ...(catalogTypes === null
      ? {}
      : { catalog: catalogTypes.map((type) => ({ type, name: type, id: type, endpoints: [] })) }),
  };
  return body as KeystoneToken;
}

const rules = [
  { service: "compute", method: "GET", path: "/v2.1/servers" },
  { service: "compute", method: "GET", path: "/v2.1/servers/*" },
  { service: "compute", method: "POST", path: "/v2.1/servers/{server_id}/action" },
  { service: "image", method: "GET", path: "/v2/images/**" },
];

function restriction(t: KeystoneToken): AccessRestriction {
  const r = accessRestrictionOf(t);
  if (r === undefined) throw new Error("expected a restriction");
  return r;
}

const req = (method: string, url: string, hasServiceToken = false) => ({
  method,
  url,
  hasServiceToken,
});

describe("access rules, as keystonemiddleware's validate_allowed_request", () => {
  it("puts no restriction on tokens without an application credential or without rules", () => {
    expect(accessRestrictionOf(token(undefined))).toBeUndefined();
    expect(accessRestrictionOf(token({}))).toBeUndefined();
    expect(accessRestrictionOf(token({ id: "x", restricted: true }))).toBeUndefined();
    expect(accessRestrictionOf(token({ id: "x", access_rules: null }))).toBeUndefined();
  });

  it("allows exactly what a rule names: method, this service type, path", () => {
    const r = restriction(token({ id: "x", access_rules: rules }));
    const check = (method: string, url: string) => checkAccessRules(r, req(method, url), "compute");
    expect(check("GET", "/v2.1/servers")).toBeUndefined();
    expect(check("GET", "/v2.1/servers?all_tenants=1")).toBeUndefined();
    expect(check("GET", "/v2.1/servers/abc")).toBeUndefined();
    expect(check("POST", "/v2.1/servers/abc/action")).toBeUndefined();
    expect(check("GET", "/v2.1/servers/abc/ips")).toBe("no_matching_rule");
    expect(check("DELETE", "/v2.1/servers/abc")).toBe("no_matching_rule");
    expect(check("get", "/v2.1/servers")).toBe("no_matching_rule");
    expect(check("GET", "/v2.1/flavors")).toBe("no_matching_rule");
    // image rules do not apply to a compute service, even with a matching path
    expect(check("GET", "/v2/images/x")).toBe("no_matching_rule");
    expect(checkAccessRules(r, req("GET", "/v2/images/x/file"), "image")).toBe(
      "service_not_in_catalog",
    );
  });

  it("refuses without service_type, or when the catalog lacks it; a service token lets a chain through", () => {
    const r = restriction(token({ id: "x", access_rules: rules }));
    expect(checkAccessRules(r, req("GET", "/v2.1/servers"), undefined)).toBe("no_service_type");
    expect(checkAccessRules(r, req("GET", "/v2.1/servers"), "")).toBe("no_service_type");
    expect(checkAccessRules(r, req("GET", "/v2.1/servers"), "volumev3")).toBe(
      "service_not_in_catalog",
    );
    const noCatalog = restriction(token({ id: "x", access_rules: rules }, null));
    expect(checkAccessRules(noCatalog, req("GET", "/v2.1/servers"), "compute")).toBe(
      "service_not_in_catalog",
    );
    expect(checkAccessRules(r, req("DELETE", "/v2.1/anything", true), "compute")).toBeUndefined();
  });

  it("lets identity validate tokens whatever the rules", () => {
    const r = restriction(token({ id: "x", access_rules: [] }, []));
    expect(checkAccessRules(r, req("GET", "/v3/auth/tokens"), "identity")).toBeUndefined();
    expect(
      checkAccessRules(r, req("GET", "/identity/v3/auth/tokens?nocatalog"), "identity"),
    ).toBeUndefined();
    expect(checkAccessRules(r, req("HEAD", "/v3/auth/tokens"), "identity")).toBe(
      "service_not_in_catalog",
    );
  });

  it("refuses everything for malformed rules", () => {
    for (const bad of ["nope", [{ service: "compute", method: "GET" }], [null], {}]) {
      const r = restriction(token({ id: "x", access_rules: bad }));
      expect(checkAccessRules(r, req("GET", "/v2.1/servers", true), "compute")).toBe(
        "malformed_rules",
      );
    }
  });
});

describe("pathMatches, as keystonemiddleware's _path_matches", () => {
  it("reads * and {tag} as one segment, ** as anything, the rest as written", () => {
    expect(pathMatches("/v2/images/abc", "/v2/images/*")).toBe(true);
    expect(pathMatches("/v2/images/abc/file", "/v2/images/*")).toBe(false);
    expect(pathMatches("/v2/images/abc/file", "/v2/images/**")).toBe(true);
    expect(pathMatches("/v2/images/", "/v2/images/**")).toBe(true);
    expect(pathMatches("/v2/images/abc/file", "/v2/images/{id}/file")).toBe(true);
    expect(pathMatches("/v2/images//file", "/v2/images/{id}/file")).toBe(false);
    expect(pathMatches("/v2/images", "/v2/images/*")).toBe(false);
    // literals are inserted unescaped, as keystonemiddleware does: '.' matches any character
    expect(pathMatches("/v2x1/servers", "/v2.1/servers")).toBe(true);
    // Python's $ matches before a final newline
    expect(pathMatches("/v2.1/servers\n", "/v2.1/servers")).toBe(true);
    expect(pathMatches("/v2.1/servers/x", "/v2.1/servers")).toBe(false);
    // a pattern that is no valid expression matches nothing
    expect(pathMatches("/a(b", "/a(b")).toBe(false);
    // three stars: ** then *
    expect(pathMatches("/a/b/c", "/***")).toBe(true);
  });

  it("refuses when the rules cost more than the budget to try, whatever comes after", () => {
    const buster = `/v2.1/**a${".".repeat(60)}`;
    const many = Array.from({ length: 20 }, (_, k) => ({
      service: "compute",
      method: "GET",
      path: `${buster}${"x".repeat(k)}`,
    }));
    const r = restriction(
      token({
        id: "x",
        access_rules: [...many, { service: "compute", method: "GET", path: "/v2.1/**" }],
      }),
    );
    let path = "/v2.1/";
    let x = 3;
    while (path.length < 8000) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      path += x & 0x10000 ? "a" : "b";
    }
    expect(checkAccessRules(r, req("GET", path), "compute")).toBe("rules_too_costly");
    // the cheap rule alone lets it through; the costly ones on a short path too
    const cheap = restriction(
      token({ id: "x", access_rules: [{ service: "compute", method: "GET", path: "/v2.1/**" }] }),
    );
    expect(checkAccessRules(cheap, req("GET", path), "compute")).toBeUndefined();
    expect(checkAccessRules(r, req("GET", "/v2.1/abc"), "compute")).toBeUndefined();
  });

  it("answers the same once its compiled-pattern cache turns over, and under explicit bounds", () => {
    for (let round = 0; round < 2; round++) {
      for (let k = 0; k < COMPILED_PATTERN_CACHE_SIZE + 50; k++) {
        expect(pathMatches(`/v1/p${k}/x`, `/v1/p${k}/*`)).toBe(true);
        expect(pathMatches(`/v1/p${k}/x/y`, `/v1/p${k}/*`)).toBe(false);
      }
    }
    expect(pathMatches("/v1/abc", "/v1/**", { maxPathLength: 6 })).toBe(false);
    expect(pathMatches("/v1/abc", "/v1/**", { maxPathLength: 7 })).toBe(true);
    // the pattern of issue 13: a long path that does not match returns (no hang); a path
    // beyond the default 8 KiB bound matches nothing, even one the pattern would match
    const redos = "/v2.1/**/**/**/**/**/**/**/**/**/**/**/**/zzz";
    expect(pathMatches(`/v2.1${"/a".repeat(4093)}`, redos)).toBe(false);
    expect(pathMatches(`/v2.1${"/a".repeat(5000)}/zzz`, redos)).toBe(false);
    expect(pathMatches(`/v2.1${"/a".repeat(100)}/zzz`, redos)).toBe(true);
  });

  it("matches what webob's request.path holds: decoded, then quoted again", () => {
    const r = restriction(
      token({
        id: "x",
        access_rules: [
          { service: "compute", method: "GET", path: "/v1/my%20container/*" },
          { service: "compute", method: "GET", path: "/v1/caf%C3%A9" },
          { service: "compute", method: "GET", path: "/v1/servers/*" },
        ],
      }),
    );
    const check = (url: string) => checkAccessRules(r, req("GET", url), "compute");
    expect(check("/v1/my%20container/obj")).toBeUndefined();
    expect(check("/v1/my container/obj")).toBeUndefined();
    expect(check("/v1/caf%c3%a9")).toBeUndefined();
    expect(check("/v1/caf\u00c3\u00a9")).toBeUndefined();
    expect(check("/v1/servers%2Fabc")).toBeUndefined();
    // a decoded space is %20 again: '*' still sees one segment
    expect(check("/v1/servers/a%20b")).toBeUndefined();
    expect(check("/v1/servers/a%2Fb")).toBe("no_matching_rule");
  });

  it("refuses paths the services behind could read otherwise: dot segments, bad escapes, no UTF-8", () => {
    const r = restriction(
      token({ id: "x", access_rules: [{ service: "compute", method: "GET", path: "/v2.1/**" }] }),
    );
    const check = (url: string) => checkAccessRules(r, req("GET", url), "compute");
    expect(check("/v2.1/servers/x.y/..z")).toBeUndefined();
    for (const url of [
      "/v2.1/servers/../flavors",
      "/v2.1/servers/./x",
      "/v2.1/servers/%2e%2E/flavors",
      "/v2.1/servers/..",
      "/v2.1/servers/.?q=1",
      "/v2.1/servers%2F..%2Fx",
      "/v2.1/a%zz",
      "/v2.1/a%4",
      "/v2.1/a%",
      "/v2.1/%ff",
      "/v2.1/%ed%a0%80",
      "/v2.1/\u0100",
    ]) {
      expect(check(url), url).toBe("ambiguous_path");
    }
    // the identity exemption is judged on the same path
    const id = restriction(token({ id: "x", access_rules: [] }, []));
    expect(checkAccessRules(id, req("GET", "/x/../v3/auth/tokens"), "identity")).toBe(
      "ambiguous_path",
    );
  });

  it("computes request.path as webob does (keystonemiddleware's request class, CPython)", async () => {
    const fixed = [
      "/",
      "/v2.1/servers",
      "/v2.1/servers?x=1",
      "/a%2Fb",
      "/a%2fb",
      "/caf%C3%A9",
      "/caf\u00c3\u00a9",
      "/a+b",
      "/a%20b",
      "/a b",
      "/a%0Ab",
      "/a%00b",
      "/x%FF",
      "/x%C3",
      "/%F0%9F%98%80",
      "/%ED%A0%80",
      "/%C0%AF",
      "/a%25b",
      "/a'b(c)~!*$&+,;=:@",
      '/a"b<>`{}|^\\[]#',
      "/a%7E%41%2e",
      "/a//b",
      "/.a/b./...",
      "/\u007f\u0080\u00ff",
    ];
    const byte = fc.integer({ min: 0, max: 255 });
    const unit = fc.oneof(
      fc.constantFrom("/", "a", "Z", "9", ".", "-", "_", "~", "%", "+", " ", "?"),
      byte.map((b) => `%${b.toString(16).padStart(2, "0")}`),
      byte.map((b) => String.fromCharCode(b)),
    );
    const generated = fc.sample(
      fc.array(unit, { maxLength: 12 }).map((units) => `/${units.join("")}`),
      { numRuns: 2000, seed: 4242 },
    );
    const urls = [...fixed, ...generated].filter(
      (u) => requestPathOf(u) !== undefined || !isAmbiguousByDesign(u),
    );
    const out = (await runPythonJson([REFERENCE], { paths: urls.map((u) => wsgiPath(u)) })) as {
      paths: (string | null)[];
    };
    expect(out.paths).toHaveLength(urls.length);
    const mismatches = urls
      .map((url, i) => ({ url, edge: requestPathOf(url) ?? null, webob: out.paths[i] }))
      .filter((m) => m.edge !== m.webob);
    expect(mismatches.slice(0, 10)).toEqual([]);
    expect(urls.length).toBeGreaterThan(1000);
  });

  it("matches the WSGI path: no query, percent-decoded, Latin-1", () => {
    expect(wsgiPath("/v2.1/servers?x=1")).toBe("/v2.1/servers");
    expect(wsgiPath("/v2.1/servers%2Fabc")).toBe("/v2.1/servers/abc");
    expect(wsgiPath("/a%zz%4")).toBe("/a%zz%4");
    expect(wsgiPath("/caf%C3%A9")).toBe("/caf\u00c3\u00a9");
    expect(wsgiPath("/a+b")).toBe("/a+b");
  });
});

/**
 * Paths refused on purpose, whatever webob would say: dot segments (after decoding), bad
 * percent-escapes, characters beyond Latin-1 (see requestPathOf).
 */
function isAmbiguousByDesign(url: string): boolean {
  const q = url.indexOf("?");
  const raw = q === -1 ? url : url.slice(0, q);
  if (/%(?![0-9A-Fa-f]{2})/.test(raw) || /[\u0100-\uffff]/.test(raw)) return true;
  return wsgiPath(raw)
    .split("/")
    .some((segment) => segment === "." || segment === "..");
}
