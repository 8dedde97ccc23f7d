/**
 * Owns: a fake memcached speaking the binary protocol (what memjs speaks) on a free loopback
 * port, for the faults a real memcached will not produce on demand. Modes, switchable while
 * clients are connected:
 *
 * - `ok`: a working store (GET, SET; anything else "unknown command"), answering each
 *   request after `delayMs` — 0 is a healthy server, more is a slow one;
 * - `garbage`: random bytes of random length instead of each answer;
 * - `garbage-value`: well-formed answers, but every GET is a hit with random bytes as value;
 * - `wrong-opaque`: well-formed answers carrying another request's sequence number;
 * - `bad-length`: an answer header announcing a body of ~4 GB that never comes;
 * - `close`: the connection is closed cleanly (FIN) on the first request.
 *
 * Counts requests per opcode and connections. Only node: built-ins.
 */
import { randomBytes, randomInt } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";

export type FakeMemcachedMode =
  "ok" | "garbage" | "garbage-value" | "wrong-opaque" | "bad-length" | "close";

export interface FakeMemcached {
  readonly port: number;
  /** `127.0.0.1:<port>`, as `cache.memcached_servers` lists it. */
  readonly address: string;
  mode: FakeMemcachedMode;
  /** In mode `ok`, each answer is sent this long after its request, ms. */
  delayMs: number;
  /** Requests received so far, by kind. */
  readonly requests: { get: number; set: number; other: number };
  /** Connections accepted so far. */
  readonly connections: number;
  /** What SETs stored (mode `ok`). */
  readonly store: Map<string, Buffer>;
  close(): Promise<void>;
}

const HEADER_BYTES = 24;
const OP_GET = 0x00;
const OP_SET = 0x01;

interface Request {
  readonly opcode: number;
  readonly opaque: number;
  readonly key: string;
  readonly value: Buffer;
}

function response(opcode: number, opaque: number, status: number, extras: Buffer, value: Buffer) {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt8(0x81, 0);
  header.writeUInt8(opcode, 1);
  header.writeUInt16BE(0, 2);
  header.writeUInt8(extras.length, 4);
  header.writeUInt16BE(status, 6);
  header.writeUInt32BE(extras.length + value.length, 8);
  header.writeUInt32BE(opaque, 12);
  return Buffer.concat([header, extras, value]);
}

/** Starts the fake on 127.0.0.1 (a free port) in mode `ok`. */
export async function startFakeMemcached(): Promise<FakeMemcached> {
  const sockets = new Set<Socket>();
  const requests = { get: 0, set: 0, other: 0 };
  const store = new Map<string, Buffer>();
  let connections = 0;
  const state: { mode: FakeMemcachedMode; delayMs: number } = { mode: "ok", delayMs: 0 };

  const answer = (req: Request): Buffer | undefined => {
    switch (state.mode) {
      case "garbage":
        return randomBytes(randomInt(1, 200));
      case "bad-length": {
        const header = response(req.opcode, req.opaque, 0, Buffer.alloc(0), Buffer.alloc(0));
        header.writeUInt32BE(0xfffffff0, 8);
        return header;
      }
      case "close":
        return undefined;
      case "garbage-value":
        return req.opcode === OP_GET
          ? response(OP_GET, req.opaque, 0, Buffer.alloc(4), randomBytes(randomInt(0, 300)))
          : response(req.opcode, req.opaque, 0, Buffer.alloc(0), Buffer.alloc(0));
      case "wrong-opaque":
      case "ok": {
        const opaque = state.mode === "ok" ? req.opaque : (req.opaque + 1_000) >>> 0;
        if (req.opcode === OP_GET) {
          const value = store.get(req.key);
          return value === undefined
            ? response(OP_GET, opaque, 1, Buffer.alloc(0), Buffer.from("Not found"))
            : response(OP_GET, opaque, 0, Buffer.alloc(4), value);
        }
        if (req.opcode === OP_SET) {
          store.set(req.key, req.value);
          return response(OP_SET, opaque, 0, Buffer.alloc(0), Buffer.alloc(0));
        }
        return response(req.opcode, opaque, 0x81, Buffer.alloc(0), Buffer.from("Unknown command"));
      }
    }
  };

  const server: Server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    let buffer = Buffer.alloc(0);
    socket.on("data", (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      while (buffer.length >= HEADER_BYTES) {
        const bodyLength = buffer.readUInt32BE(8);
        if (buffer.length < HEADER_BYTES + bodyLength) break;
        const extrasLength = buffer.readUInt8(4);
        const keyLength = buffer.readUInt16BE(2);
        const keyStart = HEADER_BYTES + extrasLength;
        const req: Request = {
          opcode: buffer.readUInt8(1),
          opaque: buffer.readUInt32BE(12),
          key: buffer.toString("utf8", keyStart, keyStart + keyLength),
          value: Buffer.from(buffer.subarray(keyStart + keyLength, HEADER_BYTES + bodyLength)),
        };
        buffer = buffer.subarray(HEADER_BYTES + bodyLength);
        if (req.opcode === OP_GET) requests.get++;
        else if (req.opcode === OP_SET) requests.set++;
        else requests.other++;
        if (state.mode === "close") {
          socket.end();
          return;
        }
        const out = answer(req);
        if (out === undefined) continue;
        if (state.mode === "ok" && state.delayMs > 0) {
          setTimeout(() => {
            if (!socket.destroyed) socket.write(out);
          }, state.delayMs).unref();
        } else {
          socket.write(out);
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  const port = address.port;
  return {
    port,
    address: `127.0.0.1:${String(port)}`,
    get mode() {
      return state.mode;
    },
    set mode(mode: FakeMemcachedMode) {
      state.mode = mode;
    },
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    requests,
    get connections() {
      return connections;
    },
    store,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
