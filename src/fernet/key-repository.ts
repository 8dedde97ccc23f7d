/**
 * The region's copy of Keystone's key repository: load, watch, reload, report.
 *
 * Owns: reading a directory of integer-named key files into a {@link KeyRing}, watching it
 * (fs events, plus polling for file systems and volume mounts that send none), swapping in
 * a new ring atomically, and keeping the last good ring when a read is bad, empty or catches
 * a rotation half done. This is a background loop: the request path only calls `current()`.
 *
 * Size: one background loop and its state (load, watch, poll, retry, last good ring); its
 * parts only make sense together.
 */
import { watch as fsWatch, type FSWatcher } from "node:fs";
import { readdir, readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { KeyRepositoryError } from "../errors.js";
import { silentLogger, type LogFields, type Logger } from "../log.js";
import { systemClock, type Clock } from "../units.js";
import { parseFernetKey } from "./envelope.js";
import { KeyRing, type KeyFile, type KeyRingSource, type KeyRole } from "./key-ring.js";

const KEY_FILE_NAME = /^[0-9]{1,15}$/;

function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "code" in error
    ? String(error.code)
    : undefined;
}

/** The option messages name unless told otherwise ({@link ReadOptions.option}). */
const OPTION = "fernet.key_repository";

/**
 * What to do about a permission error: Keystone's own repository is `keystone:keystone`,
 * the directory 0700 and the keys 0600 (`keystone-manage fernet_setup`), so an edge on the
 * same host, as another user, reads nothing until an operator decides who may.
 */
export const PERMISSION_HINT =
  "the edge's user needs read access; Keystone's keys are 0600 keystone:keystone — add " +
  "the edge's user to the keystone group and make the keys 0640 (the directory 0750), " +
  "or sync a copy it owns";

/** ` (CODE)`, and for a permission error what to do about it. */
function cause(code: string | undefined, error: unknown): string {
  const shown = ` (${code ?? String(error)})`;
  return code === "EACCES" || code === "EPERM" ? `${shown}: ${PERMISSION_HINT}` : shown;
}

/** A failed read that may succeed if tried again in a moment (a change was under way). */
class Unsettled extends Error {}

interface FileStamp {
  readonly name: string;
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
}

/**
 * Where the keys really are. In a Kubernetes Secret volume the files are symbolic links into
 * `..data`, itself a link that the kubelet swaps atomically to a new directory: reading
 * through `..data` gives one consistent generation of keys, never a mix.
 */
async function keySource(directory: string): Promise<string> {
  try {
    return await realpath(join(directory, "..data"));
  } catch {
    return directory;
  }
}

async function listKeyFiles(source: string): Promise<FileStamp[]> {
  const stamps: FileStamp[] = [];
  for (const name of (await readdir(source)).filter((n) => KEY_FILE_NAME.test(n)).sort()) {
    try {
      const info = await stat(join(source, name));
      if (info.isFile()) {
        stamps.push({ name, ino: info.ino, size: info.size, mtimeMs: info.mtimeMs });
      }
    } catch (error) {
      if (errnoCode(error) === "ENOENT") throw new Unsettled(`${name} vanished`);
      throw error;
    }
  }
  return stamps;
}

function sameListing(a: readonly FileStamp[], b: readonly FileStamp[]): boolean {
  return (
    a.length === b.length &&
    a.every((f, i) => {
      const g = b[i];
      return (
        g !== undefined &&
        f.name === g.name &&
        f.ino === g.ino &&
        f.size === g.size &&
        f.mtimeMs === g.mtimeMs
      );
    })
  );
}

/**
 * One read: list, read every key file, list again. A listing that changed under the read
 * (a rotation's renames, a copy in progress) or a file that vanished is {@link Unsettled}.
 * Empty files are skipped, as Keystone skips them, but only when `acceptEmpty` (an empty
 * file is usually a copy caught half way).
 */
