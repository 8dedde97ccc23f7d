/**
 * The identity headers for every scope and token combination, spelled out (each expectation
 * was read off keystonemiddleware itself; test/integration/contract-kmw.test.ts re-checks
 * them all against it mechanically).
 */
import { describe, expect, it } from "vitest";
import { serviceCatalogHeaderValue } from "../../../src/contract/catalog.js";
import {
  INVALID,
  PreparedToken,
  injectHeaders,
  invalidIdentityHeaders,
  serviceHeaders,
  serviceTokenRolesMatch,
  userHeaders,
  type HeaderPair,
  type InjectOptions,
  type TokenState,
} from "../../../src/contract/inject.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import {
  APP_CRED,
  CATALOG,
  DOMAIN,
  FEDERATED,
  PROJECT,
  PROJECT_ADMIN,
  PROJECT_NOCATALOG,
  PROJECT_NO_ADMIN_FLAG,
  SERVICE_DOMAIN,
  SERVICE_NO_ROLE,
  SERVICE_PROJECT,
  SERVICE_SYSTEM,
  SYSTEM,
  TRUST,
  UNSCOPED,
} from "../../harness/contract-fixtures.js";

const DEFAULTS: InjectOptions = {
  includeServiceCatalog: true,
  serviceTokenRoles: ["service"],
  serviceTokenRolesRequired: false,
};
const REQUIRED: InjectOptions = { ...DEFAULTS, serviceTokenRolesRequired: true };

function asObject(pairs: readonly HeaderPair[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of pairs) {
    expect(out, `duplicate ${name}`).not.toHaveProperty(name);
    out[name] = value;
  }
  return out;
}

function headersOf(user: KeystoneToken, options: InjectOptions = DEFAULTS) {
  return asObject(injectHeaders(user, null, options).headers);
}

describe("user token headers by scope", () => {
  it("project scope: project and its domain, user, roles in Keystone's order, deprecated copies", () => {
    expect(headersOf(PROJECT)).toEqual({
      "X-Identity-Status": "Confirmed",
      "X-Roles": "reader,member,admin",
      "X-Project-Id": "9438ea8b15eb47a2a2a29269380c8c38",
      "X-Project-Name": "研究 project",
      "X-Project-Domain-Id": "5a7c3e0f9e7b4ad8b0c1d2e3f4a5b6c7",
      "X-Project-Domain-Name": "Acme Ünïcødé",
      "X-User-Id": "7d3f9a1c2b4e4f6a8c0d1e2f3a4b5c6d",
      "X-User-Name": "Jürgen Ñandú",
      "X-User-Domain-Id": "default",
      "X-User-Domain-Name": "Default",
      "X-Is-Admin-Project": "False",
      "X-Role": "reader,member,admin",
      "X-User": "Jürgen Ñandú",
      "X-Tenant-Id": "9438ea8b15eb47a2a2a29269380c8c38",
      "X-Tenant-Name": "研究 project",
      "X-Tenant": "研究 project",
      "X-Service-Catalog": serviceCatalogHeaderValue(CATALOG),
    });
  });

  it("X-Is-Admin-Project: True when Keystone omits the field or says true, False when false", () => {
    expect(headersOf(PROJECT_NO_ADMIN_FLAG)["X-Is-Admin-Project"]).toBe("True");
    expect(headersOf(PROJECT_ADMIN)["X-Is-Admin-Project"]).toBe("True");
    expect(headersOf(PROJECT)["X-Is-Admin-Project"]).toBe("False");
    // token.get('is_admin_project', True): an explicit JSON null is falsy
    const nullFlag = { ...PROJECT, is_admin_project: null } as unknown as KeystoneToken;
    expect(headersOf(nullFlag)["X-Is-Admin-Project"]).toBe("False");
  });

  it("domain scope: X-Domain-*, no X-Project-*/X-Tenant-* at all (keystonemiddleware sets None)", () => {
    expect(headersOf(DOMAIN)).toEqual({
      "X-Identity-Status": "Confirmed",
      "X-Roles": "admin",
      "X-Domain-Id": "5a7c3e0f9e7b4ad8b0c1d2e3f4a5b6c7",
      "X-Domain-Name": "Acme Ünïcødé",
      "X-User-Id": "u-dom",
      "X-User-Name": "domain-admin",
      "X-User-Domain-Id": "5a7c3e0f9e7b4ad8b0c1d2e3f4a5b6c7",
      "X-User-Domain-Name": "Acme Ünïcødé",
      "X-Is-Admin-Project": "True",
      "X-Role": "admin",
      "X-User": "domain-admin",
      "X-Service-Catalog": "[]",
    });
  });

  it("system scope: OpenStack-System-Scope: all, neither project nor domain", () => {
    const h = headersOf(SYSTEM);
    expect(h).toMatchObject({
      "OpenStack-System-Scope": "all",
      "X-Roles": "admin,reader",
      "X-Is-Admin-Project": "True",
    });
    for (const name of ["X-Project-Id", "X-Domain-Id", "X-Tenant-Id", "X-Project-Name"]) {
      expect(h).not.toHaveProperty(name);
    }
  });

  it("unscoped: empty X-Roles and X-Role, no catalog (Keystone sends none)", () => {
    expect(headersOf(UNSCOPED)).toEqual({
      "X-Identity-Status": "Confirmed",
      "X-Roles": "",
      "X-User-Id": "u-none",
      "X-User-Name": "nobody",
      "X-User-Domain-Id": "default",
      "X-User-Domain-Name": "Default",
      "X-Is-Admin-Project": "True",
      "X-Role": "",
      "X-User": "nobody",
    });
  });

  it("trust, application credential, federated: plain project-scoped headers, nothing extra", () => {
    expect(headersOf(TRUST)).toMatchObject({
      "X-User-Id": "u-trustor",
      "X-Project-Id": "p-heat",
      "X-Roles": "member",
      "X-Is-Admin-Project": "True",
    });
    expect(headersOf(APP_CRED)).toMatchObject({ "X-Project-Name": "apps", "X-Roles": "reader" });
    expect(headersOf(FEDERATED)).toMatchObject({
      "X-User-Name": "ödön@idp.example",
      "X-User-Domain-Id": "fed-dom",
      "X-Service-Catalog": "[]",
    });
  });

  it("catalog only when asked for and present", () => {
    const off = { ...DEFAULTS, includeServiceCatalog: false };
    expect(headersOf(PROJECT, off)).not.toHaveProperty("X-Service-Catalog");
    expect(headersOf(PROJECT_NOCATALOG)).not.toHaveProperty("X-Service-Catalog");
    expect(headersOf(PROJECT_NOCATALOG, off)).toEqual(headersOf(PROJECT_NOCATALOG));
  });
});

