/**
 * Owns: a throwaway PKI made with the real `openssl` command for TLS tests — a CA, server
 * certificates it signs (for 127.0.0.1 and localhost), client certificates it signs, and a
 * second, unrelated CA with a client of its own (what a client the edge must refuse holds).
 * P-256 keys, unencrypted PEM, in a temporary directory removed by `remove()`.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A certificate and its key, as files and as PEM text. */
export interface Issued {
  readonly certfile: string;
  readonly keyfile: string;
  readonly cert: string;
  readonly key: string;
}

export interface Pki {
  readonly dir: string;
  /** The CA clients trust for the edge's certificate, and the edge trusts for clients'. */
  readonly ca: Issued;
  /** A CA nobody trusts. */
  readonly rogueCa: Issued;
  /** A server certificate for 127.0.0.1 and localhost, signed by `ca`. */
  server(name: string, options?: { days?: number }): Issued;
  /** A client certificate signed by `ca` (or `rogueCa`). */
  client(name: string, options?: { rogue?: boolean }): Issued;
  remove(): void;
}

function openssl(dir: string, args: readonly string[]): void {
  execFileSync("openssl", args, { cwd: dir, stdio: ["ignore", "ignore", "pipe"] });
}

function newKeyArgs(keyfile: string): string[] {
  return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", keyfile];
}

function issued(dir: string, name: string): Issued {
  const certfile = join(dir, `${name}.pem`);
  const keyfile = join(dir, `${name}.key`);
  return {
    certfile,
    keyfile,
    cert: readFileSync(certfile, "utf8"),
    key: readFileSync(keyfile, "utf8"),
  };
}

function makeCa(dir: string, name: string, cn: string): Issued {
  openssl(dir, [
    "req",
    "-x509",
    ...newKeyArgs(`${name}.key`),
    "-out",
    `${name}.pem`,
    "-days",
    "3",
    "-subj",
    `/CN=${cn}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ]);
  return issued(dir, name);
}

function sign(
  dir: string,
  ca: string,
  name: string,
  cn: string,
  extensions: string,
  days: number,
): Issued {
  openssl(dir, ["req", ...newKeyArgs(`${name}.key`), "-out", `${name}.csr`, "-subj", `/CN=${cn}`]);
  writeFileSync(join(dir, `${name}.ext`), extensions);
  openssl(dir, [
    "x509",
    "-req",
    "-in",
    `${name}.csr`,
    "-CA",
    `${ca}.pem`,
    "-CAkey",
    `${ca}.key`,
    "-CAcreateserial",
    "-out",
    `${name}.pem`,
    "-days",
    String(days),
    "-extfile",
    `${name}.ext`,
  ]);
  return issued(dir, name);
}

/** Makes the two CAs; certificates are issued on demand. */
export function createPki(): Pki {
  const dir = mkdtempSync(join(tmpdir(), "ke-pki-"));
  const ca = makeCa(dir, "ca", "keystone-edge test CA");
  const rogueCa = makeCa(dir, "rogue-ca", "nobody's CA");
  return {
    dir,
    ca,
    rogueCa,
    server(name, options = {}) {
      return sign(
        dir,
        "ca",
        name,
        name,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        options.days ?? 30,
      );
    },
    client(name, options = {}) {
      return sign(
        dir,
        options.rogue === true ? "rogue-ca" : "ca",
        name,
        name,
        "extendedKeyUsage=clientAuth\n",
        30,
      );
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
