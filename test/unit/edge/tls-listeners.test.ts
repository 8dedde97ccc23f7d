/**
 * HTTPS on the edge's own listeners, through a whole in-process edge (startEdge as `serve`
 * wires it) with certificates the real `openssl` made and Node's TLS client: the service
 * hears `https`, plain HTTP and old TLS versions fail the handshake (counted), mutual TLS
 * lets no request without the CA's certificate reach the service, and a reload re-reads
 * the certificate for new handshakes while a kept-alive connection carries on.
 */
import { request as httpsRequest, Agent, type RequestOptions } from "node:https";
import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from "node:tls";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { startEchoUpstream, type EchoUpstream } from "../../harness/echo-upstream.js";
import { createPki, type Issued, type Pki } from "../../harness/pki.js";
import { startRegion, type Region } from "../fault-matrix/region.js";
import { validateConfig } from "../../../src/config/load.js";

let pki: Pki;
let serverA: Issued;
let serverB: Issued;
let nova: Issued;
let intruder: Issued;
let echo: EchoUpstream;
let region: Region | undefined;

beforeAll(async () => {
  pki = createPki();
  serverA = pki.server("edge-a");
  serverB = pki.server("edge-b");
  nova = pki.client("nova-api");
  intruder = pki.client("intruder", { rogue: true });
  echo = await startEchoUpstream();
});

afterEach(async () => {
  await region?.close();
  region = undefined;
});

afterAll(async () => {
  await echo.stop();
  pki.remove();
});

interface HttpsAnswer {
  readonly status: number;
  readonly body: string;
  /** The CN of the certificate the edge served on this connection. */
  readonly servedCn: string;
  /** Its end, epoch seconds. */
  readonly servedNotAfterS: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly socket: TLSSocket;
}

/** One request over HTTPS, trusting the test CA; `client` presents a certificate. */
function get(
  url: string,
  options: { token?: string; client?: Issued; agent?: Agent; path?: string } = {},
): Promise<HttpsAnswer> {
  const target = new URL(options.path ?? "/v2.1/servers", url);
  const tls: RequestOptions & Pick<ConnectionOptions, "ALPNProtocols"> = {
    ca: pki.ca.cert,
    ALPNProtocols: ["http/1.1"],
    ...(options.client === undefined ? {} : { cert: options.client.cert, key: options.client.key }),
  };
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      target,
      {
        ...tls,
        agent: options.agent ?? false,
        headers: options.token === undefined ? {} : { "X-Auth-Token": options.token },
      },
      (res) => {
        // Read now: a kept-alive socket goes back to its agent once the answer ends.
        const socket = res.socket;
        if (!(socket instanceof TLSSocket)) throw new Error("not a TLS socket");
        const served = socket.getPeerCertificate();
        const servedCn = String(served.subject.CN);
        const servedNotAfterS = Date.parse(served.valid_to) / 1000;
        let body = "";
        res.setEncoding("utf8");
        res.on("data", (chunk: string) => (body += chunk));
        res.on("end", () => {
          resolve({
            status: res.statusCode ?? 0,
            body,
            servedCn,
            servedNotAfterS,
            socket,
            headers: res.headers,
          });
        });
      },
    );
    req.on("error", reject);
    req.end();
  });
}

async function startTlsRegion(tls: Record<string, unknown>, identity = false): Promise<Region> {
  region = await startRegion({
    upstream: echo.url,
    tls: { certfile: serverA.certfile, keyfile: serverA.keyfile, ...tls },
    identity,
  });
  return region;
}

