/**
 * The admin API: the operations that change the edge's state.
 *
 * Owns: authorising and running mutating admin requests. Every one needs
 * `Authorization: Bearer <admin_secret>`, compared in constant time (SHA-256 of both sides,
 * then `timingSafeEqual`, so neither the secret's length nor its prefix leaks); without
 * `admin_secret` configured the API is off (404), never open. A missing or wrong secret is
 * 401 with `WWW-Authenticate: Bearer`; only POST is accepted. The secret is never logged.
 * Every error body is `{ code, error }`: a stable code and a message for people.
 *
 * Routes (parameters in the query string; no request body is read):
 * - `POST /cache/flush` drops the in-process token entries and contexts (memcached
 *   entries, shared with the region, age out by themselves);
 * - `POST /drill/start?scenario=S&duration_seconds=N[&endpoint=NAME]` injects a drill's
 *   faults (drill/faults.ts) until they expire by themselves; 409 while another runs;
 * - `POST /drill/stop[?id=ID]` releases them sooner;
 * - `POST /drill/validate?from=TIER` validates the `X-Auth-Token` from a chosen tier down
 *   (pipeline.ts `validateFrom`) and says who settled it — never what the token is.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

import {
  describe as describeDrill,
  type FaultInjector,
  type StartRefusal,
} from "../drill/faults.js";
import { silentLogger, type Logger } from "../log.js";
import {
  DRILL_TIERS,
  isDrillScenario,
  isDrillTier,
  type AdminErrorBody,
  type CacheFlushAnswer,
  type DrillStartAnswer,
  type DrillStopAnswer,
  type DrillTier,
  type ValidationAnswer,
} from "../protocol/admin.js";
import type { Verdict } from "../validation/pipeline.js";

/** Options of {@link AdminApi}. */
export interface AdminApiOptions {
  /** `admin_secret`; undefined: the API is off. */
  readonly secret: string | undefined;
  /** Drops the in-process caches; returns how many entries per tier went. */
  readonly flushCaches: () => Readonly<Record<string, number>>;
  /** The drills' fault injector; without it the drill routes answer 404. */
  readonly drills?: FaultInjector;
  /** A drill's validation from a tier down (the pipeline's `validateFrom`). */
  readonly validate?: (token: string, from: DrillTier) => Promise<Verdict>;
  readonly logger?: Logger;
}

const ROUTES = new Set(["/cache/flush", "/drill/start", "/drill/stop", "/drill/validate"]);

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

function json(
  res: ServerResponse,
  status: number,
  body: AdminErrorBody | CacheFlushAnswer | DrillStartAnswer | DrillStopAnswer | ValidationAnswer,
  extra: Record<string, string> = {},
): void {
  const text = JSON.stringify(body) + "\n";
  res
    .writeHead(status, {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(text)),
      "cache-control": "no-store",
      ...extra,
    })
    .end(text);
}

function notFound(res: ServerResponse): void {
  json(res, 404, { code: "not_available", error: "not available on this edge" });
}

function refusalBody(refusal: StartRefusal): AdminErrorBody {
  switch (refusal.kind) {
    case "busy":
      return {
        code: refusal.kind,
        error: "another drill is under way",
        drill: describeDrill(refusal.drill),
      };
    case "unknown_endpoint":
      return {
        code: refusal.kind,
        error: `no Keystone endpoint named ${JSON.stringify(refusal.endpoint)} (configured: ${refusal.known.join(", ")})`,
        endpoints: refusal.known,
      };
    case "no_memcached":
      return { code: refusal.kind, error: "no memcached is configured (cache.memcached_servers)" };
    case "single_key":
      return {
        code: refusal.kind,
        error:
          "the key repository holds one key: hiding it leaves nothing to decrypt with (a key-lag drill needs a rotated repository)",
      };
    case "bad_duration":
      return {
        code: refusal.kind,
        error: "duration_seconds must be a number above 0 and at most 3600",
      };
  }
}

/** A verdict as `/drill/validate` tells it: never the token's contents. */
function answerOf(verdict: Verdict, latency_ms: number): ValidationAnswer {
  switch (verdict.kind) {
    case "valid":
      return { result: "valid", source: verdict.source, latency_ms };
    case "invalid":
      return { result: "invalid", source: verdict.source, code: verdict.code, latency_ms };
    case "unavailable":
      return { result: "unavailable", reason: verdict.reason, latency_ms };
  }
}

