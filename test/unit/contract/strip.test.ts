/**
 * The strip set is keystonemiddleware's own `_all_auth_headers()` (asked of the installed
 * keystonemiddleware) plus OpenStack-System-Scope, and isIdentityHeader catches every
 * spelling a WSGI server folds onto one of them.
 */
import { describe, expect, it } from "vitest";
import {
  IDENTITY_HEADERS,
  KEYSTONEMIDDLEWARE_STRIPPED,
  SYSTEM_SCOPE_HEADER,
  isIdentityHeader,
} from "../../../src/contract/strip.js";
import { KMW_HEADERS, runPythonJson } from "../../harness/kmw-python.js";

describe("identity header set", () => {
  it("is keystonemiddleware's _all_auth_headers(), in its order and casing", async () => {
    const out = (await runPythonJson([KMW_HEADERS], { mode: "all_auth_headers" })) as {
      all_auth_headers: string[];
    };
    expect(KEYSTONEMIDDLEWARE_STRIPPED).toEqual(out.all_auth_headers);
    expect(KEYSTONEMIDDLEWARE_STRIPPED).toHaveLength(31);
  });

  it("holds the 32 contract §6 names, lower-case", () => {
    const ten = [
      "domain-id",
      "domain-name",
      "project-id",
      "project-name",
      "project-domain-id",
      "project-domain-name",
      "user-id",
      "user-name",
      "user-domain-id",
      "user-domain-name",
    ];
    const expected = [
      "x-identity-status",
      "x-service-identity-status",
      ...ten.map((n) => `x-${n}`),
      ...ten.map((n) => `x-service-${n}`),
      "x-roles",
      "x-service-roles",
      "x-service-catalog",
      "x-is-admin-project",
      "x-role",
      "x-user",
      "x-tenant-id",
      "x-tenant-name",
      "x-tenant",
      "openstack-system-scope",
    ];
    expect([...IDENTITY_HEADERS].sort()).toEqual(expected.sort());
    expect(IDENTITY_HEADERS.has(SYSTEM_SCOPE_HEADER.toLowerCase())).toBe(true);
  });

  it("is read-only from the outside", () => {
    expect(Object.isFrozen(KEYSTONEMIDDLEWARE_STRIPPED)).toBe(true);
  });
});

describe("isIdentityHeader", () => {
  it("accepts every identity header", () => {
    for (const name of IDENTITY_HEADERS) expect(isIdentityHeader(name)).toBe(true);
  });

  it("accepts the underscore spellings a WSGI server maps onto the same environ key", () => {
    for (const name of [
      "x_roles",
      "x-user_id",
      "x_user-id",
      "x_service_project_domain_name",
      "openstack_system_scope",
      "x_identity_status",
      "x-service_catalog",
    ]) {
      expect(isIdentityHeader(name), name).toBe(true);
    }
  });

  it("leaves the tokens and ordinary headers alone (services need X-Auth-Token)", () => {
    for (const name of [
      "x-auth-token",
      "x-service-token",
      "x-storage-token",
      "x-subject-token",
      "content-type",
      "x-roles-extra",
      "x-rolesx",
      "x-project",
      "x-user-domain",
      "openstack-api-version",
      "",
    ]) {
      expect(isIdentityHeader(name), name).toBe(false);
    }
  });

  it("expects lower-case input (the proxy lower-cases once)", () => {
    expect(isIdentityHeader("X-Roles")).toBe(false);
  });
});
