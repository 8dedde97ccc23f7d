/**
 * The audit log of one configuration: what a line says of each authentication decision.
 *
 * Owns: opening the `audit_log` file (audit/audit-log.ts writes it, off the request path),
 * sampling decisions at `audit_log.sample_ratio` before anything is computed for them, and
 * the mapping from a request's outcome — the proxy's or the Identity face's token API's —
 * to an audit line: who (user, scope), what (method, path without its query), the verdict
 * and why, the tier that settled it, how long it took, the service's or the face's request
 * id, and the token as its short hash only. Drops are counted in
 * `keystone_edge_audit_dropped_total`.
 */
import { AuditLog, type AuditRecord, type AuditTier } from "../audit/audit-log.js";
import type { EdgeMetrics } from "../admin/metrics.js";
import type { Config } from "../config/schema.js";
import type { TokenDecision } from "../identity/server.js";
import { tokenHash, type Logger } from "../log.js";
import type { RequestOutcome } from "../proxy/server.js";
import type { Verdict } from "../validation/pipeline.js";

/** Records decisions; see the module comment. */
export interface AuditTrail {
  /** One request of the proxy, once it is over. */
  proxy(outcome: RequestOutcome): void;
  /** One `GET`/`HEAD /v3/auth/tokens` of the Identity face. */
  identity(decision: TokenDecision): void;
  close(): Promise<void>;
}

/** The verdict's part of an audit line: why, which tier, who and what scope. */
function fromVerdict(
  verdict: Verdict | undefined,
): Pick<AuditRecord, "reason" | "tier" | "user_id" | "project_id" | "domain_id" | "system"> {
  if (verdict === undefined) return {};
  if (verdict.kind === "unavailable") return { reason: verdict.reason };
  const tier: AuditTier = verdict.source;
  if (verdict.kind === "invalid") return { reason: verdict.code, tier };
  const t = verdict.token;
  return {
    tier,
    user_id: t.user.id,
    project_id: t.project?.id,
    domain_id: t.domain?.id,
    system: t.system === undefined ? undefined : t.system.all === true ? "all" : "other",
  };
}

/** The Identity face's outcome label for a token API answer. */
function identityOutcome(status: number): string {
  switch (status) {
    case 200:
      return "valid";
    case 401:
      return "invalid_caller";
    case 403:
      return "forbidden";
    case 404:
      return "invalid";
    case 503:
      return "unavailable";
    default:
      return String(status);
  }
}

/** The audit trail of `config`, or undefined when `audit_log.path` is not set. */
export async function openAuditTrail(
  config: Readonly<Config>,
  metrics: EdgeMetrics,
  logger: Logger,
): Promise<AuditTrail | undefined> {
  const options = config.audit_log;
  if (options.path === undefined) return undefined;
  const log = await AuditLog.open({
    path: options.path,
    // Sampled here, before a token is hashed for a line that would not be written.
    sampleRatio: 1,
    maxBufferedBytes: options.max_buffered_bytes,
    logger,
    onDrop: (count) => {
      metrics.auditDropped.inc(count);
    },
  });
  const ratio = options.sample_ratio;
  const sampled = (): boolean => ratio >= 1 || (ratio > 0 && Math.random() < ratio);
  return {
    proxy(o) {
      // Refused by the client limits: no authentication decision was taken.
      if (o.auth === "refused" || o.method === undefined || !sampled()) return;
      log.record({
        request_id: o.requestId,
        listener: "proxy",
        method: o.method,
        path: o.target ?? "",
        status: o.status,
        outcome: o.auth,
        ...fromVerdict(o.user),
        token: o.userToken === undefined ? undefined : tokenHash(o.userToken),
        latency_ms: o.authMs ?? o.durationMs,
      });
    },
    identity(d) {
      if (!sampled()) return;
      log.record({
        request_id: d.requestId,
        listener: "identity",
        method: d.method,
        path: d.path,
        status: d.status,
        outcome: identityOutcome(d.status),
        ...fromVerdict(d.subject),
        token: d.subjectToken === undefined ? undefined : tokenHash(d.subjectToken),
        latency_ms: d.latencyMs,
      });
    },
    close: () => log.close(),
  };
}