async function readOnce(directory: string, acceptEmpty: boolean, option: string): Promise<KeyRing> {
  const source = await keySource(directory);
  const before = await listKeyFiles(source);
  const files: KeyFile[] = [];
  for (const stamp of before) {
    const path = join(directory, stamp.name);
    let text: string;
    try {
      text = await readFile(join(source, stamp.name), "utf8");
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT") throw new Unsettled(`${path} vanished while being read`);
      throw new KeyRepositoryError(
        "key_repository_unreadable",
        `${option}: cannot read key file ${path}${cause(code, error)}`,
        path,
      );
    }
    if (text.trim().length === 0) {
      if (!acceptEmpty) throw new Unsettled(`${path} is empty`);
      continue;
    }
    const key = parseFernetKey(text);
    if (typeof key === "string") {
      throw new KeyRepositoryError("invalid_key", `${option}: key file ${path}: ${key}`, path);
    }
    files.push({ index: Number(stamp.name), key, modifiedAtMs: stamp.mtimeMs });
  }
  if (!sameListing(before, await listKeyFiles(source))) {
    throw new Unsettled(`key repository ${directory} changed while being read`);
  }
  if (files.length === 0) {
    throw new KeyRepositoryError(
      "key_repository_empty",
      `${option}: ${directory} holds no keys (expected files named 0, 1, 2, … ` +
        `as written by keystone-manage fernet_setup)`,
      directory,
    );
  }
  const seen = new Set<number>();
  for (const f of files) {
    if (seen.has(f.index)) {
      // "01" and "1" name the same index; which one Keystone uses depends on listing order.
      throw new KeyRepositoryError(
        "invalid_key",
        `${option}: ${directory} has two files for index ${f.index}`,
        directory,
      );
    }
    seen.add(f.index);
  }
  return KeyRing.from(files);
}

/** Options of {@link readKeyRepository}. */
export interface ReadOptions {
  /** Reads tried while the repository is changing under them. Default 5. */
  readonly attempts?: number;
  /** Pause between those reads. Default 50 ms. */
  readonly settleMs?: number;
  /**
   * What messages call the directory, as the operator gave it: an option or a flag.
   * Default `fernet.key_repository`.
   */
  readonly option?: string;
}

/**
 * Reads a key repository as Keystone's `load_keys` does: integer file names only (others,
 * such as `0.tmp` mid-rotation, are ignored), empty files skipped, each key 32 bytes of
 * base64. Symbolic links are followed, and a Kubernetes Secret volume is read through its
 * `..data` link. A read that catches a rotation or a copy half done is tried again, so a
 * ring is only ever built from a directory that held still while it was read.
 *
 * @throws KeyRepositoryError `key_repository_missing`, `key_repository_unreadable` (also
 *   when the directory never held still), `key_repository_empty`, or `invalid_key`; each
 *   message starts with the option (`fernet.key_repository: `) and names the directory or
 *   file, and a permission error says how to grant access.
 */
export async function readKeyRepository(
  directory: string,
  options: ReadOptions = {},
): Promise<KeyRing> {
  const attempts = Math.max(1, options.attempts ?? 5);
  const option = options.option ?? OPTION;
  let last = "";
  for (let attempt = 1; attempt <= attempts; attempt++) {
    try {
      return await readOnce(directory, attempt === attempts, option);
    } catch (error) {
      if (error instanceof KeyRepositoryError) throw error;
      if (!(error instanceof Unsettled)) throw asRepositoryError(directory, error, option);
      last = error.message;
      if (attempt < attempts) {
        await new Promise((resolve) => setTimeout(resolve, options.settleMs ?? 50));
      }
    }
  }
  throw new KeyRepositoryError(
    "key_repository_unreadable",
    `${option}: ${directory} kept changing while being read (${last})`,
    directory,
  );
}

/** A system error reading `directory` as the operator should read it. */
export function asRepositoryError(
  directory: string,
  error: unknown,
  option: string = OPTION,
): KeyRepositoryError {
  const code = errnoCode(error);
  if (code === "ENOENT" || code === "ENOTDIR") {
    return new KeyRepositoryError(
      "key_repository_missing",
      `${option}: ${directory} does not exist or is not a directory`,
      directory,
    );
  }
  return new KeyRepositoryError(
    "key_repository_unreadable",
    `${option}: cannot read ${directory}${cause(code, error)}`,
    directory,
  );
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
  /** A read that takes longer (a hung NFS mount) counts as failed. Default 10 000 ms. */
  readonly readTimeoutMs?: number;
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
      /** When the repository last read cleanly (epoch ms). */
      readonly lastOkMs: number;
      readonly error: KeyRepositoryError;
    };

