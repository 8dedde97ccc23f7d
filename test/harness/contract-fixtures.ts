/**
 * Realistic `token` objects of Keystone's GET /v3/auth/tokens, shaped as
 * keystone/common/render_token.py builds them (key order included): every scope, trusts,
 * application credentials, federation, OAuth1, service tokens, and catalogs with several
 * services, interfaces and regions, edge-case regions and non-ASCII / astral names.
 */
import type { CatalogService, KeystoneToken } from "../../src/token/body.js";

const EXPIRES = "2099-01-01T00:00:00.000000Z";
const ISSUED = "2024-05-01T12:00:00.000000Z";

const DEFAULT_DOMAIN = { id: "default", name: "Default" } as const;
const ACME = { id: "5a7c3e0f9e7b4ad8b0c1d2e3f4a5b6c7", name: "Acme Ünïcødé" } as const;

/** A Keystone-shaped catalog: key order endpoints, id, type, name like get_v3_catalog. */
export const CATALOG: readonly CatalogService[] = [
  {
    endpoints: [
      {
        id: "e1",
        interface: "public",
        region_id: "RegionOne",
        url: "https://nova.example/v2.1",
        region: "RegionOne",
      },
      {
        id: "e2",
        interface: "internal",
        region_id: "RegionOne",
        url: "http://nova.internal:8774/v2.1",
        region: "RegionOne",
      },
      {
        id: "e3",
        interface: "admin",
        region_id: "RegionOne",
        url: "http://nova.admin:8774/v2.1",
        region: "RegionOne",
      },
      {
        id: "e4",
        interface: "public",
        region_id: "RegionTwo",
        url: "https://nova.two.example/v2.1",
        region: "RegionTwo",
      },
    ],
    id: "s-compute",
    type: "compute",
    name: "nova",
  },
  {
    endpoints: [
      {
        id: "e5",
        interface: "internal",
        region_id: "RegionTwo",
        url: "http://swift.two:8080/v1/AUTH_p",
        region: "RegionTwo",
      },
      {
        id: "e6",
        interface: "public",
        region_id: "RegionOne",
        url: "https://swift.example/v1/AUTH_p",
        region: "RegionOne",
      },
      {
        id: "e7",
        interface: "public",
        region_id: "RegionTwo",
        url: "https://swift.two.example/v1/AUTH_p",
        region: "RegionTwo",
      },
    ],
    id: "s-object",
    type: "object-store",
    name: "swift — 対象 😀",
  },
  {
    endpoints: [
      {
        id: "e8",
        interface: "public",
        region_id: null,
        url: "https://glance.example",
        region: null,
      },
      { id: "e9", interface: "Internal", url: "http://glance.internal:9292" },
      { id: "e10", interface: "admin", region_id: "", url: "http://glance.admin", region: "" },
      {
        id: "e11",
        interface: "public",
        region_id: null,
        url: "https://glance-2.example",
        region: null,
      },
    ],
    id: "s-image",
    type: "image",
  },
  { endpoints: [], id: "s-empty", type: "placement", name: "" },
  {
    endpoints: [
      {
        id: "e12",
        interface: "public",
        region_id: "Région-Ω",
        url: 'https://keystone.example/v3?x="q"&y=\\z',
        region: "Région-Ω",
      },
    ],
    id: "s-identity",
    type: "identity",
    name: "keystone",
  },
];

function user(id: string, name: string, domain: { id: string; name: string } = DEFAULT_DOMAIN) {
  return { domain, id, name, password_expires_at: null };
}

const ROLES = [
  { id: "r-reader", name: "reader" },
  { id: "r-member", name: "member" },
  { id: "r-admin", name: "admin" },
];

