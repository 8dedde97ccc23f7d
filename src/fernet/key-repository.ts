/**
 * The region's copy of Keystone's key repository: load, watch, reload, report.
 *
 * Owns: reading a directory of integer-named key files into a {@link KeyRing}, watching it
 * (fs events, plus polling for file systems and volume mounts that send none), swapping in
 * a new ring atomically, and keeping the last good ring when a read is bad, empty or catches
 * a rotation half done. This is a background loop: the request path only calls `current()`.
 */
import { watch as fsWatch, type FSWatcher } from "node:fs";
import { readdir, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { KeyRepositoryError } from "../errors.js";
import { silentLogger, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import { parseFernetKey } from "./envelope.js";
import { KeyRing, type KeyFile, type KeyRingSource, type KeyRole } from "./key-ring.js";

const KEY_FILE_NAME = /^[0-9]{1,15}$/;

function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : undefined;
}

/**
 * Reads a key repository once, as Keystone's `load_keys` does: integer file names only
 * (others, such as `0.tmp` mid-rotation, are ignored), empty files skipped, each key 32 bytes
 * of urlsafe base64. Symbolic links are followed (Kubernetes Secret volumes use them).
 *
 * @throws KeyRepositoryError `key_repository_missing`, `key_repository_unreadable`,
 *   `key_repository_empty`, or `invalid_key` naming the file.
 */
export async function readKeyRepository(directory: string): Promise<KeyRing> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT" || code === "ENOTDIR") {
      throw new KeyRepositoryError(
        "key_repository_missing",
        `key repository ${directory} does not exist or is not a directory`,
        directory,
      );
    }
    throw new KeyRepositoryError(
      "key_repository_unreadable",
      `key repository ${directory} cannot be read (${code ?? String(error)})`,
      directory,
    );
  }
  const files: KeyFile[] = [];
  for (const name of names.filter((n) => KEY_FILE_NAME.test(n))) {
    const path = join(directory, name);
    let text: string;
    let modifiedAtMs: number;
    try {
      const info = await stat(path);
      if (!info.isFile()) continue;
      modifiedAtMs = info.mtimeMs;
      text = await readFile(path, "utf8");
    } catch (error) {
      const code = errnoCode(error);
      throw new KeyRepositoryError(
        "key_repository_unreadable",
        code === "ENOENT"
          ? `key file ${path} vanished while being read (a rotation in progress?)`
          : `key file ${path} cannot be read (${code ?? String(error)})`,
        path,
      );
    }
    if (text.length === 0) continue;
    const key = parseFernetKey(text);
    if (typeof key === "string") {
      throw new KeyRepositoryError("invalid_key", `key file ${path}: ${key}`, path);
    }
    files.push({ index: Number(name), key, modifiedAtMs });
  }
  if (files.length === 0) {
    throw new KeyRepositoryError(
      "key_repository_empty",
      `key repository ${directory} holds no keys (expected files named 0, 1, 2, … ` +
        `as written by keystone-manage fernet_setup)`,
      directory,
    );
  }
  const seen = new Set<number>();
  for (const f of files) {
    if (seen.has(f.index)) {
      // "01" and "1" name the same index.
      throw new KeyRepositoryError(
        "invalid_key",
        `key repository ${directory} has two files for index ${f.index}`,
        directory,
      );
    }
    seen.add(f.index);
  }
  return KeyRing.from(files);
}

/** Options of {@link KeyRepository.open}. */
export interface KeyRepositoryOptions {
  /** The key repository directory (Keystone's `[fernet_tokens] key_repository`). */
  readonly directory: string;
  /** Subscribe to file-system events. Default `true`. */
  readonly watch?: boolean;
  /**
   * Re-read this often whatever the events say: the fallback for NFS and volume mounts that
   * send no events. `0` disables polling. Default 10 000 ms.
   */
  readonly pollIntervalMs?: number;
  /** Wait this long after an event before reading, so a rotation's renames settle. Default 200 ms. */
  readonly settleMs?: number;
  /** After a failed reload, try again this soon. Default 1 000 ms. */
  readonly retryMs?: number;
  /** Default: the wall clock. */
  readonly clock?: Clock;
  /** Default: silent. */
  readonly logger?: Logger;
  /** Called after every reload attempt; metrics hook here. */
  readonly onReload?: (outcome: ReloadOutcome) => void;
}

