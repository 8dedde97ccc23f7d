import { mkdir, rename, rm, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { KeyRepositoryError } from "../../src/errors.js";
import { generateFernetKeyText } from "../../src/fernet/envelope.js";
import {
  KeyRepository,
  readKeyRepository,
  type ReloadOutcome,
} from "../../src/fernet/key-repository.js";
import type { EpochMillis } from "../../src/units.js";
import { makeRepository, waitUntil } from "./helpers.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()?.();
});

async function repo(files: Record<string, string>): Promise<string> {
  const { dir, cleanup } = await makeRepository(files);
  cleanups.push(cleanup);
  return dir;
}

async function expectRepositoryError(dir: string, code: string, pathPart: string): Promise<void> {
  const error = await readKeyRepository(dir).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KeyRepositoryError);
  expect((error as KeyRepositoryError).code).toBe(code);
  expect((error as KeyRepositoryError).message).toContain(pathPart);
}

/** Keystone's fernet_rotate, step by step, on `dir` holding 0..max. */
async function keystoneRotate(dir: string, max: number, maxActive = 3): Promise<void> {
  await writeFile(join(dir, "0.tmp"), generateFernetKeyText());
  await rename(join(dir, "0"), join(dir, String(max + 1)));
  await rename(join(dir, "0.tmp"), join(dir, "0"));
  const indexes = [0, ...Array.from({ length: max + 1 }, (_, i) => i + 1)];
  const excess = indexes.length - maxActive;
  for (const i of indexes.filter((i) => i !== 0).slice(0, Math.max(0, excess))) {
    await rm(join(dir, String(i)), { force: true });
  }
}

describe("readKeyRepository", () => {
  it("loads integer-named files, ignores others and skips empty files, as Keystone does", async () => {
    const dir = await repo({
      "0": generateFernetKeyText(),
      "1": generateFernetKeyText(),
      "2": generateFernetKeyText() + "\n",
      "0.tmp": "garbage",
      README: "not a key",
      "3": "",
    });
    const ring = await readKeyRepository(dir);
    expect(ring.entries.map((e) => [e.index, e.role])).toEqual([
      [2, "primary"],
      [1, "secondary"],
      [0, "staged"],
    ]);
  });

  it("follows symbolic links, as in a Kubernetes Secret volume", async () => {
    const dir = await repo({});
    await mkdir(join(dir, "..data"));
    await writeFile(join(dir, "..data", "0"), generateFernetKeyText());
    await writeFile(join(dir, "..data", "1"), generateFernetKeyText());
    await symlink(join("..data", "0"), join(dir, "0"));
    await symlink(join("..data", "1"), join(dir, "1"));
    const ring = await readKeyRepository(dir);
    expect(ring.primary.index).toBe(1);
    expect(ring.size).toBe(2);
  });

  it("refuses a missing directory", async () => {
    const dir = await repo({});
    await expectRepositoryError(join(dir, "nope"), "key_repository_missing", "nope");
  });

  it("refuses an empty repository with a message that says what it expected", async () => {
    const dir = await repo({ "0.tmp": generateFernetKeyText(), "1": "" });
    await expectRepositoryError(dir, "key_repository_empty", "fernet_setup");
  });

  it("names the invalid key file", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "7": "tooshort=" });
    await expectRepositoryError(dir, "invalid_key", join(dir, "7"));
  });

  it("refuses two files for the same index", async () => {
    const dir = await repo({ "1": generateFernetKeyText(), "01": generateFernetKeyText() });
    await expectRepositoryError(dir, "invalid_key", "index 1");
  });
});