describe("service tokens", () => {
  it("a valid service token alone: X-Identity-Status Invalid + X-Service-*, not authenticated", () => {
    const result = injectHeaders(null, SERVICE_PROJECT, REQUIRED);
    expect(result.authenticated).toBe(false);
    expect(asObject(result.headers)).toEqual({
      "X-Identity-Status": "Invalid",
      "X-Service-Identity-Status": "Confirmed",
      "X-Service-Roles": "service,member",
      "X-Service-Project-Id": "p-service",
      "X-Service-Project-Name": "service",
      "X-Service-Project-Domain-Id": "default",
      "X-Service-Project-Domain-Name": "Default",
      "X-Service-User-Id": "u-nova",
      "X-Service-User-Name": "nova",
      "X-Service-User-Domain-Id": "default",
      "X-Service-User-Domain-Name": "Default",
    });
  });

  it("with a user token: both sets, no X-Service-Is-Admin-Project or service catalog", () => {
    const result = injectHeaders(PROJECT, SERVICE_PROJECT, REQUIRED);
    expect(result.authenticated).toBe(true);
    const h = asObject(result.headers);
    expect(h).toMatchObject({ ...headersOf(PROJECT), "X-Service-Identity-Status": "Confirmed" });
    // status, roles, 4 project + 4 user headers; X-Service-Catalog is the user's catalog
    expect(Object.keys(h).filter((n) => n.startsWith("X-Service-"))).toEqual([
      "X-Service-Catalog",
      "X-Service-Identity-Status",
      "X-Service-Roles",
      "X-Service-Project-Id",
      "X-Service-Project-Name",
      "X-Service-Project-Domain-Id",
      "X-Service-Project-Domain-Name",
      "X-Service-User-Id",
      "X-Service-User-Name",
      "X-Service-User-Domain-Id",
      "X-Service-User-Domain-Name",
    ]);
  });

  it("without a required role: X-Service-Identity-Status Invalid, no X-Service-* and a 401", () => {
    const result = injectHeaders(PROJECT, SERVICE_NO_ROLE, REQUIRED);
    expect(result.authenticated).toBe(false);
    expect(asObject(result.headers)).toEqual({
      ...headersOf(PROJECT),
      "X-Service-Identity-Status": "Invalid",
    });
  });

  it("without a role but roles not required (the default): counts anyway", () => {
    const result = injectHeaders(PROJECT, SERVICE_NO_ROLE, DEFAULTS);
    expect(result.authenticated).toBe(true);
    expect(asObject(result.headers)["X-Service-Identity-Status"]).toBe("Confirmed");
    expect(serviceTokenRolesMatch(SERVICE_NO_ROLE, ["service"])).toBe(false);
    expect(serviceTokenRolesMatch(SERVICE_PROJECT, ["admin", "service"])).toBe(true);
    expect(serviceTokenRolesMatch(SERVICE_PROJECT, [])).toBe(false);
  });

  it("an invalid service token invalidates the request even with a valid user token", () => {
    const result = injectHeaders(PROJECT, INVALID, DEFAULTS);
    expect(result.authenticated).toBe(false);
    expect(asObject(result.headers)["X-Service-Identity-Status"]).toBe("Invalid");
  });

  it("a domain-scoped service token sets X-Service-Domain-*", () => {
    const h = asObject(injectHeaders(PROJECT, SERVICE_DOMAIN, REQUIRED).headers);
    expect(h).toMatchObject({
      "X-Service-Domain-Id": ACME_ID,
      "X-Service-Domain-Name": "Acme Ünïcødé",
    });
    expect(h).not.toHaveProperty("X-Service-Project-Id");
  });

  it("OpenStack-System-Scope follows the service token once one counts (keystonemiddleware quirk)", () => {
    const userSystem = asObject(injectHeaders(SYSTEM, SERVICE_PROJECT, REQUIRED).headers);
    expect(userSystem).not.toHaveProperty("OpenStack-System-Scope");
    const serviceSystem = asObject(injectHeaders(PROJECT, SERVICE_SYSTEM, REQUIRED).headers);
    expect(serviceSystem["OpenStack-System-Scope"]).toBe("all");
    expect(serviceSystem["X-Project-Id"]).toBe(PROJECT.project?.id);
    // a service token that does not count leaves the user's alone
    const notCounting = asObject(injectHeaders(SYSTEM, SERVICE_NO_ROLE, REQUIRED).headers);
    expect(notCounting["OpenStack-System-Scope"]).toBe("all");
  });
});