/** The result of one reload attempt. */
export type ReloadOutcome =
  | { readonly kind: "unchanged"; readonly atMs: number }
  | { readonly kind: "changed"; readonly atMs: number; readonly ring: KeyRing }
  | { readonly kind: "failed"; readonly atMs: number; readonly error: KeyRepositoryError };

/** The health of the last reload. */
type ReloadState =
  | { readonly kind: "ok"; readonly atMs: number }
  | {
      readonly kind: "failing";
      readonly atMs: number;
      readonly sinceMs: number;
      readonly error: KeyRepositoryError;
    };

/** What `keys status` prints and `/status` will show. Snake case: it leaves the process. */
export interface KeyRepositoryStatus {
  readonly directory: string;
  readonly primary_index: number;
  readonly key_count: number;
  readonly keys: readonly {
    readonly index: number;
    readonly role: KeyRole;
    readonly fingerprint: string;
    readonly age_seconds: number;
  }[];
  readonly loaded_at: string;
  readonly last_reload: {
    readonly result: "ok" | "failing";
    readonly at: string;
    readonly failing_since?: string;
    readonly error?: { readonly code: string; readonly message: string };
  };
  readonly reloads: number;
  readonly reload_failures: number;
  readonly watching: "events+poll" | "events" | "poll" | "off";
}

export class KeyRepository implements KeyRingSource {
  private ring: KeyRing;
  private loadedAtMs: number;
  private state: ReloadState;
  private reloads = 0;
  private failures = 0;
  private watcher: FSWatcher | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private pendingTimer: NodeJS.Timeout | undefined;
  private inFlight: Promise<ReloadOutcome> | undefined;
  private rerun = false;
  private closed = false;
  private readonly clock: Clock;
  private readonly logger: Logger;

  private constructor(
    private readonly options: KeyRepositoryOptions,
    ring: KeyRing,
  ) {
    this.clock = options.clock ?? systemClock;
    this.logger = options.logger ?? silentLogger;
    this.ring = ring;
    this.loadedAtMs = this.clock.nowMs();
    this.state = { kind: "ok", atMs: this.loadedAtMs };
  }

  /**
   * Loads the repository and starts watching it. A repository that cannot be loaded now
   * refuses to start: the error says why, naming the directory or file.
   */
  static async open(options: KeyRepositoryOptions): Promise<KeyRepository> {
    const ring = await readKeyRepository(options.directory);
    const repository = new KeyRepository(options, ring);
    repository.start();
    return repository;
  }

  /** The ring to validate with now. Never blocks, never throws. */
  current(): KeyRing {
    return this.ring;
  }

  /**
   * Reads the directory again and swaps in the new ring if it differs. A bad read keeps
   * the last good ring. Concurrent calls share one read (and queue one more after it).
   */
  reload(): Promise<ReloadOutcome> {
    if (this.inFlight) {
      this.rerun = true;
      return this.inFlight;
    }
    const run = this.readOnce().finally(() => {
      this.inFlight = undefined;
      if (this.rerun && !this.closed) {
        this.rerun = false;
        void this.reload();
      }
    });
    this.inFlight = run;
    return run;
  }