describe("KeyRepository", () => {
  async function open(dir: string, outcomes: ReloadOutcome[], pollIntervalMs = 0, watch = true) {
    const repository = await KeyRepository.open({
      directory: dir,
      watch,
      settleMs: 20,
      retryMs: 50,
      pollIntervalMs,
      onReload: (o) => outcomes.push(o),
    });
    cleanups.push(() => {
      repository.close();
      return Promise.resolve();
    });
    return repository;
  }

  it("refuses to start on a missing repository", async () => {
    const dir = await repo({});
    await expect(KeyRepository.open({ directory: join(dir, "x") })).rejects.toMatchObject({
      code: "key_repository_missing",
    });
  });

  it("sees a Keystone rotation through file-system events and swaps the ring", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
    const outcomes: ReloadOutcome[] = [];
    const repository = await open(dir, outcomes);
    const before = repository.current();
    expect(before.primary.index).toBe(1);
    await keystoneRotate(dir, 1);
    await waitUntil(() => repository.current().primary.index === 2, 5_000, "rotation");
    const after = repository.current();
    // The old staged key became the primary; the old primary is still accepted.
    expect(after.primary.key.fingerprint).toBe(before.entries[1]?.key.fingerprint);
    expect(after.entries.map((e) => e.index)).toEqual([2, 1, 0]);
    expect(outcomes.some((o) => o.kind === "changed")).toBe(true);
    expect(repository.status().primary_index).toBe(2);
  });

  it("finds changes by polling when no events arrive", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
    const repository = await KeyRepository.open({
      directory: dir,
      watch: false,
      pollIntervalMs: 30,
    });
    cleanups.push(() => {
      repository.close();
      return Promise.resolve();
    });
    expect(repository.status().watching).toBe("poll");
    await writeFile(join(dir, "2"), generateFernetKeyText());
    await waitUntil(() => repository.current().primary.index === 2, 5_000, "poll reload");
  });

  it("keeps the last good ring when the repository is emptied, and reports it", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
    const outcomes: ReloadOutcome[] = [];
    // No events: the test decides when reads happen, so none sees the first rm alone.
    const repository = await open(dir, outcomes, 0, false);
    const good = repository.current();
    await rm(join(dir, "0"));
    await rm(join(dir, "1"));
    expect((await repository.reload()).kind).toBe("failed");
    expect(repository.current()).toBe(good);
    const status = repository.status();
    expect(status.last_reload.result).toBe("failing");
    expect(status.last_reload.error?.code).toBe("key_repository_empty");
    expect(status.reload_failures).toBeGreaterThan(0);
    expect(status.key_count).toBe(2);
    // Recovery: keys come back, the failure clears by itself (retry loop).
    await writeFile(join(dir, "3"), generateFernetKeyText());
    await waitUntil(() => repository.current().primary.index === 3, 5_000, "recovery");
    expect(repository.status().last_reload.result).toBe("ok");
  });

  it("keeps the last good ring when a key file is half written", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
    const outcomes: ReloadOutcome[] = [];
    const repository = await open(dir, outcomes, 0, false);
    const good = repository.current();
    await writeFile(join(dir, "2"), generateFernetKeyText().slice(0, 20));
    expect((await repository.reload()).kind).toBe("failed");
    expect(repository.current()).toBe(good);
    const failed = outcomes.find((o) => o.kind === "failed");
    expect(failed?.kind === "failed" && failed.error.path).toBe(join(dir, "2"));
  });

  it("reads a Kubernetes Secret volume through ..data, one generation at a time", async () => {
    const dir = await repo({});
    const generation = async (name: string, keys: Record<string, string>): Promise<void> => {
      await mkdir(join(dir, name));
      for (const [file, text] of Object.entries(keys)) await writeFile(join(dir, name, file), text);
    };
    const k = [generateFernetKeyText(), generateFernetKeyText(), generateFernetKeyText()];
    await generation("..2026_01", { "0": k[0] as string, "1": k[1] as string });
    await symlink("..2026_01", join(dir, "..data"));
    await symlink(join("..data", "0"), join(dir, "0"));
    await symlink(join("..data", "1"), join(dir, "1"));
    const repository = await open(dir, [], 0, false);
    expect(repository.current().primary.index).toBe(1);
    // The kubelet writes a new generation and swaps ..data atomically; the top-level link
    // for the new key "2" does not exist yet. Reading through ..data sees the whole set.
    await generation("..2026_02", {
      "0": k[0] as string,
      "1": k[1] as string,
      "2": k[2] as string,
    });
    await symlink("..2026_02", join(dir, "..data_tmp"));
    await rename(join(dir, "..data_tmp"), join(dir, "..data"));
    expect((await repository.reload()).kind).toBe("changed");
    expect(repository.current().entries.map((e) => e.index)).toEqual([2, 1, 0]);
  });

  it("waits out an empty key file (a copy in progress) instead of dropping the key", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText(), "2": "" });
    const late = generateFernetKeyText();
    const filled = new Promise<void>((resolve) => {
      setTimeout(() => {
        void writeFile(join(dir, "2"), late).then(resolve);
      }, 60);
    });
    const ring = await readKeyRepository(dir, { attempts: 20, settleMs: 20 });
    await filled;
    expect(ring.primary.index).toBe(2);
    // A file that stays empty is skipped in the end, as Keystone skips it.
    await writeFile(join(dir, "2"), "");
    expect((await readKeyRepository(dir, { attempts: 2, settleMs: 5 })).primary.index).toBe(1);
  });

  it("follows the directory when it is replaced (a symbolic link repointed)", async () => {
    const parent = await repo({});
    const a = join(parent, "a");
    const b = join(parent, "b");
    await mkdir(a);
    await mkdir(b);
    await writeFile(join(a, "0"), generateFernetKeyText());
    await writeFile(join(b, "0"), generateFernetKeyText());
    await writeFile(join(b, "5"), generateFernetKeyText());
    const link = join(parent, "keys");
    await symlink(a, link);
    const repository = await open(link, [], 0, true);
    expect(repository.current().primary.index).toBe(0);
    await symlink(b, join(parent, "keys.tmp"));
    await rename(join(parent, "keys.tmp"), link);
    expect((await repository.reload()).kind).toBe("changed");
    expect(repository.current().primary.index).toBe(5);
    // Events now come from the new directory: no polling in this test.
    await writeFile(join(b, "6"), generateFernetKeyText());
    await waitUntil(() => repository.current().primary.index === 6, 5_000, "event from b");
  });

  it("survives an onReload hook and a logger that throw", async () => {
    const dir = await repo({ "0": generateFernetKeyText() });
    const throwing = () => {
      throw new Error("hook failure");
    };
    const repository = await KeyRepository.open({
      directory: dir,
      watch: false,
      pollIntervalMs: 0,
      onReload: throwing,
      logger: { debug: throwing, info: throwing, warn: throwing, error: throwing },
    });
    cleanups.push(() => {
      repository.close();
      return Promise.resolve();
    });
    await writeFile(join(dir, "1"), generateFernetKeyText());
    expect((await repository.reload()).kind).toBe("changed");
    await writeFile(join(dir, "2"), "bad");
    expect((await repository.reload()).kind).toBe("failed");
    expect(repository.status()).toMatchObject({ reloads: 1, reload_failures: 1 });
  });

  it("reports keys with roles, fingerprints and ages", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
    const repository = await open(dir, []);
    const status = repository.status();
    expect(status).toMatchObject({ directory: dir, primary_index: 1, key_count: 2, reloads: 0 });
    expect(status.keys.map((k) => k.role)).toEqual(["primary", "staged"]);
    for (const k of status.keys) {
      expect(k.fingerprint).toMatch(/^[0-9a-f]{16}$/);
      expect(k.age_seconds).toBeGreaterThanOrEqual(0);
      expect(k.age_seconds).toBeLessThan(60);
    }
  });

  it("shares one read between concurrent reload calls", async () => {
    const dir = await repo({ "0": generateFernetKeyText() });
    const outcomes: ReloadOutcome[] = [];
    const repository = await open(dir, outcomes);
    const a = repository.reload();
    const b = repository.reload();
    expect(a).toBe(b);
    await a;
    await waitUntil(() => outcomes.length >= 2, 2_000, "queued rerun");
    expect(outcomes.every((o) => o.kind === "unchanged")).toBe(true);
  });
});

