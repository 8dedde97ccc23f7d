/**
 * Keystone's answer to `GET /v3/auth/tokens`: the `token` object, typed.
 *
 * Owns: the shape of a validated token's context as Keystone returns it (contract §5). The
 * caches store it, the header contract reads it (as keystonemiddleware reads its
 * `AccessInfoV3`), and the regional Keystone face returns it. Fields Keystone may add in
 * later releases pass through untouched (`[key: string]: unknown`).
 */

export interface NamedRef {
  readonly id: string;
  readonly name: string;
}

export interface DomainRef extends NamedRef {
  readonly [key: string]: unknown;
}

export interface ProjectRef extends NamedRef {
  readonly domain: DomainRef;
  readonly [key: string]: unknown;
}

export interface CatalogEndpoint {
  readonly id?: string;
  readonly interface: string;
  readonly region?: string | null;
  readonly region_id?: string | null;
  readonly url: string;
  readonly [key: string]: unknown;
}

export interface CatalogService {
  readonly id?: string;
  readonly type: string;
  readonly name?: string;
  readonly endpoints: readonly CatalogEndpoint[];
  readonly [key: string]: unknown;
}

export interface KeystoneToken {
  readonly methods: readonly string[];
  readonly user: {
    readonly id: string;
    readonly name: string;
    readonly domain: DomainRef;
    readonly password_expires_at?: string | null;
    readonly "OS-FEDERATION"?: unknown;
    readonly [key: string]: unknown;
  };
  readonly audit_ids: readonly string[];
  readonly expires_at: string;
  readonly issued_at: string;
  readonly project?: ProjectRef;
  readonly domain?: DomainRef;
  readonly system?: { readonly all?: boolean; readonly [key: string]: unknown };
  readonly roles?: readonly NamedRef[];
  readonly catalog?: readonly CatalogService[];
  readonly is_domain?: boolean;
  /** Absent when Keystone has no admin project configured. */
  readonly is_admin_project?: boolean;
  readonly "OS-TRUST:trust"?: unknown;
  readonly application_credential?: unknown;
  readonly [key: string]: unknown;
}

/** A light shape check of an authenticated entry: what the header contract relies on. */
export function isKeystoneToken(value: unknown): value is KeystoneToken {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  const user = v["user"];
  return (
    typeof user === "object" &&
    user !== null &&
    typeof (user as Record<string, unknown>)["id"] === "string" &&
    Array.isArray(v["methods"]) &&
    typeof v["expires_at"] === "string"
  );
}
