/**
 * After a drill's fault is released: whether the region recovers, and how fast — the
 * check every injecting drill ends with.
 */
import { setTimeout as sleep } from "node:timers/promises";

import type { DrillDescription } from "../protocol/admin.js";
import {
  fallbackCounts,
  memcachedOf,
  seconds,
  type Check,
  type DrillOptions,
} from "./scenario-kit.js";

/** After the release: the region back to normal, within the recovery timeout. */
export async function recover(
  options: DrillOptions,
  drill: DrillDescription,
  known: readonly string[],
): Promise<{ check: Check; seconds?: number } | undefined> {
  const timeoutMs = options.recoveryTimeoutMs ?? 30_000;
  const started = performance.now();
  const deadline = started + timeoutMs;
  let ready: () => Promise<boolean>;
  let what: string;
  switch (drill.fault) {
    case "keystone_blackhole": {
      const token = known[0] ?? "";
      what = "every endpoint back in rotation and Keystone validating again";
      ready = async () => {
        const s = await options.client.status();
        if (s.keystone.endpoints.some((e) => e.state !== "closed")) return false;
        return (await options.client.validate(token, "keystone_only")).result === "valid";
      };
      break;
    }
    case "memcached_outage": {
      const token = known[0] ?? "";
      what = "memcached breaker closed again";
      ready = async () => {
        // The breaker probes on a call: a re-validation writes to memcached.
        await options.client.validate(token, "keystone");
        const { servers } = memcachedOf(await options.client.status());
        return servers.every((s) => s.state === "closed");
      };
      break;
    }
    case "primary_key_hidden": {
      const token = known[0] ?? "";
      what = "the key ring in sync with the master again and new tokens decrypted here";
      ready = async () => {
        // The release re-checks the ring at once (as a sync's reload does).
        if ((await options.client.status()).keys.lag?.state !== "in_sync") return false;
        const total = async () =>
          Object.values(await fallbackCounts(options.client)).reduce((a, b) => a + b, 0);
        const before = await total();
        const answer = await options.client.validate(token, "unseen");
        return answer.result === "valid" && (await total()) === before;
      };
      break;
    }
    default:
      return undefined;
  }
  while (performance.now() < deadline && !options.signal.aborted) {
    if (await ready()) {
      const s = seconds(performance.now() - started);
      return {
        check: {
          name: "recovered after release",
          passed: true,
          detail: `${what} ${String(s)} s after the release`,
        },
        seconds: s,
      };
    }
    await sleep(250);
  }
  return {
    check: {
      name: "recovered after release",
      passed: false,
      detail: `not ${what} within ${String(seconds(timeoutMs))} s of the release`,
    },
  };
}
