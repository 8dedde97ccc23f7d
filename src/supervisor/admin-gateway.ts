/**
 * The admin listener of a supervised edge (`workers` > 1): one place for operators,
 * whichever worker would have answered.
 *
 * Owns: answering on `admin_listen` for all workers — `/metrics` as one scrape (every
 * worker's series aggregated by prom-client's `AggregatorRegistry`, each metric by its
 * declared aggregator: counters and histograms summed, state gauges by their max or min,
 * see admin/metrics.ts; then the supervisor's own series); `/healthz` (this process runs);
 * `/readyz` (ready while at least one worker serves and every serving worker is ready; each
 * check merged across workers, plus a `workers` check); `/status` (a serving worker's, with
 * `workers` listing every one) and the status page; the admin API forwarded with its
 * headers (the workers check the secret): `POST /cache/flush` and the drill's start and
 * stop to every worker (flushed counts summed), anything else to one worker in turn. The
 * `Host` check is the single edge's (admin_allowed_hosts).
 */
import { request, type IncomingMessage, type ServerResponse, type Server } from "node:http";
import { AggregatorRegistry } from "prom-client";

import { createAdminListener, writeHostRefusal } from "../admin/admin-server.js";
import { adminHostAllowed } from "../admin/host-check.js";
import { writeStatusPage } from "../admin/status-page.js";
import type { CacheFlushAnswer, WorkerStatus } from "../protocol/admin.js";
import type { SupervisorMetrics } from "./metrics.js";
import type { Supervisor, WorkerSlot } from "./supervisor.js";

/** Longest the gateway waits for a worker's admin listener, ms. */
const WORKER_TIMEOUT_MS = 5_000;
/** Largest request body forwarded to the workers (drill requests are small). */
const MAX_BODY_BYTES = 64 * 1024;

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
}

/** One request to a worker's private admin listener. */
function ask(
  slot: WorkerSlot,
  method: string,
  path: string,
  headers: Record<string, string>,
  body?: Buffer,
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: "127.0.0.1",
        port: slot.adminPort,
        method,
        path,
        headers: { ...headers, host: `127.0.0.1:${String(slot.adminPort)}` },
        timeout: WORKER_TIMEOUT_MS,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const out: Record<string, string> = {};
          for (const name of ["content-type", "retry-after", "allow", "www-authenticate"]) {
            const v = res.headers[name];
            if (typeof v === "string") out[name] = v;
          }
          resolve({ status: res.statusCode ?? 502, headers: out, body: Buffer.concat(chunks) });
        });
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error("worker admin timeout")));
    req.on("error", reject);
    req.end(body);
  });
}

function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) {
        resolve(undefined);
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", () => resolve(undefined));
  });
}

function json(res: ServerResponse, status: number, doc: unknown): void {
  res
    .writeHead(status, { "content-type": "application/json", "cache-control": "no-store" })
    .end(JSON.stringify(doc) + "\n");
}

function relay(res: ServerResponse, answer: Answer): void {
  res.writeHead(answer.status, answer.headers).end(answer.body);
}

interface ReadyzCheck {
  readonly name: string;
  readonly ok: boolean;
  readonly degraded?: boolean;
  readonly detail?: string;
}

/** The workers as `/status` lists them. */
function workersOf(supervisor: Supervisor): WorkerStatus[] {
  return supervisor.slots.map((s) => ({
    worker: s.index,
    pid: s.pid ?? null,
    state: s.state,
    started_at: s.startedAtMs > 0 ? new Date(s.startedAtMs).toISOString() : null,
    restarts: s.restarts,
  }));
}

export interface AdminGatewayOptions {
  readonly supervisor: Supervisor;
  readonly metrics: SupervisorMetrics;
  /** `admin_allowed_hosts` in force. */
  readonly allowedHosts: () => readonly string[];
}