/** Age of the primary key's file, seconds; undefined when the ring has none. */
export function primaryKeyAgeSeconds(status: KeyRepositoryStatus): number | undefined {
  return status.keys.find((key) => key.role === "primary")?.age_seconds;
}

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

const DEFAULT_POLL_MS = 10_000;
/** Default least time between two re-reads asked for by `recheck()`, ms. */
export const RECHECK_MIN_INTERVAL_MS = 1_000;

export class KeyRepository implements KeyRingSource {
  private ring: KeyRing;
  private loadedAtMs: number;
  private state: ReloadState;
  private reloads = 0;
  private failures = 0;
  private watcher: FSWatcher | undefined;
  /** The watched directory's identity; a new one means the directory was replaced. */
  private watchedIno: number | undefined;
  private pollTimer: NodeJS.Timeout | undefined;
  private pendingTimer: NodeJS.Timeout | undefined;
  private inFlight: Promise<ReloadOutcome> | undefined;
  /** When the last read began (epoch ms): `recheck()` reads again no sooner than it allows. */
  private lastReadStartedMs = -Infinity;
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
   * refuses to start: the error says why, naming the directory or file. Events are
   * subscribed to before the first read, so a change during start-up is not missed.
   */
  static async open(options: KeyRepositoryOptions): Promise<KeyRepository> {
    const seen = { change: false };
    const early =
      (options.watch ?? true)
        ? tryWatch(options.directory, () => {
            seen.change = true;
          })
        : undefined;
    let ring: KeyRing;
    try {
      ring = await readKeyRepository(options.directory);
    } finally {
      early?.close();
    }
    const repository = new KeyRepository(options, ring);
    await repository.start();
    if (seen.change) repository.schedule(options.settleMs ?? 200);
    return repository;
  }

  /** The ring to validate with now. Never blocks, never throws. */
  current(): KeyRing {
    return this.ring;
  }

  /**
   * Reads the directory again and swaps in the new ring if it differs. A bad read keeps
   * the last good ring. Concurrent calls share one read (and queue one more after it).
   * Never rejects.
   */
  reload(): Promise<ReloadOutcome> {
    if (this.inFlight) {
      this.rerun = true;
      return this.inFlight;
    }
    this.lastReadStartedMs = this.clock.nowMs();
    const run = this.readAndSwap().finally(() => {
      this.inFlight = undefined;
      if (this.rerun && !this.closed) {
        this.rerun = false;
        void this.reload();
      }
    });
    this.inFlight = run;
    return run;
  }

  /**
   * A re-read asked for by the request path: a well-formed token that no key of the ring
   * verifies may be signed with a key whose sync reached the disk before its fs event
   * reached us. Joins a read under way (without queueing another); else reads now, unless
   * a read began less than `minIntervalMs` ago (then resolves at once, undefined): however
   * many such tokens arrive, at most one read per interval. Never rejects.
   */
  recheck(minIntervalMs = RECHECK_MIN_INTERVAL_MS): Promise<ReloadOutcome | undefined> {
    if (this.inFlight) return this.inFlight;
    if (this.closed || this.clock.nowMs() - this.lastReadStartedMs < minIntervalMs) {
      return Promise.resolve(undefined);
    }
    return this.reload();
  }

