/**
 * Owns: TLS for the master Keystone in tests and the sandbox — a throwaway certificate
 * authority and a server certificate for 127.0.0.1 / localhost made per run with
 * /usr/bin/openssl (P-256 keys, valid for two days), and the HTTPS front of the master: a
 * Node HTTPS server on a free loopback port that terminates TLS and relays each request to
 * Keystone's plain `--http11-socket`, the way an HTTPS load balancer stands in front of
 * Keystone in production. It counts the TLS connections it accepts (and how many resumed
 * a session), so that a test can see clients reuse their pooled keep-alive connections
 * instead of handshaking per call.
 *
 * Why not pipe each TLS connection straight to uwsgi: uwsgi closes an idle keep-alive
 * connection after its socket timeout (4 s), which would close the client's TLS connection
 * with it. A load balancer keeps the client side alive on its own terms; so does this one
 * (65 s, announced in `Keep-Alive`), and it opens a short-lived loopback connection to
 * uwsgi per request, which also never pins a uwsgi thread while idle.
 *
 * Only node: built-ins and undici (for a client trusting the CA).
 */
import { connectionListed, isHopByHop } from "../../src/proxy/hop-by-hop.js";
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import {
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
} from "node:http";
import { createServer as createHttpsServer, type Server } from "node:https";
import type { AddressInfo, Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TLSSocket } from "node:tls";
import { Agent } from "undici";

const OPENSSL = "/usr/bin/openssl";

/** A CA and the server certificate it signed, as files (for `keystone.cafile`) and bytes. */
export interface TestCertificates {
  /** The directory holding the files below (mode 0700). */
  readonly dir: string;
  /** The CA certificate, PEM: what clients verify the server with. */
  readonly caFile: string;
  /** The server certificate (SAN `IP:127.0.0.1`, `DNS:localhost`), PEM. */
  readonly certFile: string;
  /** The server's private key, PEM. */
  readonly keyFile: string;
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  /** Removes `dir` (when it was created here). */
  remove(): void;
}

function openssl(args: readonly string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(OPENSSL, args, { cwd, timeout: 30_000 }, (error, _stdout, stderr) => {
      if (error) reject(new Error(`openssl ${args[0] ?? ""} failed: ${stderr}`, { cause: error }));
      else resolve();
    });
  });
}

/**
 * Makes a CA and a server certificate for 127.0.0.1 and localhost, signed by it, in `dir`
 * (default: a new temporary directory, removed by `remove()`).
 */
export async function createTestCertificates(dir?: string): Promise<TestCertificates> {
  const own = dir === undefined;
  const where = dir ?? mkdtempSync(join(tmpdir(), "keystone-edge-tls-"));
  const tag = randomBytes(4).toString("hex");
  const serial = () => `0x${randomBytes(12).toString("hex")}`;
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  // prettier-ignore
  await openssl([
    "req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    "-set_serial", serial(), "-subj", `/CN=keystone-edge test CA ${tag}`,
    "-addext", "basicConstraints=critical,CA:TRUE",
    "-addext", "keyUsage=critical,keyCertSign,cRLSign",
  ], where);
  // prettier-ignore
  await openssl([
    "req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
  ], where);
  writeFileSync(
    join(where, "server.ext"),
    [
      "subjectAltName = IP:127.0.0.1, DNS:localhost",
      "basicConstraints = critical, CA:FALSE",
      "keyUsage = critical, digitalSignature, keyEncipherment",
      "extendedKeyUsage = serverAuth",
      "",
    ].join("\n"),
  );
  // prettier-ignore
  await openssl([
    "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
    "-set_serial", serial(), "-days", "2", "-extfile", "server.ext", "-out", "server.pem",
  ], where);
  // The CA's key has done its work: nothing else is ever signed with it.
  rmSync(join(where, "ca.key"), { force: true });
  rmSync(join(where, "server.csr"), { force: true });
  const files = {
    caFile: join(where, "ca.pem"),
    certFile: join(where, "server.pem"),
    keyFile: join(where, "server.key"),
  };
  return {
    dir: where,
    ...files,
    ca: readFileSync(files.caFile),
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    remove: () => {
      if (own) rmSync(where, { recursive: true, force: true });
    },
  };
}

