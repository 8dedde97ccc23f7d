/**
 * The running edge's listeners: the proxy (`listen`), the admin listener (`admin_listen`)
 * and the Identity face (`identity_listen`, optional).
 *
 * Owns: opening them once, for the life of the process, each calling the handler of the
 * configuration in force through one indirection (a reload changes what `current()`
 * returns, never the listeners' own wiring); the client limits on the proxy and Identity
 * listeners, re-applied on reload to connections accepted from then on; their TLS (`tls`),
 * its certificates swapped on reload for new handshakes while open connections carry on;
 * and the orderly close: the proxy stops accepting and finishes requests in flight within
 * a grace period, the others close last.
 */
import type { RequestListener, Server } from "node:http";
import {
  createServer as createNetServer,
  type AddressInfo,
  type Server as NetServer,
} from "node:net";
import type { Server as TlsServer } from "node:tls";

import { createAdminListener } from "../admin/admin-server.js";
import type { EdgeMetrics } from "../admin/metrics.js";
import { parseListenAddress, type Config } from "../config/schema.js";
import { ListenError } from "../errors.js";
import { applyListenerLimits, createLimitedListener } from "../proxy/client-limits.js";
import { tlsServerOptions, type ListenerTlsMaterial } from "../proxy/tls.js";

/** One configuration's request handlers. */
export interface Handlers {
  readonly proxy: RequestListener;
  readonly admin: RequestListener;
  /** Present exactly when `identity_listen` is set. */
  readonly identity: RequestListener | undefined;
}

/** A host and port a listener is bound to (the OS's port when the config said 0). */
export interface BoundAddress {
  readonly host: string;
  readonly port: number;
}

/**
 * Binds `server`. `exclusive`: never shared with other cluster workers (the admin
 * listener: in a worker it is private, and a shared port 0 would be one port for all).
 */
function listen(
  server: NetServer,
  option: ListenOption,
  hostPort: string,
  exclusive = false,
): Promise<BoundAddress> {
  const parsed = parseListenAddress(hostPort);
  if (!parsed) throw new Error(`invalid listen address ${hostPort}`);
  return new Promise((resolve, reject) => {
    const failed = (error: Error): void => {
      reject(listenError(option, hostPort, error));
    };
    server.once("error", failed);
    server.listen({ port: parsed.port, host: parsed.host, exclusive }, () => {
      server.off("error", failed);
      const a = server.address() as AddressInfo;
      resolve({ host: a.address, port: a.port });
    });
  });
}

/** The options that name a listener, in the order they are opened. */
export const LISTEN_OPTIONS = ["listen", "admin_listen", "identity_listen"] as const;
export type ListenOption = (typeof LISTEN_OPTIONS)[number];

/**
 * The {@link ListenError} for `error`, the failure to bind `hostPort` of `option`: one line
 * naming the option, the address, the cause and what usually fixes it.
 */
export function listenError(option: ListenOption, hostPort: string, error: unknown): ListenError {
  const code = (error as { code?: unknown }).code;
  const systemCode = typeof code === "string" ? code : "unknown";
  const where = `${option}: cannot listen on ${hostPort}`;
  switch (systemCode) {
    case "EADDRINUSE":
      return new ListenError(
        option,
        systemCode,
        `${where}: the address is in use by another process (EADDRINUSE); ` +
          `find it with \`ss -ltnp 'sport = :${portOf(hostPort)}'\`. ` +
          "In front of a service the edge takes the service's public port and the service moves to the port `upstream` names",
      );
    case "EACCES":
      return new ListenError(
        option,
        systemCode,
        `${where}: permission denied (EACCES); ports below 1024 need root or ` +
          "CAP_NET_BIND_SERVICE (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or listen on a port above 1023",
      );
    case "EADDRNOTAVAIL":
      return new ListenError(
        option,
        systemCode,
        `${where}: no interface of this host has that address (EADDRNOTAVAIL); use one of its addresses, 127.0.0.1 or 0.0.0.0`,
      );
    default:
      return new ListenError(
        option,
        systemCode,
        `${where} (${systemCode}): ${error instanceof Error ? error.message : String(error)}`,
      );
  }
}

