/**
 * Owns: a TCP relay on a free loopback port in front of a real server (Keystone, memcached,
 * a service) that can be made slow while traffic runs through it: each chunk of the
 * answers (target → client) is held back `delayMs`, order kept. `cut()` destroys every
 * connection open through it, so that a client's pooled keep-alive connections meet the
 * new delay (or a fresh start) at once. `blackhole` makes it a network partition: bytes
 * stop flowing both ways on the connections open through it, and new ones are accepted but
 * never reach the target nor hear back (a client sees timeouts, not refusals, as across a
 * WAN that drops packets); ending it resets every connection that lived through it. Counts
 * connections accepted and open. Only node: built-ins.
 */
import { createConnection, createServer, type Server, type Socket } from "node:net";

export interface TcpRelay {
  readonly host: "127.0.0.1";
  readonly port: number;
  /** Each chunk from the target waits this long before it reaches the client, ms. */
  delayMs: number;
  /**
   * A partition while true: nothing passes either way, new connections are held silent.
   * Set back to false, the connections caught in it are destroyed (clients reconnect).
   */
  blackhole: boolean;
  /** Connections accepted so far. */
  readonly accepted: number;
  /** Client connections open now. */
  readonly open: number;
  /** Destroys every open connection. */
  cut(): void;
  /** Closes the listener and every connection. */
  close(): Promise<void>;
}

/** The answers of one relayed connection: chunks released in order, each after its delay. */
class DelayedPipe {
  private readonly queue: { readonly at: number; readonly chunk: Buffer }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ended = false;

  constructor(
    private readonly to: Socket,
    private readonly delay: () => number,
  ) {}

  push(chunk: Buffer): void {
    const last = this.queue[this.queue.length - 1]?.at ?? 0;
    this.queue.push({ at: Math.max(Date.now() + this.delay(), last), chunk });
    this.drain();
  }

  end(): void {
    this.ended = true;
    this.drain();
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue.length = 0;
  }

  private drain(): void {
    if (this.timer !== undefined) return;
    const now = Date.now();
    for (let next = this.queue[0]; next !== undefined && next.at <= now; next = this.queue[0]) {
      this.queue.shift();
      if (!this.to.destroyed) this.to.write(next.chunk);
    }
    const next = this.queue[0];
    if (next !== undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.drain();
      }, next.at - now);
      return;
    }
    if (this.ended && !this.to.destroyed) this.to.end();
  }
}

/** Starts a relay to `target`, passing everything through without delay. */
export async function startTcpRelay(target: { host: string; port: number }): Promise<TcpRelay> {
  let accepted = 0;
  const sockets = new Set<Socket>();
  const clients = new Set<Socket>();
  const state = { delayMs: 0, blackhole: false };
  /** Connections that lost bytes to a partition (or were held silent by one). */
  const partitioned = new Set<Socket>();

  const server: Server = createServer((client) => {
    accepted++;
    sockets.add(client);
    clients.add(client);
    if (state.blackhole) {
      partitioned.add(client);
      client.on("error", () => client.destroy());
      client.on("close", () => {
        sockets.delete(client);
        clients.delete(client);
        partitioned.delete(client);
      });
      return;
    }
    const upstream = createConnection({ host: target.host, port: target.port });
    sockets.add(upstream);
    const down = new DelayedPipe(client, () => state.delayMs);
    const teardown = (): void => {
      down.stop();
      client.destroy();
      upstream.destroy();
    };
    upstream.on("data", (d: Buffer) => {
      if (state.blackhole) partitioned.add(client);
      else down.push(d);
    });
    client.on("data", (d: Buffer) => {
      if (state.blackhole) partitioned.add(client);
      else if (!upstream.destroyed) upstream.write(d);
    });
    upstream.on("end", () => {
      down.end();
    });
    client.on("end", () => {
      upstream.end();
    });
    upstream.on("error", teardown);
    client.on("error", teardown);
    upstream.on("close", () => {
      sockets.delete(upstream);
      // let what is queued for the client go out first
      if (!client.destroyed) setTimeout(teardown, state.delayMs + 10).unref();
    });
    client.on("close", () => {
      sockets.delete(client);
      clients.delete(client);
      partitioned.delete(client);
      teardown();
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port: 0, exclusive: true }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("no address");

  const cut = (): void => {
    for (const s of sockets) s.destroy();
  };

  return {
    host: "127.0.0.1",
    port: address.port,
    get delayMs() {
      return state.delayMs;
    },
    set delayMs(ms: number) {
      state.delayMs = ms;
    },
    get blackhole() {
      return state.blackhole;
    },
    set blackhole(on: boolean) {
      if (on === state.blackhole) return;
      state.blackhole = on;
      if (on) {
        // every connection open now is caught in it, and reset when it heals
        for (const c of clients) partitioned.add(c);
        return;
      }
      for (const c of partitioned) c.destroy();
      partitioned.clear();
    },
    get accepted() {
      return accepted;
    },
    get open() {
      return clients.size;
    },
    cut,
    async close() {
      cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