  /** When the repository last read cleanly (epoch ms), now or before the failing re-reads. */
  lastSuccessMs(): number {
    return this.state.kind === "ok" ? this.state.atMs : this.state.lastOkMs;
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

  private async start(): Promise<void> {
    if (this.options.watch ?? true) await this.watch();
    const pollMs = this.options.pollIntervalMs ?? DEFAULT_POLL_MS;
    if (pollMs > 0) this.startPolling(pollMs);
  }

  private startPolling(intervalMs: number): void {
    if (this.pollTimer || this.closed) return;
    this.pollTimer = setInterval(() => void this.reload(), intervalMs);
    this.pollTimer.unref();
  }

  /** (Re)subscribes to events on the directory as it is now. */
  private async watch(): Promise<void> {
    const { directory } = this.options;
    this.watcher?.close();
    this.watcher = undefined;
    if (this.closed) return;
    this.watchedIno = await directoryIno(directory);
    this.watcher = tryWatch(
      directory,
      () => {
        this.schedule(this.options.settleMs ?? 200);
      },
      (error) => {
        this.safeLog("warn", "key repository watch failed; relying on polling", {
          directory,
          error: String(error),
        });
        this.watcher?.close();
        this.watcher = undefined;
        this.startPolling(this.options.pollIntervalMs || DEFAULT_POLL_MS);
      },
    );
    if (!this.watcher) {
      this.safeLog("warn", "cannot watch key repository; relying on polling", { directory });
      this.startPolling(this.options.pollIntervalMs || DEFAULT_POLL_MS);
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

  private async readAndSwap(): Promise<ReloadOutcome> {
    const { directory } = this.options;
    let outcome: ReloadOutcome;
    try {
      const ring = await withDeadline(
        readKeyRepository(directory),
        this.options.readTimeoutMs ?? 10_000,
        () =>
          new KeyRepositoryError(
            "key_repository_unreadable",
            `${OPTION}: ${directory} did not answer within ${String(this.options.readTimeoutMs ?? 10_000)} ms`,
            directory,
          ),
      );
      const atMs = this.clock.nowMs();
      this.reloads++;
      if (this.state.kind === "failing") {
        this.safeLog("info", "key repository readable again", { directory });
      }
      this.state = { kind: "ok", atMs };
      if (ring.signature === this.ring.signature) {
        outcome = { kind: "unchanged", atMs };
      } else {
        const before = this.ring.primary.index;
        this.ring = ring;
        this.loadedAtMs = atMs;
        outcome = { kind: "changed", atMs, ring };
        this.safeLog("info", "key repository reloaded", {
          directory,
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
              `${OPTION}: ${directory}: ${String(error)}`,
              directory,
            );
      this.failures++;
      const sinceMs = this.state.kind === "failing" ? this.state.sinceMs : atMs;
      const lastOkMs = this.state.kind === "failing" ? this.state.lastOkMs : this.state.atMs;
      if (this.state.kind === "ok") {
        this.safeLog("warn", "key repository reload failed; keeping the last good key ring", {
          directory,
          code: failure.code,
          error: failure.message,
          keys_kept: this.ring.size,
        });
      }
      this.state = { kind: "failing", atMs, sinceMs, lastOkMs, error: failure };
      outcome = { kind: "failed", atMs, error: failure };
      this.schedule(this.options.retryMs ?? 1_000);
    }
    // A directory replaced or a symbolic link repointed silently ends fs events: follow it.
    if (this.watcher && !this.closed && (await directoryIno(directory)) !== this.watchedIno) {
      await this.watch();
    }
    try {
      this.options.onReload?.(outcome);
    } catch (error) {
      this.safeLog("error", "key repository onReload hook threw", { error: String(error) });
    }
    return outcome;
  }

  /** Logging must never take the loop down. */
  private safeLog(level: "info" | "warn" | "error", message: string, fields: LogFields): void {
    try {
      this.logger[level](message, fields);
    } catch {
      // Nothing sensible is left to do.
    }
  }
}

function tryWatch(
  directory: string,
  onChange: () => void,
  onError?: (error: unknown) => void,
): FSWatcher | undefined {
  try {
    const watcher = fsWatch(directory, { persistent: false }, onChange);
    watcher.on("error", (error) => {
      onError?.(error);
    });
    return watcher;
  } catch {
    return undefined;
  }
}

async function directoryIno(directory: string): Promise<number | undefined> {
  try {
    return (await stat(directory)).ino;
  } catch {
    return undefined;
  }
}

/** `promise`, or `onTimeout()` as a rejection after `ms` (the promise is left to settle). */
function withDeadline<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(onTimeout());
    }, ms);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => {
    clearTimeout(timer);
  });
}
