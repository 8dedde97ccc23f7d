/**
 * The edge's own Keystone token: a background loop.
 *
 * Owns: authenticating as the configured service user (password or application
 * credential) at start, renewing before expiry, re-authenticating once when Keystone says
 * the token is no longer good (a 401 on a validation), and backing off while Keystone is
 * away. The request path only calls `current()`; it never waits for a renewal unless there
 * is no token at all, and never starts one while a failed authentication's back-off runs:
 * with credentials Keystone refuses (a changed password, a disabled user), one login per
 * request would hammer Keystone and lock the service user out where Keystone locks
 * accounts after failed logins. The background retry (500 ms doubling to 30 s) tries again.
 */
import type { Config } from "../config/schema.js";
import { silentLogger, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import type { KeystoneEndpoint } from "./endpoint.js";

/** Where the service token stands. */
export type ServiceTokenState =
  | {
      readonly kind: "none";
      readonly lastError?: string;
      /** When the last token (now lost: refused or expired) was obtained; none yet: absent. */
      readonly lastObtainedAtMs?: number;
    }
  | {
      readonly kind: "valid";
      readonly token: string;
      readonly expiresAtMs: number;
      readonly obtainedAtMs: number;
    };

/** Options of {@link ServiceToken}. */
export interface ServiceTokenOptions {
  readonly auth: Config["keystone"]["auth"];
  /** Tried in order until one answers. */
  readonly endpoints: () => readonly KeystoneEndpoint[];
  /** Renew when this fraction of the token's life has passed. Default 0.75. */
  readonly renewAtFraction?: number;
  /** Back-off after a failed authentication: first step and cap. Default 500 ms → 30 s. */
  readonly retryMinMs?: number;
  readonly retryMaxMs?: number;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

export class ServiceToken {
  private state: ServiceTokenState = { kind: "none" };
  private inFlight: Promise<ServiceTokenState> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private retryMs: number;
  /** After a failed authentication, requests start none before this (epoch ms). */
  private retryAtMs = -Infinity;
  private closed = false;
  private readonly clock: Clock;
  private readonly logger: Logger;

  constructor(private readonly options: ServiceTokenOptions) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.retryMs = options.retryMinMs ?? 500;
  }

  /** The token to send as `X-Auth-Token`, if there is one. */
  current(): string | undefined {
    const s = this.state;
    return s.kind === "valid" && s.expiresAtMs > this.clock.nowMs() ? s.token : undefined;
  }

  snapshot(): ServiceTokenState {
    return this.state;
  }

  /** Authenticates now (shared by concurrent callers) and schedules the renewal. */
  refresh(): Promise<ServiceTokenState> {
    this.inFlight ??= this.authenticate().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  /**
   * Keystone refused `token` (401): re-authenticate, unless a newer token has already
   * replaced it, or a re-authentication already failed and its back-off runs. Resolves to
   * the token to retry with, if any.
   */
  async rejected(token: string): Promise<string | undefined> {
    const s = this.state;
    if (s.kind === "valid" && s.token !== token && s.expiresAtMs > this.clock.nowMs())
      return s.token;
    if (s.kind === "valid") {
      this.state = {
        kind: "none",
        lastError: "Keystone refused the service token",
        lastObtainedAtMs: s.obtainedAtMs,
      };
    }
    return this.ensure();
  }

  /**
   * The token, waiting for an authentication only when there is none — joining one under
   * way, or starting one unless a failed one's back-off runs (then: none, at once).
   */
  async ensure(): Promise<string | undefined> {
    const token = this.current();
    if (token !== undefined) return token;
    if (this.inFlight === undefined && this.clock.nowMs() < this.retryAtMs) return undefined;
    await this.refresh();
    return this.current();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private body(): string {
    const a = this.options.auth;
    if (a.type === "application_credential") {
      return JSON.stringify({
        auth: {
          identity: {
            methods: ["application_credential"],
            application_credential: {
              id: a.application_credential_id,
              secret: a.application_credential_secret,
            },
          },
        },
      });
    }
    const user =
      a.user_id !== undefined
        ? { id: a.user_id, password: a.password }
        : {
            name: a.username,
            password: a.password,
            domain:
              a.user_domain_name !== undefined
                ? { name: a.user_domain_name }
                : { id: a.user_domain_id ?? "default" },
          };
    const project =
      a.project_id !== undefined
        ? { id: a.project_id }
        : {
            name: a.project_name,
            domain:
              a.project_domain_name !== undefined
                ? { name: a.project_domain_name }
                : { id: a.project_domain_id ?? "default" },
          };
    return JSON.stringify({
      auth: { identity: { methods: ["password"], password: { user } }, scope: { project } },
    });
  }

  private async authenticate(): Promise<ServiceTokenState> {
    let lastError = "no Keystone endpoint configured";
    for (const endpoint of this.options.endpoints()) {
      const outcome = await endpoint.call({
        method: "POST",
        path: "/auth/tokens?nocatalog",
        body: this.body(),
      });
      if (outcome.kind === "failed") {
        lastError = `${endpoint.url}: ${outcome.reason} (${outcome.detail})`;
        continue;
      }
      const subject = outcome.headers["x-subject-token"];
      if (outcome.status === 201 && typeof subject === "string") {
        const expiresAtMs = parseExpiry(outcome.body);
        if (expiresAtMs === undefined) {
          lastError = `${endpoint.url}: token response without expires_at`;
          continue;
        }
        const now = this.clock.nowMs();
        this.state = { kind: "valid", token: subject, expiresAtMs, obtainedAtMs: now };
        this.retryMs = this.options.retryMinMs ?? 500;
        this.retryAtMs = -Infinity;
        const renewIn = Math.max(
          1_000,
          (expiresAtMs - now) * (this.options.renewAtFraction ?? 0.75),
        );
        this.schedule(renewIn);
        this.logger.info("service token obtained", {
          endpoint: endpoint.url,
          expires_at: new Date(expiresAtMs).toISOString(),
        });
        return this.state;
      }
      lastError = `${endpoint.url}: HTTP ${outcome.status}`;
      if (outcome.status === 401 || outcome.status === 403) break; // wrong credentials: no point elsewhere
    }
    const previous = this.state;
    if (previous.kind !== "valid" || previous.expiresAtMs <= this.clock.nowMs()) {
      const lastObtainedAtMs =
        previous.kind === "valid" ? previous.obtainedAtMs : previous.lastObtainedAtMs;
      this.state =
        lastObtainedAtMs === undefined
          ? { kind: "none", lastError }
          : { kind: "none", lastError, lastObtainedAtMs };
    }
    this.logger.warn("service token authentication failed", {
      error: lastError,
      retry_ms: this.retryMs,
    });
    this.schedule(this.retryMs);
    this.retryAtMs = this.clock.nowMs() + this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, this.options.retryMaxMs ?? 30_000);
    return this.state;
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), delayMs);
    this.timer.unref();
  }
}

function parseExpiry(body: string): number | undefined {
  try {
    const parsed = JSON.parse(body) as { token?: { expires_at?: unknown } };
    const at = parsed.token?.expires_at;
    if (typeof at !== "string") return undefined;
    const ms = Date.parse(at);
    return Number.isNaN(ms) ? undefined : ms;
  } catch {
    return undefined;
  }
}