/** The gateway's request handler. */
export function createAdminGatewayHandler(
  options: AdminGatewayOptions,
): (req: IncomingMessage, res: ServerResponse) => void {
  const { supervisor } = options;
  let turn = 0;
  const next = (): WorkerSlot | undefined => {
    const serving = supervisor.serving();
    if (serving.length === 0) return undefined;
    turn = (turn + 1) % serving.length;
    return serving[turn];
  };
  const forwardHeaders = (req: IncomingMessage): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const name of ["authorization", "content-type", "accept"]) {
      const v = req.headers[name];
      if (typeof v === "string") out[name] = v;
    }
    return out;
  };
  const unavailable = (res: ServerResponse): void => {
    json(res, 503, { code: "no_worker", error: "no worker is serving" });
  };

  const metrics = async (res: ServerResponse): Promise<void> => {
    const collected = await supervisor.collectMetrics();
    options.metrics.observeWorkers(collected);
    const aggregated = AggregatorRegistry.aggregate(collected.map((c) => c.metrics));
    const text = (await aggregated.metrics()) + (await options.metrics.registry.metrics());
    res.writeHead(200, { "content-type": aggregated.contentType }).end(text);
  };

  const readyz = async (res: ServerResponse): Promise<void> => {
    const serving = supervisor.serving();
    const reports = await Promise.all(
      serving.map(async (slot) => {
        try {
          const a = await ask(slot, "GET", "/readyz", {});
          return JSON.parse(a.body.toString("utf8")) as {
            ready: boolean;
            degraded: boolean;
            checks: ReadyzCheck[];
          };
        } catch {
          return undefined;
        }
      }),
    );
    const merged = new Map<string, ReadyzCheck>();
    reports.forEach((report, i) => {
      for (const c of report?.checks ?? []) {
        const before = merged.get(c.name);
        const who = `worker ${String(serving[i]?.index)}`;
        if (before === undefined) {
          merged.set(c.name, { ...c, ...(c.ok ? {} : { detail: `${who}: ${c.detail ?? ""}` }) });
        } else if (before.ok && !c.ok) {
          merged.set(c.name, { ...c, detail: `${who}: ${c.detail ?? ""}` });
        } else if (c.degraded === true && before.degraded !== true) {
          merged.set(c.name, { ...before, degraded: true });
        }
      }
    });
    const answered = reports.filter((r) => r !== undefined).length;
    const total = supervisor.slots.length;
    const workersCheck: ReadyzCheck = {
      name: "workers",
      ok: serving.length > 0 && answered === serving.length,
      degraded: serving.length < total,
      detail: `${String(serving.length)} of ${String(total)} serving${answered < serving.length ? `, ${String(serving.length - answered)} not answering` : ""}`,
    };
    const checks = [workersCheck, ...merged.values()];
    const ready = checks.every((c) => c.ok) && reports.every((r) => r?.ready === true);
    const degraded = checks.some((c) => c.degraded === true);
    json(res, ready ? 200 : 503, { ready, degraded, checks });
  };

  const status = async (res: ServerResponse): Promise<void> => {
    // The first serving worker that answers (one may have died since it was last seen).
    for (const slot of supervisor.serving()) {
      let a: Answer;
      try {
        a = await ask(slot, "GET", "/status", {});
      } catch {
        continue;
      }
      if (a.status !== 200) continue;
      const doc = JSON.parse(a.body.toString("utf8")) as Record<string, unknown>;
      json(res, 200, { ...doc, workers: workersOf(supervisor) });
      return;
    }
    unavailable(res);
  };

  /** To every worker; the first refusal is the answer, else `combine` of the answers. */
  const everyWorker = async (
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    combine: (answers: Answer[]) => Answer,
  ): Promise<void> => {
    const body = await readBody(req);
    if (body === undefined) {
      json(res, 413, { code: "too_large", error: "request body too large" });
      return;
    }
    const serving = supervisor.serving();
    if (serving.length === 0) {
      unavailable(res);
      return;
    }
    const answers = await Promise.all(
      serving.map((slot) =>
        ask(slot, req.method ?? "POST", req.url ?? path, forwardHeaders(req), body),
      ),
    );
    const refused = answers.find((a) => a.status >= 300);
    relay(res, refused ?? combine(answers));
  };

  const oneWorker = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const body = await readBody(req);
    if (body === undefined) {
      json(res, 413, { code: "too_large", error: "request body too large" });
      return;
    }
    const slot = next();
    if (slot === undefined) {
      unavailable(res);
      return;
    }
    relay(res, await ask(slot, req.method ?? "GET", req.url ?? "/", forwardHeaders(req), body));
  };

  return (req, res) => {
    if (!adminHostAllowed(req.headers.host, new Set(options.allowedHosts()))) {
      writeHostRefusal(res);
      return;
    }
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const failed = (): void => {
      if (!res.headersSent)
        json(res, 502, { code: "worker_failed", error: "a worker did not answer" });
      else res.destroy();
    };
    const get = req.method === "GET" || req.method === "HEAD";
    if (get && writeStatusPage(path, res)) return;
    if (get && path === "/healthz") {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok\n");
    } else if (get && path === "/metrics") {
      metrics(res).catch(failed);
    } else if (get && path === "/readyz") {
      readyz(res).catch(failed);
    } else if (get && path === "/status") {
      status(res).catch(failed);
    } else if (path === "/cache/flush") {
      everyWorker(req, res, path, (answers) => {
        const flushed: Record<string, number> = {};
        for (const a of answers) {
          const doc = JSON.parse(a.body.toString("utf8")) as CacheFlushAnswer;
          for (const [tier, n] of Object.entries(doc.flushed))
            flushed[tier] = (flushed[tier] ?? 0) + n;
        }
        const total: CacheFlushAnswer = { flushed };
        const first = answers[0] as Answer;
        return { ...first, body: Buffer.from(JSON.stringify(total) + "\n") };
      }).catch(failed);
    } else if (path === "/drill/start" || path === "/drill/stop") {
      // Every worker injects the same faults; the first one's description answers.
      everyWorker(req, res, path, (answers) => answers[0] as Answer).catch(failed);
    } else {
      oneWorker(req, res).catch(failed);
    }
  };
}

/** The gateway on a listener of its own (the single edge's admin listener settings). */
export function createAdminGateway(options: AdminGatewayOptions): Server {
  return createAdminListener(createAdminGatewayHandler(options));
}
