/**
 * TLS on the client-facing listeners (`listen`, `identity_listen`).
 *
 * Owns: reading and checking the served certificate, its key and the client CA bundle
 * before anything is served with them — each failure a {@link ConfigError} naming the
 * option (a missing file, a file that is not PEM, a key that is not the certificate's, a
 * certificate past its end) — and Node's options built from them: TLS 1.2 or newer
 * (`min_version`), Node's default cipher suites and renegotiation limit, `http/1.1` over ALPN,
 * a client certificate required and verified when `client_cafile` is set. Also what an
 * operator must hear: the certificate's subject and end, and warnings for one that is not
 * yet valid or ends within {@link EXPIRY_WARNING_DAYS} days. Called at start-up and on
 * every reload (SIGHUP), so a renewed certificate is picked up without a restart.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { createSecureContext, type SecureContextOptions, type TlsOptions } from "node:tls";

import type { ListenerTls } from "../config/schema.js";
import { ConfigError } from "../errors.js";

/** A served certificate ending within this many days is warned about at start-up and reload. */
export const EXPIRY_WARNING_DAYS = 14;

const DAY_MS = 86_400_000;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The served certificate, as operators see it in logs, metrics and `/status`. */
export interface ServedCertificate {
  readonly subject: string;
  readonly issuer: string;
  /** Subject alternative names, as OpenSSL prints them (`DNS:edge.example, IP Address:…`). */
  readonly subjectAltName: string | undefined;
  readonly notBeforeMs: number;
  readonly notAfterMs: number;
  /** SHA-256 fingerprint, colon-separated hex. */
  readonly fingerprint256: string;
}

/** The listeners' TLS, loaded and checked. */
export interface ListenerTlsMaterial {
  /** For `tls.Server#setSecureContext` (a reload) and the server's creation. */
  readonly context: SecureContextOptions;
  /** Whether a client certificate is asked for and required (`client_cafile` set). */
  readonly clientCertificates: "required" | "off";
  readonly certificate: ServedCertificate;
  /** Certificates in `client_cafile` (0 when it is not set). */
  readonly clientCaCount: number;
  /** Things an operator must hear (a certificate not yet valid, or ending soon). */
  readonly warnings: readonly string[];
}

function problem(option: string, message: string): ConfigError {
  return new ConfigError("invalid_config", `${option}: ${message}`, [`${option}: ${message}`]);
}

function read(option: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw problem(option, `cannot read ${path} (${String(code ?? error)})`);
  }
}

function certificates(option: string, path: string, pem: Buffer): X509Certificate[] {
  const blocks = pem.toString("latin1").match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) throw problem(option, `no PEM certificate in ${path}`);
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block);
    } catch (error) {
      throw problem(
        option,
        `certificate ${String(i + 1)} in ${path} does not parse (${errorText(error)})`,
      );
    }
  });
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Reads and checks the files `tls` names. `nowMs` decides expiry (default: now).
 * @throws ConfigError `invalid_config`, naming the option at fault.
 */
export function loadListenerTls(tls: ListenerTls, nowMs: number = Date.now()): ListenerTlsMaterial {
  const certPem = read("tls.certfile", tls.certfile);
  const chain = certificates("tls.certfile", tls.certfile, certPem);
  const leaf = chain[0] as X509Certificate;
  const keyPem = read("tls.keyfile", tls.keyfile);
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw problem(
      "tls.keyfile",
      `${tls.keyfile} is not an unencrypted PEM private key (${errorText(error)})`,
    );
  }
  if (!leaf.checkPrivateKey(key)) {
    throw problem(
      "tls.keyfile",
      `${tls.keyfile} is not the key of the certificate in tls.certfile (${leaf.subject.replace(/\n/g, ", ")})`,
    );
  }
  const notBeforeMs = Date.parse(leaf.validFrom);
  const notAfterMs = Date.parse(leaf.validTo);
  if (!(notAfterMs > nowMs)) {
    throw problem(
      "tls.certfile",
      `the certificate in ${tls.certfile} expired at ${new Date(notAfterMs).toISOString()}`,
    );
  }
  let ca: Buffer | undefined;
  let clientCaCount = 0;
  if (tls.client_cafile !== null) {
    ca = read("tls.client_cafile", tls.client_cafile);
    clientCaCount = certificates("tls.client_cafile", tls.client_cafile, ca).length;
  }
  const context: SecureContextOptions = {
    cert: certPem,
    key: keyPem,
    minVersion: tls.min_version,
    ...(ca === undefined ? {} : { ca }),
  };
  try {
    createSecureContext(context);
  } catch (error) {
    throw problem("tls", `OpenSSL refused the certificate, key or CA (${errorText(error)})`);
  }
  const warnings: string[] = [];
  if (notBeforeMs > nowMs) {
    warnings.push(
      `the served certificate is not valid before ${new Date(notBeforeMs).toISOString()}: clients will refuse it until then (is this host's clock right?)`,
    );
  }
  const daysLeft = (notAfterMs - nowMs) / DAY_MS;
  if (daysLeft < EXPIRY_WARNING_DAYS) {
    warnings.push(
      `the served certificate ends in ${daysLeft.toFixed(1)} days (${new Date(notAfterMs).toISOString()}): renew it, then SIGHUP`,
    );
  }
  return {
    context,
    clientCertificates: ca === undefined ? "off" : "required",
    certificate: {
      subject: leaf.subject.replace(/\n/g, ", "),
      issuer: leaf.issuer.replace(/\n/g, ", "),
      subjectAltName: leaf.subjectAltName,
      notBeforeMs,
      notAfterMs,
      fingerprint256: leaf.fingerprint256,
    },
    clientCaCount,
    warnings,
  };
}

/**
 * Node's options for an HTTPS listener serving `material`: its secure context, a client
 * certificate required when a client CA is set (the handshake fails without one, or with
 * one the CA did not sign), `http/1.1` over ALPN, and a handshake deadline.
 */
export function tlsServerOptions(
  material: ListenerTlsMaterial,
  handshakeTimeoutMs: number,
): TlsOptions {
  const required = material.clientCertificates === "required";
  return {
    ...material.context,
    requestCert: required,
    rejectUnauthorized: required,
    ALPNProtocols: ["http/1.1"],
    handshakeTimeout: handshakeTimeoutMs,
  };
}
