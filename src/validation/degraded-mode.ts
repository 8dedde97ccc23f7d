/**
 * Degraded mode: the region serves its known users with no Keystone answering.
 *
 * Owns: when the edge is in degraded mode, told by each verdict — entered when a token is
 * served from a stale context because no Keystone endpoint answers (source `degraded`),
 * left when Keystone answers again (any verdict of source `keystone` but `unavailable`).
 * Anything else leaves the mode as it is. Each transition is logged once and reported to
 * `onChange`; `/status`, `/readyz` and the `keystone_edge_degraded_mode` gauge read
 * {@link DegradedMode.active}.
 */
import { silentLogger, type Logger } from "../log.js";
import type { Verdict } from "./pipeline.js";

/** Options of {@link DegradedMode}. */
export interface DegradedModeOptions {
  /** Default: no logs. */
  readonly logger?: Logger;
  /** Called on each transition. Must not throw. Default: none. */
  readonly onChange?: (active: boolean) => void;
}

export class DegradedMode {
  private state: "serving" | "degraded" = "serving";
  private readonly logger: Logger;

  constructor(private readonly options: DegradedModeOptions = {}) {
    this.logger = options.logger ?? silentLogger;
  }

  /** Whether the edge is in degraded mode now. */
  get active(): boolean {
    return this.state === "degraded";
  }

  /** One verdict of the pipeline (its `observe` hook). */
  observe(verdict: Verdict): void {
    const next =
      verdict.kind === "valid" && verdict.source === "degraded"
        ? "degraded"
        : verdict.kind !== "unavailable" && verdict.source === "keystone"
          ? "serving"
          : this.state;
    if (next === this.state) return;
    this.state = next;
    if (next === "degraded") {
      this.logger.warn("degraded mode: no Keystone answers; serving known users and scopes only");
    } else {
      this.logger.info("degraded mode over: Keystone answers again");
    }
    this.options.onChange?.(next === "degraded");
  }
}
