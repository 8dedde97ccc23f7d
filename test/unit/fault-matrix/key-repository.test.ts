/**
 * The fault matrix, the key repository's side (docs/security.md, "Fault matrix"): a
 * repository that cannot be read any more, through a whole in-process edge (region.ts).
 * The tests run as root, for whom permission bits deny nothing, so "unreadable" is made
 * the ways root meets it: the directory replaced by a file, the path left a dangling
 * symbolic link (a Kubernetes volume or a mount gone), a key file that cannot be opened.
 * Emptied and half-written repositories are in test/integration/key-rotation.test.ts and
 * test/unit/key-repository.test.ts.
 */
import { rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startEchoUpstream, type EchoUpstream } from "../../harness/echo-upstream.js";
import { waitUntil } from "../helpers.js";
import { startRegion, type Region } from "./region.js";

let region: Region | undefined;
let echo: EchoUpstream | undefined;

afterEach(async () => {
  await region?.close();
  await echo?.stop();
  region = undefined;
  echo = undefined;
});

interface Fault {
  readonly name: string;
  /** Breaks the repository at `dir`; resolves to the repair. */
  readonly inject: (dir: string) => Promise<() => Promise<void>>;
  readonly code: RegExp;
}

/** Moves the directory aside, puts `replacement` at its path; the repair moves it back. */
const replaced =
  (replacement: (dir: string, aside: string) => Promise<void>) =>
  async (dir: string): Promise<() => Promise<void>> => {
    const aside = `${dir}.aside`;
    await rename(dir, aside);
    await replacement(dir, aside);
    return async () => {
      await rm(dir, { recursive: true, force: true });
      await rename(aside, dir);
    };
  };

const faults: Fault[] = [
  {
    name: "the directory replaced by a file",
    inject: replaced((dir) => writeFile(dir, "not a directory\n")),
    code: /key_repository_missing/,
  },
  {
    name: "the path a dangling symbolic link",
    inject: replaced((dir, aside) => symlink(join(aside, "gone"), dir)),
    code: /key_repository_missing/,
  },
  {
    name: "a key file that cannot be opened",
    inject: async (dir) => {
      const file = join(dir, "3");
      await symlink(join(dir, "no-such-key"), file);
      return () => rm(file);
    },
    code: /key_repository_unreadable/,
  },
];

describe("fault matrix: key repository unreadable", () => {
  it.each(faults)(
    "$name: the last good ring is kept, tokens still decode, metric and /readyz say so, until repaired",
    async ({ inject, code }) => {
      echo = await startEchoUpstream();
      const r = await startRegion({ upstream: echo.url });
      region = r;
      expect((await r.request(r.mint(1, 1))).status).toBe(200);
      const keysBefore = r.edge.keys.current().size;
      expect(await r.metric("keystone_edge_key_repository_healthy")).toBe(1);

      const repair = await inject(r.keyRepository);
      // fs events, else the 10 s poll
      await waitUntil(
        async () => (await r.metric("keystone_edge_key_repository_healthy")) === 0,
        15_000,
        "the repository to be reported unhealthy",
      );
      expect(
        await r.metric("keystone_edge_key_repository_reload_failures_total"),
      ).toBeGreaterThanOrEqual(1);
      const report = await r.readyz();
      expect(report.ready).toBe(true);
      expect(report.degraded).toBe(true);
      const keys = report.checks.find((c) => c.name === "keys");
      expect(keys).toMatchObject({ ok: true, degraded: true });
      expect(keys?.detail).toMatch(/re-reads failing since/);
      expect(keys?.detail).toMatch(code);
      expect(r.edge.keys.current().size).toBe(keysBefore);
      expect(await r.metric("keystone_edge_key_repository_keys")).toBe(keysBefore);
      expect(r.logger.at("warn").map((l) => l.message)).toContain(
        "key repository reload failed; keeping the last good key ring",
      );
      // The request path does not notice: new tokens decode with the kept ring.
      expect((await r.request(r.mint(1, 1))).status).toBe(200);
      expect((await r.request(r.mint(2, 2))).status).toBe(200);
      expect((await r.request(r.forged())).status).toBe(401);

      await repair();
      await waitUntil(
        async () => (await r.metric("keystone_edge_key_repository_healthy")) === 1,
        15_000,
        "the repository to be reported healthy again",
      );
      const after = await r.readyz();
      expect(after.checks.find((c) => c.name === "keys")?.degraded).not.toBe(true);
      expect((await r.request(r.mint(3, 3))).status).toBe(200);
    },
  );
});
