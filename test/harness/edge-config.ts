/**
 * Owns: the configuration documents tests give an in-process keystone-edge for the harness
 * Keystone, so each test states only what it varies (upstream, service user, cache).
 */
import type { KeystoneInfo } from "./client.js";

/** A user authenticating with a password, scoped to a project, both in the default domain. */
export interface PasswordUser {
  readonly name: string;
  readonly password: string;
  readonly project: string;
}

/** The harness's admin user (admin role on project `admin`). */
export function adminUser(info: KeystoneInfo): PasswordUser {
  return { name: info.adminUsername, password: info.adminPassword, project: "admin" };
}

/** `keystone.auth` for `user`. */
export function passwordAuth(user: PasswordUser) {
  return {
    type: "password",
    username: user.name,
    password: user.password,
    user_domain_id: "default",
    project_name: user.project,
    project_domain_id: "default",
  } as const;
}

/** A configuration document (validate it with `validateConfig`) on free loopback ports. */
export function edgeConfigDocument(
  info: KeystoneInfo,
  options: {
    readonly upstream: string;
    readonly user: PasswordUser;
    /** Default 10 000 ms. */
    readonly timeoutMs?: number;
    readonly cache?: Record<string, unknown>;
    readonly authToken?: Record<string, unknown>;
    /** More `keystone` options (endpoints, breakers, feed), over the defaults here. */
    readonly keystone?: Record<string, unknown>;
    /**
     * `shadow_validation`. Default off (`sample_ratio: 0`): tests that count the master's
     * calls count exactly.
     */
    readonly shadowValidation?: Record<string, unknown>;
  },
): Record<string, unknown> {
  return {
    listen: "127.0.0.1:0",
    upstream: options.upstream,
    admin_listen: "127.0.0.1:0",
    keystone: {
      www_authenticate_uri: info.url,
      timeout_ms: options.timeoutMs ?? 10_000,
      auth: passwordAuth(options.user),
      ...options.keystone,
    },
    fernet: { key_repository: info.keyRepository, auth_methods: info.authMethods },
    ...(options.cache ? { cache: options.cache } : {}),
    ...(options.authToken ? { auth_token: options.authToken } : {}),
    shadow_validation: options.shadowValidation ?? { sample_ratio: 0 },
  };
}
