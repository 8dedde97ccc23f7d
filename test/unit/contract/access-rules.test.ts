import { describe, expect, it } from "vitest";

import {
  accessRestrictionOf,
  checkAccessRules,
  pathMatches,
  wsgiPath,
  type AccessRestriction,
} from "../../../src/contract/access-rules.js";
import type { KeystoneToken } from "../../../src/keystone/token-body.js";

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

  it("matches the WSGI path: no query, percent-decoded, Latin-1", () => {
    expect(wsgiPath("/v2.1/servers?x=1")).toBe("/v2.1/servers");
    expect(wsgiPath("/v2.1/servers%2Fabc")).toBe("/v2.1/servers/abc");
    expect(wsgiPath("/a%zz%4")).toBe("/a%zz%4");
    expect(wsgiPath("/caf%C3%A9")).toBe("/caf\u00c3\u00a9");
    expect(wsgiPath("/a+b")).toBe("/a+b");
  });
});
