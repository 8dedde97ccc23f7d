/**
 * Fault injection for failover drills, inside the edge.
 *
 * Owns: the one drill that may be under way and the faults it injects — Keystone endpoints
 * blackholed (calls to them hang until their deadline, then fail as timeouts, exactly what a
 * dead network path does), memcached unreachable (every call fails at once, as a refused
 * connection does), the key ring's primary key hidden from the edge's view of its key
 * repository (a region whose copy lags the master's: drill/key-view.ts) — or none
 * (watch-only drills: key rotation, revocation). Real Keystone, memcached and the key
 * repository on disk are never touched. Every drill ends by itself at its expiry, so a drill
 * client that crashes or is interrupted leaves nothing injected; `stop()` ends it sooner.
 * Transitions are reported (metric `keystone_edge_drill_active`, a log line each).
 */
import { randomUUID } from "node:crypto";

import { silentLogger, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import type { MemcachedFault } from "../cache/memcached.js";
import type { EndpointFault } from "../keystone/endpoint.js";
import type { KeyRingFault } from "./key-view.js";
import { MAX_DRILL_SECONDS, type DrillDescription, type DrillScenario } from "../protocol/admin.js";

/** What a drill injects (its kind is named in the admin contract: protocol/admin.ts). */
export type Fault =
  | { readonly kind: "none" }
  | { readonly kind: "keystone_blackhole"; readonly endpoints: readonly string[] }
  | { readonly kind: "memcached_outage" }
  | { readonly kind: "primary_key_hidden" };

/** A drill under way. */
export interface ActiveDrill {
  readonly id: string;
  readonly scenario: DrillScenario;
  readonly fault: Fault;
  readonly startedAtMs: number;
  readonly expiresAtMs: number;
}

export type DrillState =
  { readonly kind: "idle" } | { readonly kind: "active"; readonly drill: ActiveDrill };

/* The hooks the faults act through are owned by the modules they intercept:
 * EndpointFault (keystone/endpoint.ts), MemcachedFault (cache/memcached.ts), KeyRingFault
 * (drill/key-view.ts). */

/** Why a drill could not start. */
export type StartRefusal =
  | { readonly kind: "busy"; readonly drill: ActiveDrill }
  | {
      readonly kind: "unknown_endpoint";
      readonly endpoint: string;
      readonly known: readonly string[];
    }
  | { readonly kind: "no_memcached" }
  | { readonly kind: "single_key" }
  | { readonly kind: "bad_duration" };

/** Options of {@link FaultInjector}. */
export interface FaultInjectorOptions {
  /** The configured Keystone endpoints' names, in order. */
  readonly endpoints: readonly string[];
  /** Whether memcached is configured (a memcached drill without it proves nothing). */
  readonly memcached: boolean;
  /**
   * How many keys the key ring holds now: a ring of one key cannot lose its primary (a
   * key-lag drill is refused). Default: unknown, never refused.
   */
  readonly keyCount?: () => number;
  /** Called on every start and end (metrics). Must not throw. */
  readonly onChange?: (state: DrillState) => void;
  readonly clock?: Clock;
  readonly logger?: Logger;
}

/** What a start asks for. */
export interface DrillRequest {
  readonly scenario: DrillScenario;
  readonly durationSeconds: number;
  /** `master-outage`: the endpoint to blackhole. Default the first configured one. */
  readonly endpoint?: string;
}

export class FaultInjector {
  private state: DrillState = { kind: "idle" };
  private timer: NodeJS.Timeout | undefined;
  private readonly clock: Clock;
  private readonly logger: Logger;
  private endpoints: readonly string[];
  private memcachedConfigured: boolean;

  constructor(private readonly options: FaultInjectorOptions) {
    this.endpoints = options.endpoints;
    this.memcachedConfigured = options.memcached;
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
  }

  /**
   * A reload changed the endpoints or memcached: a drill under way whose faults no longer
   * fit (an endpoint it blackholes renamed or gone, endpoints added under a
   * keystone-outage, memcached gone) is ended rather than left half-applied.
   */
  reconfigure(next: { readonly endpoints: readonly string[]; readonly memcached: boolean }): void {
    const drill = this.state.kind === "active" ? this.state.drill : undefined;
    const before = this.endpoints;
    this.endpoints = next.endpoints;
    this.memcachedConfigured = next.memcached;
    if (drill === undefined) return;
    const fault = drill.fault;
    const fits =
      fault.kind === "keystone_blackhole"
        ? fault.endpoints.every((e) => next.endpoints.includes(e)) &&
          (drill.scenario !== "keystone-outage" || next.endpoints.every((e) => before.includes(e)))
        : fault.kind === "memcached_outage"
          ? next.memcached
          : true;
    if (!fits) this.end(drill.id, "stopped");
  }

  /** The drill under way, if any (one whose time is up has ended). */
  current(): DrillState {
    this.active();
    return this.state;
  }

  /** Starts a drill; refused while another one runs. */
  start(
    request: DrillRequest,
  ): { readonly kind: "started"; readonly drill: ActiveDrill } | StartRefusal {
    if (this.state.kind === "active") return { kind: "busy", drill: this.state.drill };
    const { durationSeconds } = request;
    if (!Number.isFinite(durationSeconds) || durationSeconds <= 0) return { kind: "bad_duration" };
    if (durationSeconds > MAX_DRILL_SECONDS) return { kind: "bad_duration" };
    const fault = this.faultOf(request);
    if (
      fault.kind === "unknown_endpoint" ||
      fault.kind === "no_memcached" ||
      fault.kind === "single_key"
    ) {
      return fault;
    }
    const now = this.clock.nowMs();
    const drill: ActiveDrill = {
      id: randomUUID(),
      scenario: request.scenario,
      fault,
      startedAtMs: now,
      expiresAtMs: now + durationSeconds * 1000,
    };
    this.state = { kind: "active", drill };
    this.timer = setTimeout(() => {
      this.end(drill.id, "expired");
    }, durationSeconds * 1000);
    this.timer.unref();
    this.logger.warn("drill started: faults injected", { ...describe(drill) });
    this.options.onChange?.(this.state);
    return { kind: "started", drill };
  }

  /**
   * Ends the drill under way (any, or only `id`'s); returns the drill that ended, or
   * undefined when none did.
   */
  stop(id?: string): ActiveDrill | undefined {
    if (this.state.kind !== "active") return undefined;
    if (id !== undefined && this.state.drill.id !== id) return undefined;
    return this.end(this.state.drill.id, "stopped");
  }

  /** What a call to Keystone endpoint `name` meets now. */
  keystone(name: string): EndpointFault {
    const drill = this.active();
    return drill?.fault.kind === "keystone_blackhole" && drill.fault.endpoints.includes(name)
      ? "blackhole"
      : "pass";
  }

  /** What the edge's view of its key ring is now (drill/key-view.ts reads it per lookup). */
  keyRing(): KeyRingFault {
    return this.active()?.fault.kind === "primary_key_hidden" ? "primary_hidden" : "pass";
  }

  /** What a call to memcached meets now. */
  memcached(): MemcachedFault {
    return this.active()?.fault.kind === "memcached_outage" ? "unreachable" : "pass";
  }

  /** Ends any drill at once (the edge is closing). */
  close(): void {
    this.stop();
  }

  /** The drill under way, ended here if its time is up (the timer may lag a busy loop). */
  private active(): ActiveDrill | undefined {
    if (this.state.kind !== "active") return undefined;
    const drill = this.state.drill;
    if (this.clock.nowMs() >= drill.expiresAtMs) {
      this.end(drill.id, "expired");
      return undefined;
    }
    return drill;
  }

  private end(id: string, why: "expired" | "stopped"): ActiveDrill | undefined {
    if (this.state.kind !== "active" || this.state.drill.id !== id) return undefined;
    const drill = this.state.drill;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.state = { kind: "idle" };
    this.logger.warn(`drill ${why}: faults released`, { ...describe(drill) });
    this.options.onChange?.(this.state);
    return drill;
  }

  private faultOf(
    request: DrillRequest,
  ): Fault | Extract<StartRefusal, { kind: "unknown_endpoint" | "no_memcached" | "single_key" }> {
    const known = this.endpoints;
    switch (request.scenario) {
      case "master-outage": {
        const endpoint = request.endpoint ?? known[0] ?? "";
        if (!known.includes(endpoint)) return { kind: "unknown_endpoint", endpoint, known };
        return { kind: "keystone_blackhole", endpoints: [endpoint] };
      }
      case "keystone-outage":
        return { kind: "keystone_blackhole", endpoints: [...known] };
      case "memcached-outage":
        return this.memcachedConfigured ? { kind: "memcached_outage" } : { kind: "no_memcached" };
      case "key-lag":
        return (this.options.keyCount?.() ?? 2) > 1
          ? { kind: "primary_key_hidden" }
          : { kind: "single_key" };
      case "key-rotation":
      case "revocation":
        return { kind: "none" };
    }
  }
}

/** A drill as the admin API, `/status` and log lines show it. */
export function describe(drill: ActiveDrill): DrillDescription {
  return {
    id: drill.id,
    scenario: drill.scenario,
    fault: drill.fault.kind,
    ...(drill.fault.kind === "keystone_blackhole" ? { endpoints: drill.fault.endpoints } : {}),
    started_at: new Date(drill.startedAtMs).toISOString(),
    expires_at: new Date(drill.expiresAtMs).toISOString(),
  };
}