export class AdminApi {
  private readonly secretDigest: Buffer | undefined;
  private readonly logger: Logger;

  constructor(private readonly options: AdminApiOptions) {
    this.secretDigest = options.secret === undefined ? undefined : digest(options.secret);
    this.logger = options.logger ?? silentLogger;
  }

  /** Whether `path` is one of the API's routes. */
  handles(path: string): boolean {
    return ROUTES.has(path);
  }

  /** Answers a request to one of the API's routes. */
  answer(req: IncomingMessage, res: ServerResponse, path: string): void {
    const query = new URL(req.url ?? "/", "http://admin").searchParams;
    req.resume();
    if (this.secretDigest === undefined) {
      json(res, 404, {
        code: "admin_api_off",
        error: "the admin API is off: set admin_secret to use it",
      });
      return;
    }
    if (!this.authorised(req.headers.authorization)) {
      json(
        res,
        401,
        { code: "unauthorized", error: "a valid bearer secret is required" },
        {
          "www-authenticate": 'Bearer realm="keystone-edge admin"',
        },
      );
      return;
    }
    if (req.method !== "POST") {
      json(res, 405, { code: "method_not_allowed", error: "use POST" }, { allow: "POST" });
      return;
    }
    switch (path) {
      case "/cache/flush": {
        const flushed = this.options.flushCaches();
        this.logger.info("in-process caches flushed through the admin API", flushed);
        json(res, 200, { flushed });
        return;
      }
      case "/drill/start":
        this.startDrill(res, query);
        return;
      case "/drill/stop": {
        const drills = this.options.drills;
        if (drills === undefined) return notFound(res);
        const stopped = drills.stop(query.get("id") ?? undefined);
        json(res, 200, { stopped: stopped === undefined ? null : describeDrill(stopped) });
        return;
      }
      case "/drill/validate":
        this.validate(req, res, query);
        return;
    }
  }

  private startDrill(res: ServerResponse, query: URLSearchParams): void {
    const drills = this.options.drills;
    if (drills === undefined) return notFound(res);
    const scenario = query.get("scenario") ?? "";
    if (!isDrillScenario(scenario)) {
      json(res, 400, {
        code: "unknown_scenario",
        error: `unknown scenario ${JSON.stringify(scenario)}`,
      });
      return;
    }
    const durationSeconds = Number(query.get("duration_seconds") ?? "NaN");
    const endpoint = query.get("endpoint") ?? undefined;
    const started = drills.start({
      scenario,
      durationSeconds,
      ...(endpoint === undefined ? {} : { endpoint }),
    });
    if (started.kind === "started") {
      json(res, 201, { drill: describeDrill(started.drill) });
      return;
    }
    json(res, started.kind === "busy" ? 409 : 400, refusalBody(started));
  }

  private validate(req: IncomingMessage, res: ServerResponse, query: URLSearchParams): void {
    const validate = this.options.validate;
    if (validate === undefined) return notFound(res);
    const from = query.get("from") ?? "cache";
    if (!isDrillTier(from)) {
      json(res, 400, { code: "bad_tier", error: `from must be one of ${DRILL_TIERS.join(", ")}` });
      return;
    }
    const token = req.headers["x-auth-token"];
    if (typeof token !== "string" || token === "") {
      json(res, 400, { code: "no_token", error: "send the token to validate in X-Auth-Token" });
      return;
    }
    const startedMs = performance.now();
    validate(token, from).then(
      (verdict) => {
        const latency_ms = Math.round((performance.now() - startedMs) * 1000) / 1000;
        json(res, 200, answerOf(verdict, latency_ms));
      },
      (error: unknown) => {
        this.logger.error("drill validation failed", { error: String(error) });
        json(res, 500, { code: "internal", error: "validation failed inside the edge" });
      },
    );
  }

  private authorised(header: string | undefined): boolean {
    const expected = this.secretDigest;
    if (expected === undefined || header === undefined) return false;
    const match = /^Bearer (.+)$/i.exec(header.trim());
    if (match?.[1] === undefined) return false;
    return timingSafeEqual(digest(match[1]), expected);
  }
}