describe("invalid and missing tokens", () => {
  it("invalidIdentityHeaders", () => {
    expect(invalidIdentityHeaders()).toEqual([["X-Identity-Status", "Invalid"]]);
    expect(invalidIdentityHeaders(true)).toEqual([
      ["X-Identity-Status", "Invalid"],
      ["X-Service-Identity-Status", "Invalid"],
    ]);
  });

  it("injectHeaders agrees for missing / invalid user tokens", () => {
    for (const user of [null, INVALID] as const) {
      expect(injectHeaders(user, null, DEFAULTS)).toEqual({
        authenticated: false,
        headers: invalidIdentityHeaders(),
      });
      expect(injectHeaders(user, INVALID, DEFAULTS)).toEqual({
        authenticated: false,
        headers: invalidIdentityHeaders(true),
      });
      expect(injectHeaders(user, SERVICE_NO_ROLE, REQUIRED).headers).toEqual(
        invalidIdentityHeaders(true),
      );
    }
  });
});

describe("prepared tokens (the hot path)", () => {
  it("are frozen all the way down and reused as is for a user token alone", () => {
    const prepared = new PreparedToken(PROJECT, true);
    expect(Object.isFrozen(prepared)).toBe(true);
    expect(Object.isFrozen(prepared.user)).toBe(true);
    expect(prepared.user.every((p) => Object.isFrozen(p))).toBe(true);
    expect(injectHeaders(prepared, null, DEFAULTS).headers).toBe(prepared.user);
    expect(prepared.user).toEqual(userHeaders(PROJECT, true));
    expect(prepared.service).toEqual(serviceHeaders(PROJECT));
  });

  it("give the same headers as raw tokens in every combination", () => {
    const users = [null, INVALID, PROJECT, DOMAIN, SYSTEM, UNSCOPED] as const;
    const services = [null, INVALID, SERVICE_PROJECT, SERVICE_NO_ROLE, SERVICE_SYSTEM] as const;
    for (const options of [DEFAULTS, REQUIRED, { ...DEFAULTS, includeServiceCatalog: false }]) {
      for (const user of users) {
        for (const service of services) {
          const prep = (t: KeystoneToken | TokenState) =>
            t === null || t === INVALID
              ? t
              : new PreparedToken(
                  t instanceof PreparedToken ? t.token : t,
                  options.includeServiceCatalog,
                );
          expect(injectHeaders(prep(user), prep(service), options)).toEqual(
            injectHeaders(user, service, options),
          );
        }
      }
    }
  });

  it("a token prepared with the other catalog setting is re-prepared, not misused", () => {
    const prepared = new PreparedToken(PROJECT, false);
    const h = asObject(injectHeaders(prepared, null, DEFAULTS).headers);
    expect(h).toHaveProperty("X-Service-Catalog");
  });
});

const ACME_ID = "5a7c3e0f9e7b4ad8b0c1d2e3f4a5b6c7";