describe("TLS on the listeners", () => {
  it("serves HTTPS with the configured certificate; the service hears https; the end is exported", async () => {
    const r = await startTlsRegion({});
    expect(r.url.startsWith("https://")).toBe(true);
    const answer = await get(r.url, { token: r.mint() });
    expect(answer.status).toBe(200);
    expect(answer.servedCn).toBe("edge-a");
    expect(answer.socket.getProtocol()).toMatch(/^TLSv1\.[23]$/);
    expect(answer.socket.alpnProtocol).toBe("http/1.1");
    const seen = JSON.parse(answer.body) as { headers: Record<string, string> };
    expect(seen.headers["x-forwarded-proto"]).toBe("https");
    expect(seen.headers["forwarded"]).toMatch(/proto=https/);
    expect((await get(r.url, { token: r.forged() })).status).toBe(401);
    expect(await r.metric("keystone_edge_tls_certificate_not_after_timestamp_seconds")).toBe(
      answer.servedNotAfterS,
    );
    expect(
      r.logger.lines.some(
        (l) => l.message === "serving HTTPS" && l.fields["subject"] === "CN=edge-a",
      ),
    ).toBe(true);
  });

  it("plain HTTP and a TLS version below min_version fail the handshake, counted as tls_handshake", async () => {
    const r = await startTlsRegion({ min_version: "TLSv1.3" });
    const before = echo.requests();
    await expect(fetch(r.url.replace("https:", "http:"))).rejects.toThrow();
    const port = Number(new URL(r.url).port);
    const old = await new Promise<string>((resolve) => {
      const socket = tlsConnect({
        host: "127.0.0.1",
        port,
        ca: pki.ca.cert,
        maxVersion: "TLSv1.2",
      });
      socket.on("secureConnect", () => {
        resolve("connected");
        socket.destroy();
      });
      socket.on("error", (error: Error) => resolve(error.message));
    });
    expect(old).not.toBe("connected");
    expect((await get(r.url, { token: r.mint() })).status).toBe(200);
    expect(echo.requests()).toBe(before + 1);
    expect(
      await r.metric("keystone_edge_client_refusals_total", {
        listener: "proxy",
        reason: "tls_handshake",
      }),
    ).toBeGreaterThanOrEqual(2);
  });

  it("mutual TLS: no certificate, or one another CA signed, and nothing reaches the service; the CA's client gets through", async () => {
    const r = await startTlsRegion({ client_cafile: pki.ca.certfile });
    const before = echo.requests();
    await expect(get(r.url, { token: r.mint() })).rejects.toThrow();
    await expect(get(r.url, { token: r.mint(), client: intruder })).rejects.toThrow();
    expect(echo.requests()).toBe(before);
    const answer = await get(r.url, { token: r.mint(), client: nova });
    expect(answer.status).toBe(200);
    expect(echo.requests()).toBe(before + 1);
    // The certificate authenticates the connection, not the user: a token is still needed.
    expect((await get(r.url, { client: nova })).status).toBe(401);
  });

  it("a reload re-reads the certificate for new handshakes while a kept-alive connection carries on; a bad one is refused, the old kept", async () => {
    const r = await startTlsRegion({});
    const agent = new Agent({ keepAlive: true, maxSockets: 1, ca: pki.ca.cert });
    try {
      const first = await get(r.url, { token: r.mint(), agent });
      expect(first.servedCn).toBe("edge-a");
      const renewed = validateConfig({
        ...structuredClone(r.config),
        tls: { ...r.config.tls, certfile: serverB.certfile, keyfile: serverB.keyfile },
      });
      expect(await r.edge.reload(renewed)).toMatchObject({ kind: "applied" });
      // The same connection, still open, with the certificate it was opened with.
      const kept = await get(r.url, { token: r.mint(), agent });
      expect(kept.socket).toBe(first.socket);
      expect(kept.status).toBe(200);
      expect(kept.servedCn).toBe("edge-a");
      // A new connection: the new certificate.
      const fresh = await get(r.url, { token: r.mint() });
      expect(fresh.servedCn).toBe("edge-b");
      expect(await r.metric("keystone_edge_tls_certificate_not_after_timestamp_seconds")).toBe(
        fresh.servedNotAfterS,
      );

      const mismatched = validateConfig({
        ...structuredClone(r.config),
        tls: { ...r.config.tls, certfile: serverA.certfile, keyfile: serverB.keyfile },
      });
      const refused = await r.edge.reload(mismatched);
      expect(refused).toMatchObject({ kind: "refused", code: "invalid_config" });
      expect(refused.kind === "refused" && refused.reason).toMatch(/^tls\.keyfile: /);
      expect((await get(r.url, { token: r.mint() })).servedCn).toBe("edge-b");

      const { tls: _dropped, ...plain } = structuredClone(r.config);
      const off = await r.edge.reload(validateConfig(plain));
      expect(off).toMatchObject({ kind: "refused", code: "listen_changed" });
      const mutual = validateConfig({
        ...structuredClone(r.config),
        tls: { ...r.config.tls, client_cafile: pki.ca.certfile },
      });
      expect(await r.edge.reload(mutual)).toMatchObject({
        kind: "refused",
        code: "listen_changed",
      });
      expect((await get(r.url, { token: r.mint() })).status).toBe(200);
    } finally {
      agent.destroy();
    }
  });

  it("identity_listen serves HTTPS with the same certificate", async () => {
    const r = await startTlsRegion({}, true);
    const address = r.edge.identityAddress;
    if (address === undefined) throw new Error("no identity listener");
    const root = `https://127.0.0.1:${String(address.port)}`;
    const answer = await get(root, { path: "/v3" });
    expect(answer.servedCn).toBe("edge-a");
    expect(answer.status).toBe(200);
    // The face names itself with the scheme its clients used.
    const refused = await get(root, { path: "/v3/auth/tokens", token: "not-a-token" });
    expect(refused.status).toBe(401);
    expect(refused.headers["www-authenticate"]).toBe(`Keystone uri="${root}/v3"`);
  });

  it("a certificate that does not go with its key stops start-up, naming tls.keyfile", async () => {
    await expect(
      startRegion({
        upstream: echo.url,
        tls: { certfile: serverA.certfile, keyfile: serverB.keyfile },
      }),
    ).rejects.toMatchObject({
      code: "invalid_config",
      problems: [expect.stringMatching(/^tls\.keyfile: /)],
    });
  });
});
