/**
 * Owns: the small loopback network helpers the harness pieces share: a free port, and
 * whether a memcached answers.
 */
import * as net from "node:net";

/** A currently free TCP port on 127.0.0.1 (bind to 0, read, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", reject);
    srv.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr !== null && typeof addr === "object") resolve(addr.port);
        else reject(new Error("could not determine a free port"));
      });
    });
  });
}

/** True when a memcached on 127.0.0.1:port answers `version` within `timeoutMs` (default 500). */
export function memcachedAnswers(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (ok: boolean): void => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => {
      done(false);
    });
    sock.once("error", () => {
      done(false);
    });
    sock.once("connect", () => sock.write("version\r\n"));
    sock.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      if (buf.includes("\r\n")) done(buf.startsWith("VERSION "));
    });
  });
}