  status(): KeyRepositoryStatus {
    const now = this.clock.nowMs();
    const iso = (ms: number): string => new Date(ms).toISOString();
    const ring = this.ring;
    const state = this.state;
    const watching = this.watcher
      ? this.pollTimer
        ? "events+poll"
        : "events"
      : this.pollTimer
        ? "poll"
        : "off";
    return {
      directory: this.options.directory,
      primary_index: ring.primary.index,
      key_count: ring.size,
      keys: ring.entries.map((e) => ({
        index: e.index,
        role: e.role,
        fingerprint: e.key.fingerprint,
        age_seconds: Math.max(0, Math.round((now - e.modifiedAtMs) / 1000)),
      })),
      loaded_at: iso(this.loadedAtMs),
      last_reload:
        state.kind === "ok"
          ? { result: "ok", at: iso(state.atMs) }
          : {
              result: "failing",
              at: iso(state.atMs),
              failing_since: iso(state.sinceMs),
              error: state.error.toJSON(),
            },
      reloads: this.reloads,
      reload_failures: this.failures,
      watching,
    };
  }

  /** Stops watching and polling. The last ring stays readable. */
  close(): void {
    this.closed = true;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.pollTimer) clearInterval(this.pollTimer);
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.pollTimer = undefined;
    this.pendingTimer = undefined;
  }

  private start(): void {
    const { directory } = this.options;
    if (this.options.watch ?? true) {
      try {
        this.watcher = fsWatch(directory, { persistent: false }, () => {
          this.schedule(this.options.settleMs ?? 200);
        });
        this.watcher.on("error", (error) => {
          this.logger.warn("key repository watch failed; relying on polling", {
            directory,
            error: String(error),
          });
          this.watcher?.close();
          this.watcher = undefined;
        });
      } catch (error) {
        this.logger.warn("cannot watch key repository; relying on polling", {
          directory,
          error: String(error),
        });
      }
    }
    const pollMs = this.options.pollIntervalMs ?? 10_000;
    if (pollMs > 0) {
      this.pollTimer = setInterval(() => void this.reload(), pollMs);
      this.pollTimer.unref();
    }
  }

  private schedule(delayMs: number): void {
    if (this.closed) return;
    if (this.pendingTimer) clearTimeout(this.pendingTimer);
    this.pendingTimer = setTimeout(() => {
      this.pendingTimer = undefined;
      void this.reload();
    }, delayMs);
    this.pendingTimer.unref();
  }

  private async readOnce(): Promise<ReloadOutcome> {
    let outcome: ReloadOutcome;
    try {
      const ring = await readKeyRepository(this.options.directory);
      const atMs = this.clock.nowMs();
      this.reloads++;
      if (this.state.kind === "failing") {
        this.logger.info("key repository readable again", { directory: this.options.directory });
      }
      this.state = { kind: "ok", atMs };
      if (ring.signature === this.ring.signature) {
        outcome = { kind: "unchanged", atMs };
      } else {
        const before = this.ring.primary.index;
        this.ring = ring;
        this.loadedAtMs = atMs;
        outcome = { kind: "changed", atMs, ring };
        this.logger.info("key repository reloaded", {
          directory: this.options.directory,
          keys: ring.size,
          primary_index: ring.primary.index,
          previous_primary_index: before,
        });
      }
    } catch (error) {
      const atMs = this.clock.nowMs();
      const failure =
        error instanceof KeyRepositoryError
          ? error
          : new KeyRepositoryError(
              "key_repository_unreadable",
              `key repository ${this.options.directory}: ${String(error)}`,
              this.options.directory,
            );
      this.failures++;
      const sinceMs = this.state.kind === "failing" ? this.state.sinceMs : atMs;
      if (this.state.kind === "ok") {
        this.logger.warn("key repository reload failed; keeping the last good key ring", {
          directory: this.options.directory,
          code: failure.code,
          error: failure.message,
          keys_kept: this.ring.size,
        });
      }
      this.state = { kind: "failing", atMs, sinceMs, error: failure };
      outcome = { kind: "failed", atMs, error: failure };
      this.schedule(this.options.retryMs ?? 1_000);
    }
    this.options.onReload?.(outcome);
    return outcome;
  }
}
