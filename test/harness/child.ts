/**
 * Owns: waiting for the harness's child processes (memcached, Prometheus) to end.
 */
import type { ChildProcess } from "node:child_process";

/** Whether `child` has exited (by itself or by a signal). */
export function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

/** Resolves true once `child` has exited, false if it has not within `ms`. */
export function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (exited(child)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      resolve(false);
    }, ms);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}
