/**
 * Error classes with stable codes.
 *
 * Owns: every error keystone-edge reports to a caller, each with a `code` that never
 * changes between releases (operators and other checks match on it), and the one place
 * that maps a code to a CLI exit status (and, later, an HTTP status).
 */

/** Codes for a token that cannot be accepted. */
export type TokenErrorCode =
  "malformed" | "bad_signature" | "bad_payload" | "unsupported_version" | "expired";

/** Codes for problems with the key repository. */
export type KeyRepositoryErrorCode =
  "key_repository_missing" | "key_repository_unreadable" | "key_repository_empty" | "invalid_key";

/** Codes for a configuration that cannot be used. */
export type ConfigErrorCode = "config_unreadable" | "invalid_config";

/** Codes for a command line that cannot be run. */
export type UsageErrorCode = "usage";

/** Codes for a drill that could not be run against an edge. */
export type DrillErrorCode =
  | "admin_unreachable"
  | "admin_unauthorized"
  | "admin_refused"
  | "no_known_tokens"
  | "drill_usage"
  | "keystone_refused";

/**
 * Codes for a check that could not be made (`keys check`, `keys status --admin`): Keystone
 * or the edge's admin listener did not give the answer the check needs.
 */
export type CheckErrorCode =
  | "keystone_unreachable"
  | "keystone_refused"
  | "not_fernet_token"
  | "admin_unreachable"
  | "admin_bad_answer";

/** Codes for an audit log that cannot be written (`audit_log.path`). */
export type AuditLogErrorCode = "audit_log_unwritable";

/** Codes for a listener that cannot be opened (`listen`, `admin_listen`, `identity_listen`). */
export type ListenErrorCode = "listen_failed";

export type ErrorCode =
  | AuditLogErrorCode
  | ListenErrorCode
  | TokenErrorCode
  | KeyRepositoryErrorCode
  | ConfigErrorCode
  | UsageErrorCode
  | DrillErrorCode
  | CheckErrorCode;

/** Base class: every error keystone-edge raises on purpose carries a stable code. */
export abstract class EdgeError extends Error {
  abstract readonly code: ErrorCode;

  toJSON(): { code: ErrorCode; message: string } {
    return { code: this.code, message: this.message };
  }
}

/**
 * A token that is not acceptable. Never carries the token itself: messages describe the
 * defect, never the bytes.
 */
export class TokenError extends EdgeError {
  constructor(
    readonly code: TokenErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "TokenError";
  }
}

/** The key repository is missing, unreadable, empty, or holds an invalid key file. */
export class KeyRepositoryError extends EdgeError {
  constructor(
    readonly code: KeyRepositoryErrorCode,
    message: string,
    /** The file or directory at fault. */
    readonly path: string,
  ) {
    super(message);
    this.name = "KeyRepositoryError";
  }
}

/**
 * The audit file cannot be opened for appending (missing directory, no permission, a
 * directory at that path, …). Carries the path; its `cause` is the system's error.
 */
export class AuditLogError extends EdgeError {
  readonly code: AuditLogErrorCode = "audit_log_unwritable";

  constructor(
    message: string,
    /** The file at fault. */
    readonly path: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "AuditLogError";
  }
}

/**
 * A listener the configuration asks for cannot be opened: the port is taken, below 1024
 * without the capability, or the address is not this host's. The message names the option
 * and the cause in one line; `option` is the option's name, `systemCode` the system's code
 * (`EADDRINUSE`, `EACCES`, `EADDRNOTAVAIL`, …).
 */
export class ListenError extends EdgeError {
  readonly code = "listen_failed" as const;
  constructor(
    readonly option: string,
    readonly systemCode: string,
    message: string,
  ) {
    super(message);
    this.name = "ListenError";
  }
}

/** A configuration file that cannot be read or used; `problems` name each option. */
export class ConfigError extends EdgeError {
  constructor(
    readonly code: ConfigErrorCode,
    message: string,
    /**
     * One entry per problem, each starting with the option's dotted path, or for a YAML
     * syntax error with `file:line:column`, then the offending line and a caret on lines
     * of their own (indented).
     */
    readonly problems: readonly string[],
  ) {
    super(message);
    this.name = "ConfigError";
  }
}

/** A command line that cannot be run as given. */
export class UsageError extends EdgeError {
  readonly code = "usage" as const;
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** A drill could not be run: the edge, its admin API or the tokens given did not allow it. */
export class DrillError extends EdgeError {
  constructor(
    readonly code: DrillErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "DrillError";
  }
}

/**
 * A check could not be made: Keystone unreachable or refusing the service user, a token
 * that is not Fernet, an admin listener that does not answer as an edge does. Messages
 * never carry a token or a secret.
 */
export class CheckError extends EdgeError {
  constructor(
    readonly code: CheckErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "CheckError";
  }
}

/** CLI exit statuses, in one place. */
export const ExitStatus = {
  ok: 0,
  /** Unexpected internal failure. */
  internal: 1,
  /**
   * `keys check`: no key of the region's repository decrypts a token Keystone issues now;
   * the region is behind (do not rotate again). That command reports its own internal
   * failures as {@link ExitStatus.checkNotRun}, so from it 1 always means this.
   */
  keysBehind: 1,
  /**
   * Usage, configuration or key repository problems, and a listener that cannot be
   * opened (a taken port): what the operator must fix before the edge can run.
   */
  usage: 2,
  /** The token is invalid (forged, malformed, unknown payload). */
  invalidToken: 3,
  /** The token decodes but has expired. */
  expiredToken: 4,
  /** A drill ran and the region did not behave as it should. */
  drillFailed: 5,
  /** A drill could not run (edge unreachable, secret refused, no usable token). */
  drillNotRun: 6,
  /**
   * A check could not run: Keystone unreachable or refusing the service user (`keys
   * check`), the edge's admin listener unreachable (`keys status --admin`).
   */
  checkNotRun: 6,
  /**
   * `keys check`: the repository decrypts what Keystone issues now, but not with its
   * primary key: the copy is one rotation behind (its staged key matched) or the Keystone
   * that answered is behind it (a secondary matched). Serving, but not in step: do not
   * rotate again.
   */
  keysNotInStep: 7,
  /** Interrupted by SIGINT/SIGTERM after cleaning up (128 + SIGINT). */
  interrupted: 130,
} as const;

export type ExitStatus = (typeof ExitStatus)[keyof typeof ExitStatus];

/** Maps an error to the CLI exit status. */
export function exitStatusFor(error: EdgeError): ExitStatus {
  switch (error.code) {
    case "expired":
      return ExitStatus.expiredToken;
    case "malformed":
    case "bad_signature":
    case "bad_payload":
    case "unsupported_version":
      return ExitStatus.invalidToken;
    case "usage":
    case "audit_log_unwritable":
    case "listen_failed":
    case "config_unreadable":
    case "invalid_config":
    case "key_repository_missing":
    case "key_repository_unreadable":
    case "key_repository_empty":
    case "invalid_key":
    case "drill_usage":
      return ExitStatus.usage;
    case "admin_unreachable":
    case "admin_unauthorized":
    case "admin_refused":
    case "no_known_tokens":
    case "keystone_refused":
      return ExitStatus.drillNotRun;
    case "keystone_unreachable":
    case "not_fernet_token":
    case "admin_bad_answer":
      return ExitStatus.checkNotRun;
  }
}