/**
 * Binds each listener address of `config` for a moment and closes it again: `serve`'s
 * pre-flight before anything starts, so that a taken port is one {@link ListenError}
 * before any Keystone call, from one process rather than one per worker. Port 0 always
 * binds.
 *
 * @throws ListenError for the first address that cannot be bound.
 */
export async function checkListenable(
  config: Pick<Config, "listen" | "admin_listen" | "identity_listen">,
): Promise<void> {
  for (const option of LISTEN_OPTIONS) {
    const hostPort = config[option];
    if (hostPort === undefined) continue;
    const probe = createNetServer();
    await listen(probe, option, hostPort, true);
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  }
}

function portOf(hostPort: string): string {
  return String(parseListenAddress(hostPort)?.port ?? hostPort);
}

export class Listeners {
  private constructor(
    private readonly proxy: Server,
    private readonly admin: Server,
    private readonly identity: Server | undefined,
    readonly address: BoundAddress,
    readonly adminAddress: BoundAddress,
    readonly identityAddress: BoundAddress | undefined,
  ) {}

  /**
   * Opens the listeners of `config`, each passing its requests to `current()`'s handler;
   * the proxy and Identity listeners serve HTTPS with `tls` (loaded from `config.tls`).
   * Closes the ones already open when one cannot listen (a taken port).
   */
  static async open(
    config: Readonly<Config>,
    current: () => Handlers,
    metrics: EdgeMetrics,
    tls?: ListenerTlsMaterial,
  ): Promise<Listeners> {
    // The handshake is part of getting a request's head: the same deadline.
    const secure =
      tls === undefined ? undefined : tlsServerOptions(tls, config.client.headers_timeout_ms);
    const proxy = createLimitedListener(
      config.client,
      (req, res) => {
        current().proxy(req, res);
      },
      (reason) => {
        metrics.clientRefusals.inc({ listener: "proxy", reason });
      },
      secure,
    );
    const admin = createAdminListener((req, res) => {
      current().admin(req, res);
    });
    const identity =
      config.identity_listen === undefined
        ? undefined
        : createLimitedListener(
            config.client,
            (req, res) => {
              // Present for every core: identity_listen cannot change on reload.
              current().identity?.(req, res);
            },
            (reason) => {
              metrics.clientRefusals.inc({ listener: "identity", reason });
            },
            secure,
          );
    const opened: Server[] = [];
    try {
      const address = await listen(proxy, "listen", config.listen);
      opened.push(proxy);
      const adminAddress = await listen(admin, "admin_listen", config.admin_listen, true);
      opened.push(admin);
      const identityAddress =
        identity === undefined || config.identity_listen === undefined
          ? undefined
          : await listen(identity, "identity_listen", config.identity_listen);
      return new Listeners(proxy, admin, identity, address, adminAddress, identityAddress);
    } catch (error) {
      for (const server of opened) server.close();
      throw error;
    }
  }

  /** The client limits of a reloaded configuration, for connections accepted from now on. */
  applyLimits(config: Readonly<Config>): void {
    applyListenerLimits(this.proxy, config.client);
    if (this.identity !== undefined) applyListenerLimits(this.identity, config.client);
  }

  /**
   * New certificates (a reload): handshakes from now on use them; connections already open
   * keep theirs. The listeners serve HTTPS only if they were opened with TLS.
   */
  applyTls(tls: ListenerTlsMaterial): void {
    for (const server of [this.proxy, this.identity]) {
      if (server !== undefined && "setSecureContext" in server) {
        (server as unknown as TlsServer).setSecureContext(tls.context);
      }
    }
  }

  /**
   * Stops accepting, gives requests in flight on the proxy up to `graceMs`, then cuts what
   * is left and closes the Identity and admin listeners.
   */
  async close(graceMs: number): Promise<void> {
    const closed = new Promise<void>((resolve) => this.proxy.close(() => resolve()));
    this.proxy.closeIdleConnections();
    await Promise.race([closed, new Promise((r) => setTimeout(r, graceMs).unref())]);
    this.proxy.closeAllConnections();
    this.admin.closeAllConnections();
    this.admin.close();
    this.identity?.closeAllConnections();
    this.identity?.close();
  }
}
