/**
 * Keystone's field formats.
 *
 * Owns: rendering a decoded token the way Keystone's `validate_token` returns it: Keystone's
 * field names, ids as strings, federated groups as `[{"id": …}]`, times as
 * `YYYY-MM-DDTHH:MM:SS.ffffffZ`, absent values as `null`.
 */
import type { Token } from "./decoder.js";

/**
 * Keystone's time format, `YYYY-MM-DDTHH:MM:SS.ffffffZ`. Keystone's `isotime` drops the
 * sub-second part before printing (`subsecond=True` only keeps the `.000000`), so the
 * fraction is always zero.
 */
export function keystoneTime(seconds: number): string {
  return `${new Date(Math.floor(seconds) * 1000).toISOString().slice(0, 19)}.000000Z`;
}

/** What `validate_token` returns, by Keystone's names, plus the payload version. */
export interface KeystoneTokenFields {
  user_id: string;
  methods: string[];
  audit_ids: string[];
  system: string | null;
  domain_id: string | null;
  project_id: string | null;
  trust_id: string | null;
  federated_group_ids: { id: string }[] | null;
  identity_provider_id: string | null;
  protocol_id: string | null;
  access_token_id: string | null;
  app_cred_id: string | null;
  issued_at: string;
  expires_at: string;
  payload_version: number;
  /** Only for payload version 10 (OAuth 2.0 credential tokens). */
  thumbprint?: string;
}

/** Renders `token` as Keystone's `validate_token` fields. */
export function renderKeystoneFields(token: Token): KeystoneTokenFields {
  const p = token.payload;
  const out: KeystoneTokenFields = {
    user_id: p.userId,
    methods: [...p.methods],
    audit_ids: [...p.auditIds],
    system: null,
    domain_id: null,
    project_id: null,
    trust_id: null,
    federated_group_ids: null,
    identity_provider_id: null,
    protocol_id: null,
    access_token_id: null,
    app_cred_id: null,
    issued_at: keystoneTime(token.issuedAtSeconds),
    expires_at: keystoneTime(token.expiresAtSeconds),
    payload_version: p.version,
  };
  switch (p.kind) {
    case "unscoped":
      break;
    case "domain":
      out.domain_id = p.domainId;
      break;
    case "project":
      out.project_id = p.projectId;
      break;
    case "trust":
      out.project_id = p.projectId;
      out.trust_id = p.trustId;
      break;
    case "federated-unscoped":
    case "federated-project":
    case "federated-domain":
      if (p.kind === "federated-project") out.project_id = p.projectId;
      if (p.kind === "federated-domain") out.domain_id = p.domainId;
      out.federated_group_ids = p.federation.groupIds.map((id) => ({ id }));
      out.identity_provider_id = p.federation.identityProviderId;
      out.protocol_id = p.federation.protocolId;
      break;
    case "oauth1":
      out.project_id = p.projectId;
      out.access_token_id = p.accessTokenId;
      break;
    case "system":
      out.system = p.system;
      break;
    case "application-credential":
      out.project_id = p.projectId;
      out.app_cred_id = p.appCredId;
      break;
    case "oauth2-credential":
      out.project_id = p.projectId;
      out.domain_id = p.domainId;
      out.thumbprint = p.thumbprint;
      break;
  }
  return out;
}