/** Project-scoped, Keystone with admin_project configured (is_admin_project present). */
export const PROJECT: KeystoneToken = {
  methods: ["password"],
  user: user("7d3f9a1c2b4e4f6a8c0d1e2f3a4b5c6d", "Jürgen Ñandú"),
  audit_ids: ["GGgSgA3DRS-CUo4CYEd1cA"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  project: { domain: ACME, id: "9438ea8b15eb47a2a2a29269380c8c38", name: "研究 project" },
  is_domain: false,
  roles: ROLES,
  is_admin_project: false,
  catalog: CATALOG,
};

/** Project-scoped, no admin project configured (Keystone omits is_admin_project). */
export const PROJECT_NO_ADMIN_FLAG: KeystoneToken = {
  methods: ["password", "totp"],
  user: user("u-plain", "alice"),
  audit_ids: ["a1", "a0"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  project: { domain: DEFAULT_DOMAIN, id: "p-admin", name: "admin" },
  is_domain: false,
  roles: [{ id: "r-admin", name: "admin" }],
  catalog: CATALOG,
};

/** Project-scoped, the admin project. */
export const PROJECT_ADMIN: KeystoneToken = { ...PROJECT_NO_ADMIN_FLAG, is_admin_project: true };

/** Project-scoped without a catalog (validated with ?nocatalog). */
export const PROJECT_NOCATALOG: KeystoneToken = (() => {
  const { catalog: _catalog, ...rest } = PROJECT;
  return rest;
})();

/** Domain-scoped. */
export const DOMAIN: KeystoneToken = {
  methods: ["password"],
  user: user("u-dom", "domain-admin", ACME),
  audit_ids: ["d1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  domain: ACME,
  roles: [{ id: "r-admin", name: "admin" }],
  catalog: [],
};

/** System-scoped. */
export const SYSTEM: KeystoneToken = {
  methods: ["password"],
  user: user("u-sys", "cloud-admin"),
  audit_ids: ["s1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  roles: [
    { id: "r-admin", name: "admin" },
    { id: "r-reader", name: "reader" },
  ],
  system: { all: true },
  catalog: CATALOG,
};

/** Unscoped: no roles, no catalog. */
export const UNSCOPED: KeystoneToken = {
  methods: ["password"],
  user: user("u-none", "nobody"),
  audit_ids: ["n1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
};

/** Trust-scoped with impersonation (the user is the trustor). */
export const TRUST: KeystoneToken = {
  methods: ["token", "password"],
  user: user("u-trustor", "trustor"),
  audit_ids: ["t1", "t0"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  "OS-TRUST:trust": {
    id: "trust-1",
    trustor_user: { id: "u-trustor" },
    trustee_user: { id: "u-trustee" },
    impersonation: true,
  },
  project: { domain: DEFAULT_DOMAIN, id: "p-heat", name: "heat-stack" },
  roles: [{ id: "r-member", name: "member" }],
  catalog: CATALOG.slice(0, 2),
};

/** Application credential, unrestricted, no access rules. */
export const APP_CRED: KeystoneToken = {
  methods: ["application_credential"],
  user: user("u-app", "app-owner"),
  audit_ids: ["ac1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  project: { domain: DEFAULT_DOMAIN, id: "p-app", name: "apps" },
  is_domain: false,
  roles: [{ id: "r-reader", name: "reader" }],
  catalog: CATALOG,
  application_credential: { id: "ac-1", name: "ci-bot", restricted: true },
};

/** Application credential with access rules (keystonemiddleware enforces them). */
export const APP_CRED_RULES: KeystoneToken = {
  ...APP_CRED,
  application_credential: {
    id: "ac-2",
    name: "restricted-bot",
    restricted: true,
    access_rules: [{ id: "rule-1", method: "GET", path: "/v2.1/servers", service: "compute" }],
  },
};

/** Federated user, project-scoped (no password_expires_at, OS-FEDERATION). */
export const FEDERATED: KeystoneToken = {
  methods: ["mapped"],
  user: {
    domain: { id: "fed-dom", name: "Federated" },
    id: "f3d1c0ffee",
    name: "ödön@idp.example",
    "OS-FEDERATION": {
      groups: [{ id: "g1" }],
      identity_provider: { id: "idp" },
      protocol: { id: "saml2" },
    },
  },
  audit_ids: ["f1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  project: { domain: DEFAULT_DOMAIN, id: "p-fed", name: "federated-work" },
  is_domain: false,
  roles: [{ id: "r-member", name: "member" }],
  catalog: [],
};

/** OAuth1-delegated, project-scoped. */
export const OAUTH1: KeystoneToken = {
  methods: ["oauth1"],
  user: user("u-oauth", "delegator"),
  audit_ids: ["o1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  project: { domain: DEFAULT_DOMAIN, id: "p-o", name: "oauth-project" },
  is_domain: false,
  roles: [{ id: "r-reader", name: "reader" }],
  catalog: CATALOG.slice(2),
  "OS-OAUTH1": { access_token_id: "at-1", consumer_id: "c-1" },
};

/** Project-scoped token of a service user holding `service`. */
export const SERVICE_PROJECT: KeystoneToken = {
  methods: ["password"],
  user: user("u-nova", "nova"),
  audit_ids: ["sv1"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  project: { domain: DEFAULT_DOMAIN, id: "p-service", name: "service" },
  is_domain: false,
  roles: [
    { id: "r-service", name: "service" },
    { id: "r-member", name: "member" },
  ],
  is_admin_project: false,
  catalog: CATALOG,
};

/** Same service user's token without the `service` role. */
export const SERVICE_NO_ROLE: KeystoneToken = {
  ...SERVICE_PROJECT,
  roles: [{ id: "r-member", name: "member" }],
};

/** A system-scoped service token (holding `service`). */
export const SERVICE_SYSTEM: KeystoneToken = {
  methods: ["password"],
  user: user("u-neutron", "neutron"),
  audit_ids: ["sv2"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  roles: [{ id: "r-service", name: "service" }],
  system: { all: true },
};

/** A domain-scoped service token (holding `service`). */
export const SERVICE_DOMAIN: KeystoneToken = {
  methods: ["password"],
  user: user("u-svc-dom", "svc-dom", ACME),
  audit_ids: ["sv3"],
  expires_at: EXPIRES,
  issued_at: ISSUED,
  domain: ACME,
  roles: [{ id: "r-service", name: "service" }],
};

/** Every user-token fixture by name. */
export const USER_TOKENS: Readonly<Record<string, KeystoneToken>> = {
  PROJECT,
  PROJECT_NO_ADMIN_FLAG,
  PROJECT_ADMIN,
  PROJECT_NOCATALOG,
  DOMAIN,
  SYSTEM,
  UNSCOPED,
  TRUST,
  APP_CRED,
  FEDERATED,
  OAUTH1,
};

/** Every service-token fixture by name. */
export const SERVICE_TOKENS: Readonly<Record<string, KeystoneToken>> = {
  SERVICE_PROJECT,
  SERVICE_NO_ROLE,
  SERVICE_SYSTEM,
  SERVICE_DOMAIN,
};