describe("KeyRepository.recheck (a token no key verifies: look again before deciding)", () => {
  it("reads a key that reached the disk before its event; at most one read per interval; joins a read under way", async () => {
    const dir = await repo({ "0": generateFernetKeyText(), "1": generateFernetKeyText() });
    let nowMs = 1_900_000_000_000;
    const outcomes: ReloadOutcome[] = [];
    const repository = await KeyRepository.open({
      directory: dir,
      watch: false, // no event will come: only a re-read finds the new key
      pollIntervalMs: 0,
      clock: { nowMs: () => nowMs as EpochMillis },
      onReload: (o) => outcomes.push(o),
    });
    cleanups.push(() => {
      repository.close();
      return Promise.resolve();
    });
    await writeFile(join(dir, "2"), generateFernetKeyText());

    // Concurrent callers share one read, queueing no other.
    const a = repository.recheck(1_000);
    const b = repository.recheck(1_000);
    expect(a).toBe(b);
    expect((await a)?.kind).toBe("changed");
    expect(repository.current().primary.index).toBe(2);
    expect(outcomes).toHaveLength(1);

    // Within the interval: no read at all.
    nowMs += 999;
    expect(await repository.recheck(1_000)).toBeUndefined();
    expect(outcomes).toHaveLength(1);
    // Past it: one more read.
    nowMs += 1;
    expect((await repository.recheck(1_000))?.kind).toBe("unchanged");
    expect(outcomes).toHaveLength(2);
    // A read started by anyone (a poll, an event) counts too.
    nowMs += 5_000;
    await repository.reload();
    expect(await repository.recheck(1_000)).toBeUndefined();
    // Closed: nothing.
    nowMs += 5_000;
    repository.close();
    expect(await repository.recheck(1_000)).toBeUndefined();
  });
});