/** The HTTPS front of a plain-HTTP server. */
export interface TlsFrontend {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** `https://127.0.0.1:<port>` (no path). */
  readonly origin: string;
  /** TLS connections accepted so far (full handshakes and resumed sessions). */
  readonly connections: number;
  /** Of those, how many resumed a TLS session. */
  readonly resumed: number;
  /** TLS connections open now. */
  readonly open: number;
  /** Requests relayed so far. */
  readonly requests: number;
  /** Closes the listener and every connection. */
  close(): Promise<void>;
}

/** Options of {@link startTlsFrontend}. */
export interface TlsFrontendOptions {
  /** The plain-HTTP server behind it (Keystone's uwsgi). */
  readonly target: { readonly host: string; readonly port: number };
  readonly certificates: Pick<TestCertificates, "cert" | "key">;
  /** How long an idle client connection is kept, ms. Default 65 000. */
  readonly keepAliveTimeoutMs?: number;
}

/** The end-to-end headers: hop-by-hop ones (the edge's own list) stop at this hop. */
function endToEnd(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = connectionListed(headers.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || isHopByHop(name, listed)) continue;
    out[name] = value;
  }
  return out;
}

/** Starts an HTTPS front for `target` on a free loopback port; see the module comment. */
export async function startTlsFrontend(options: TlsFrontendOptions): Promise<TlsFrontend> {
  const counts = { connections: 0, resumed: 0, requests: 0 };
  const open = new Set<Socket>();
  const server: Server = createHttpsServer(
    { cert: options.certificates.cert, key: options.certificates.key },
    (req, res) => {
      counts.requests++;
      const upstream = httpRequest(
        {
          host: options.target.host,
          port: options.target.port,
          method: req.method,
          path: req.url,
          headers: { ...endToEnd(req.headers), "x-forwarded-proto": "https" },
          // one short-lived loopback connection per request (`Connection: close`)
          agent: false,
        },
        (answer: IncomingMessage) => {
          res.writeHead(answer.statusCode ?? 502, endToEnd(answer.headers));
          answer.pipe(res);
          answer.once("error", () => res.destroy());
        },
      );
      upstream.once("error", () => {
        if (!res.headersSent) {
          res.writeHead(502, { "content-type": "text/plain", "content-length": "12" });
          res.end("bad gateway\n");
        } else {
          res.destroy();
        }
      });
      req.pipe(upstream);
      req.once("error", () => upstream.destroy());
      res.once("close", () => {
        if (!res.writableFinished) upstream.destroy();
      });
    },
  );
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 65_000;
  server.headersTimeout = server.keepAliveTimeout + 5_000;
  server.on("secureConnection", (socket: TLSSocket) => {
    counts.connections++;
    if (socket.isSessionReused()) counts.resumed++;
    open.add(socket);
    socket.once("close", () => open.delete(socket));
  });
  server.on("tlsClientError", () => undefined); // a client that gave up mid-handshake
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  let closed: Promise<void> | undefined;
  return {
    host: "127.0.0.1",
    port,
    origin: `https://127.0.0.1:${String(port)}`,
    get connections() {
      return counts.connections;
    },
    get resumed() {
      return counts.resumed;
    },
    get open() {
      return open.size;
    },
    get requests() {
      return counts.requests;
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        for (const socket of open) socket.destroy();
      });
      return closed;
    },
  };
}

/** An undici dispatcher trusting only `ca` (keep-alive, verified: never `rejectUnauthorized: false`). */
export function trustingAgent(ca: Buffer): Agent {
  return new Agent({ connect: { ca }, keepAliveTimeout: 10_000 });
}
