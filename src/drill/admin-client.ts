/**
 * The drill command's client of a running edge's admin listener.
 *
 * Owns: the HTTP calls a drill makes — `/status` and the admin API's drill
 * routes behind the bearer secret — each with a deadline, turned into typed answers. A
 * refused secret, an unreachable edge or an answer that is not what an edge sends is a
 * {@link DrillError} with a stable code; tokens go only in `X-Auth-Token` headers and
 * never into an error message.
 */
import { request } from "undici";

import { DrillError } from "../errors.js";
import type {
  DrillDescription,
  DrillScenario,
  DrillStartAnswer,
  DrillStopAnswer,
  DrillTier,
  EdgeStatus,
  ValidationAnswer,
} from "../protocol/admin.js";

/** What settled an answer: the tier of a valid one, the code of an invalid one, why none. */
export function detailOf(answer: ValidationAnswer): string {
  switch (answer.result) {
    case "valid":
      return answer.source;
    case "invalid":
      return answer.code;
    case "unavailable":
      return answer.reason;
  }
}

/** Options of {@link AdminClient}. */
export interface AdminClientOptions {
  /** The edge's admin listener, e.g. `http://127.0.0.1:9464`. */
  readonly baseUrl: string;
  /** `admin_secret`. */
  readonly secret: string;
  /** Deadline of one call, ms. Default 10 000 (a validation may wait out Keystone's deadlines). */
  readonly timeoutMs?: number;
}

export class AdminClient {
  private readonly base: URL;
  private readonly timeoutMs: number;

  constructor(private readonly options: AdminClientOptions) {
    this.base = new URL(options.baseUrl);
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  status(): Promise<EdgeStatus> {
    return this.call("GET", "/status", {}, [200]) as Promise<EdgeStatus>;
  }

  async start(
    scenario: DrillScenario,
    durationSeconds: number,
    endpoint?: string,
  ): Promise<DrillDescription> {
    const query = new URLSearchParams({ scenario, duration_seconds: String(durationSeconds) });
    if (endpoint !== undefined) query.set("endpoint", endpoint);
    const body = (await this.call(
      "POST",
      `/drill/start?${query.toString()}`,
      {},
      [201],
    )) as DrillStartAnswer;
    return body.drill;
  }

  async stop(id: string): Promise<DrillDescription | null> {
    const body = (await this.call(
      "POST",
      `/drill/stop?${new URLSearchParams({ id }).toString()}`,
      {},
      [200],
    )) as DrillStopAnswer;
    return body.stopped;
  }

  validate(token: string, from: DrillTier): Promise<ValidationAnswer> {
    return this.call(
      "POST",
      `/drill/validate?from=${from}`,
      { "x-auth-token": token },
      [200],
    ) as Promise<ValidationAnswer>;
  }

  private async call(
    method: "GET" | "POST",
    path: string,
    headers: Record<string, string>,
    expected: readonly number[],
  ): Promise<unknown> {
    const response = await this.send(method, path, headers);
    const text = await response.body.text();
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new DrillError(
        "admin_refused",
        `${path}: HTTP ${String(response.statusCode)}, not JSON: is this a keystone-edge admin listener?`,
      );
    }
    if (expected.includes(response.statusCode)) return body;
    const error =
      typeof body === "object" && body !== null && "error" in body
        ? String(body.error)
        : text.slice(0, 200);
    if (response.statusCode === 401) {
      throw new DrillError("admin_unauthorized", `the edge refused the admin secret (${error})`);
    }
    if (response.statusCode === 404 && path.startsWith("/drill")) {
      throw new DrillError(
        "admin_refused",
        `the admin API is off on this edge: set admin_secret (${error})`,
      );
    }
    throw new DrillError(
      "admin_refused",
      `${path.split("?")[0] ?? path}: HTTP ${String(response.statusCode)}: ${error}`,
    );
  }

  private async send(
    method: "GET" | "POST",
    path: string,
    headers: Record<string, string>,
  ): Promise<Awaited<ReturnType<typeof request>>> {
    try {
      return await request(new URL(path, this.base), {
        method,
        // The secret goes only where it is needed: the reads are unauthenticated, and a
        // wrong --admin URL (the proxy port) must not carry it to a service.
        headers:
          method === "POST"
            ? { ...headers, authorization: `Bearer ${this.options.secret}` }
            : headers,
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (error) {
      throw new DrillError(
        "admin_unreachable",
        `cannot reach the edge's admin listener at ${this.base.origin}: ${
          error instanceof Error ? error.message : String(error)
        }`,
      );
    }
  }
}
