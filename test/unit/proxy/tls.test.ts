/**
 * The listeners' TLS material (src/proxy/tls.ts) from certificates the real `openssl` made:
 * what is accepted, what is refused with the option named, and what an operator is warned
 * about.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { ListenerTls } from "../../../src/config/schema.js";
import { ConfigError } from "../../../src/errors.js";
import { loadListenerTls, tlsServerOptions } from "../../../src/proxy/tls.js";
import { createPki, type Issued, type Pki } from "../../harness/pki.js";

let pki: Pki;
let server: Issued;
let other: Issued;

beforeAll(() => {
  pki = createPki();
  server = pki.server("edge-a");
  other = pki.server("edge-b");
});

afterAll(() => {
  pki.remove();
});

function tls(options: Partial<ListenerTls> = {}): ListenerTls {
  return {
    certfile: server.certfile,
    keyfile: server.keyfile,
    client_cafile: null,
    min_version: "TLSv1.2",
    ...options,
  };
}

function refusal(options: Partial<ListenerTls>, nowMs?: number): ConfigError {
  try {
    loadListenerTls(tls(options), nowMs);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error("loaded");
}

describe("loadListenerTls", () => {
  it("loads a certificate and its key: subject, end, fingerprint; no client certificate asked", () => {
    const material = loadListenerTls(tls());
    expect(material.certificate.subject).toBe("CN=edge-a");
    expect(material.certificate.issuer).toBe("CN=keystone-edge test CA");
    expect(material.certificate.subjectAltName).toContain("IP Address:127.0.0.1");
    const days = (material.certificate.notAfterMs - Date.now()) / 86_400_000;
    expect(days).toBeGreaterThan(29);
    expect(days).toBeLessThan(31);
    expect(material.certificate.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(material.clientCertificates).toBe("off");
    expect(material.clientCaCount).toBe(0);
    expect(material.warnings).toEqual([]);
    expect(material.context.minVersion).toBe("TLSv1.2");
    const options = tlsServerOptions(material, 7_000);
    expect(options).toMatchObject({
      requestCert: false,
      rejectUnauthorized: false,
      handshakeTimeout: 7_000,
      ALPNProtocols: ["http/1.1"],
    });
  });

  it("with client_cafile: client certificates required, verified against that bundle", () => {
    const bundle = join(pki.dir, "bundle.pem");
    writeFileSync(bundle, pki.ca.cert + pki.rogueCa.cert);
    const material = loadListenerTls(tls({ client_cafile: bundle, min_version: "TLSv1.3" }));
    expect(material.clientCertificates).toBe("required");
    expect(material.clientCaCount).toBe(2);
    expect(tlsServerOptions(material, 1_000)).toMatchObject({
      requestCert: true,
      rejectUnauthorized: true,
      minVersion: "TLSv1.3",
    });
  });

  it("refuses a key that is not the certificate's, naming tls.keyfile", () => {
    const e = refusal({ keyfile: other.keyfile });
    expect(e.code).toBe("invalid_config");
    expect(e.problems).toEqual([
      expect.stringMatching(/^tls\.keyfile: .* is not the key of the certificate in tls\.certfile/),
    ]);
  });

  it("refuses missing and unreadable files, and files that are not PEM, naming each option", () => {
    expect(refusal({ certfile: join(pki.dir, "absent.pem") }).problems[0]).toMatch(
      /^tls\.certfile: cannot read .*absent\.pem \(ENOENT\)$/,
    );
    expect(refusal({ keyfile: join(pki.dir, "absent.key") }).problems[0]).toMatch(
      /^tls\.keyfile: cannot read .* \(ENOENT\)$/,
    );
    expect(refusal({ certfile: server.keyfile }).problems[0]).toMatch(
      /^tls\.certfile: no PEM certificate in /,
    );
    expect(refusal({ keyfile: server.certfile }).problems[0]).toMatch(
      /^tls\.keyfile: .* is not an unencrypted PEM private key/,
    );
    const garbled = join(pki.dir, "garbled.pem");
    writeFileSync(
      garbled,
      "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    expect(refusal({ certfile: garbled }).problems[0]).toMatch(
      /^tls\.certfile: certificate 1 in .* does not parse/,
    );
    expect(refusal({ client_cafile: server.keyfile }).problems[0]).toMatch(
      /^tls\.client_cafile: no PEM certificate in /,
    );
  });

  it("refuses a certificate past its end, and warns about one ending within 14 days", () => {
    const material = loadListenerTls(tls());
    const end = material.certificate.notAfterMs;
    expect(refusal({}, end).problems[0]).toMatch(
      /^tls\.certfile: the certificate in .* expired at \d{4}-/,
    );
    const soon = loadListenerTls(tls(), end - 3 * 86_400_000);
    expect(soon.warnings).toEqual([expect.stringMatching(/ends in 3\.0 days .*SIGHUP/)]);
    const early = loadListenerTls(tls(), material.certificate.notBeforeMs - 60_000);
    expect(early.warnings).toEqual([expect.stringMatching(/not valid before .*clock/)]);
  });
});
