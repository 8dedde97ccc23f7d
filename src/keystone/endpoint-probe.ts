/**
 * Probing Keystone endpoints that are out of rotation: a background loop.
 *
 * Owns: bringing an endpoint back. Every `probeIntervalMs`, each endpoint whose breaker is
 * open and past its open duration gets one probe: `GET` of its base URL (Keystone's
 * version document: no authentication, no database). Any answer below 500 closes the
 * breaker; a timeout, a connection error or a 5xx opens it for another open duration.
 * Requests never probe, so none waits on a dead endpoint. The timer does not keep the
 * process alive.
 */
import type { KeystoneEndpoints } from "./endpoint-set.js";

/** Default time between probe rounds, ms. */
export const DEFAULT_PROBE_INTERVAL_MS = 1_000;

/** Options of {@link EndpointProber}. */
export interface EndpointProberOptions {
  /** Time between probe rounds, ms. Default {@link DEFAULT_PROBE_INTERVAL_MS}. */
  readonly probeIntervalMs?: number;
  /** Deadline of one probe, ms. Default 2 000. */
  readonly timeoutMs?: number;
}

export class EndpointProber {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly endpoints: KeystoneEndpoints,
    private readonly options: EndpointProberOptions = {},
  ) {}

  /** Starts the loop (idempotent). */
  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(() => {
      if (this.running === undefined) {
        this.running = this.probeOnce().finally(() => {
          this.running = undefined;
        });
      }
    }, this.options.probeIntervalMs ?? DEFAULT_PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  /** One round: probes every endpoint due for it, in parallel. Never rejects. */
  async probeOnce(): Promise<void> {
    await Promise.all(
      this.endpoints.guards.map(async (guard) => {
        const admission = guard.breaker.admitProbe();
        if (admission === undefined) return;
        const outcome = await guard.endpoint.call({
          method: "GET",
          path: "",
          timeoutMs: this.options.timeoutMs ?? 2_000,
        });
        this.endpoints.report(guard, admission, outcome);
      }),
    );
  }

  /** Stops the loop and waits for a round in progress. */
  async stop(): Promise<void> {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
