/**
 * The admin API: the operations that change the edge's state.
 *
 * Owns: authorising and running mutating admin requests. Every one needs
 * `Authorization: Bearer <admin_secret>`, compared in constant time (SHA-256 of both sides,
 * then `timingSafeEqual`, so neither the secret's length nor its prefix leaks); without
 * `admin_secret` configured the API is off (404), never open. A missing or wrong secret is
 * 401 with `WWW-Authenticate: Bearer`; only POST is accepted. The secret is never logged.
 *
 * Routes: `POST /cache/flush` drops the in-process token entries and contexts (memcached
 * entries, shared with the region, age out by themselves).
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

import { silentLogger, type Logger } from "../log.js";

/** Options of {@link AdminApi}. */
export interface AdminApiOptions {
  /** `admin_secret`; undefined: the API is off. */
  readonly secret: string | undefined;
  /** Drops the in-process caches; returns how many entries per tier went. */
  readonly flushCaches: () => Readonly<Record<string, number>>;
  readonly logger?: Logger;
}

const digest = (text: string): Buffer => createHash("sha256").update(text, "utf8").digest();

function json(
  res: ServerResponse,
  status: number,
  body: unknown,
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

export class AdminApi {
  private readonly secretDigest: Buffer | undefined;
  private readonly logger: Logger;

  constructor(private readonly options: AdminApiOptions) {
    this.secretDigest = options.secret === undefined ? undefined : digest(options.secret);
    this.logger = options.logger ?? silentLogger;
  }

  /** Whether `path` is one of the API's routes. */
  handles(path: string): boolean {
    return path === "/cache/flush";
  }

  /** Answers a request to one of the API's routes. */
  answer(req: IncomingMessage, res: ServerResponse, path: string): void {
    req.resume();
    if (this.secretDigest === undefined) {
      json(res, 404, { error: "the admin API is off: set admin_secret to use it" });
      return;
    }
    if (!this.authorised(req.headers.authorization)) {
      json(
        res,
        401,
        { error: "a valid bearer secret is required" },
        {
          "www-authenticate": 'Bearer realm="keystone-edge admin"',
        },
      );
      return;
    }
    if (req.method !== "POST") {
      json(res, 405, { error: "use POST" }, { allow: "POST" });
      return;
    }
    if (path === "/cache/flush") {
      const flushed = this.options.flushCaches();
      this.logger.info("in-process caches flushed through the admin API", flushed);
      json(res, 200, { flushed });
    }
  }

  private authorised(header: string | undefined): boolean {
    const expected = this.secretDigest;
    if (expected === undefined || header === undefined) return false;
    const match = /^Bearer (.+)$/i.exec(header.trim());
    if (match?.[1] === undefined) return false;
    return timingSafeEqual(digest(match[1]), expected);
  }
}
