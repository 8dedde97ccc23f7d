/**
 * Waiting on a condition, never on a fixed time: `check` is polled until it holds, and a
 * deadline turns a wait that never ends into a failure that names what was awaited.
 */

/**
 * Polls `check` every `intervalMs` (default 20) until it returns true; throws after
 * `timeoutMs` (default 5 000) naming `what`.
 */
export async function waitUntil(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 5_000,
  what = "condition",
  intervalMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${String(timeoutMs)} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
