/**
 * HTTPS with mutual TLS on the edge's listeners, against real clients and the real
 * Keystone: curl (OpenSSL) through the proxy, and the OpenStack client (python-openstackclient
 * over keystoneauth and Python's ssl) issuing a token through the Identity face. A client
 * without a certificate, or with one another CA signed, never gets a request to the
 * service or to Keystone; a client with the CA's certificate gets the same answers as over
 * plain HTTP.
 */
import { execFile } from "node:child_process";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";

import type { RunningEdge } from "../../src/edge/running-edge.js";
import { issueToken } from "../harness/client.js";
import { startEchoUpstream, type EchoUpstream } from "../harness/echo-upstream.js";
import { adminUser, edgeConfigDocument } from "../harness/edge-config.js";
import { createPki, type Issued, type Pki } from "../harness/pki.js";
import { startTestEdge } from "../harness/test-edge.js";

const keystone = inject("keystone");
let pki: Pki;
let nova: Issued;
let intruder: Issued;
let echo: EchoUpstream;
let edge: RunningEdge;
let proxyUrl = "";
let identityUrl = "";
let token = "";

beforeAll(async () => {
  pki = createPki();
  const server = pki.server("edge.region-one");
  nova = pki.client("nova-api");
  intruder = pki.client("intruder", { rogue: true });
  echo = await startEchoUpstream();
  ({ edge } = await startTestEdge({
    ...edgeConfigDocument(keystone, { upstream: echo.url, user: adminUser(keystone) }),
    identity_listen: "127.0.0.1:0",
    tls: {
      certfile: server.certfile,
      keyfile: server.keyfile,
      client_cafile: pki.ca.certfile,
    },
  }));
  proxyUrl = `https://127.0.0.1:${String(edge.address.port)}`;
  identityUrl = `https://127.0.0.1:${String(edge.identityAddress?.port ?? 0)}`;
  token = (await issueToken(keystone, { kind: "project", name: "admin", domainId: "default" }))
    .token;
}, 120_000);

afterAll(async () => {
  await edge.close(1_000);
  await echo.stop();
  pki.remove();
});

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function run(file: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env: env ?? process.env, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

/** curl through the proxy: `-w` appends the status on a line of its own. */
function curl(client: Issued | undefined, extra: readonly string[] = []): Promise<Run> {
  return run("curl", [
    "-sS",
    "--max-time",
    "20",
    "--cacert",
    pki.ca.certfile,
    ...(client === undefined ? [] : ["--cert", client.certfile, "--key", client.keyfile]),
    "-H",
    `X-Auth-Token: ${token}`,
    "-w",
    "\n%{http_code}",
    ...extra,
    `${proxyUrl}/v2.1/servers`,
  ]);
}

describe("mutual TLS with real clients", () => {
  it("curl with the CA's client certificate: 200, and the service hears https", async () => {
    const r = await curl(nova);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split("\n");
    expect(lines.at(-1)).toBe("200");
    const seen = JSON.parse(lines.slice(0, -1).join("\n")) as { headers: Record<string, string> };
    expect(seen.headers["x-forwarded-proto"]).toBe("https");
    expect(seen.headers["x-user-name"]).toBe(keystone.adminUsername);
  });

  it("curl without a client certificate, with another CA's, or over TLS 1.1: refused, nothing reaches the service", async () => {
    const before = echo.requests();
    const none = await curl(undefined);
    expect(none.code).not.toBe(0);
    const rogue = await curl(intruder);
    expect(rogue.code).not.toBe(0);
    const old = await curl(nova, ["--tls-max", "1.1"]);
    expect(old.code).not.toBe(0);
    // And a client that does not trust the edge's CA refuses it itself.
    const untrusting = await run("curl", ["-sS", "--max-time", "20", `${proxyUrl}/`]);
    expect(untrusting.code).toBe(60); // curl: peer certificate cannot be authenticated
    expect(echo.requests()).toBe(before);
    const refused = (await edge.metrics.clientRefusals.get()).values.filter(
      (v) => v.labels["reason"] === "tls_handshake",
    );
    expect(refused.reduce((n, v) => n + v.value, 0)).toBeGreaterThanOrEqual(3);
  });

  it("the OpenStack client issues a token through the Identity face over mutual TLS; the token is valid through the proxy", async () => {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      HOME: pki.dir,
      OS_AUTH_URL: `${identityUrl}/v3`,
      OS_IDENTITY_API_VERSION: "3",
      OS_USERNAME: keystone.adminUsername,
      OS_PASSWORD: keystone.adminPassword,
      OS_PROJECT_NAME: "admin",
      OS_USER_DOMAIN_ID: "default",
      OS_PROJECT_DOMAIN_ID: "default",
      OS_CACERT: pki.ca.certfile,
      OS_CERT: nova.certfile,
      OS_KEY: nova.keyfile,
    };
    const issued = await run(
      "/usr/bin/openstack",
      ["token", "issue", "-f", "value", "-c", "id"],
      env,
    );
    expect(issued.code, issued.stderr).toBe(0);
    const minted = issued.stdout.trim();
    expect(minted).toMatch(/^gAAAAA[A-Za-z0-9_-]+$/);
    const through = await run("curl", [
      "-sS",
      "-o",
      "/dev/null",
      "-w",
      "%{http_code}",
      "--cacert",
      pki.ca.certfile,
      "--cert",
      nova.certfile,
      "--key",
      nova.keyfile,
      "-H",
      `X-Auth-Token: ${minted}`,
      `${proxyUrl}/v2.1/servers`,
    ]);
    expect(through.stdout).toBe("200");

    // Without its certificate the same client cannot even reach the face.
    const { OS_CERT: _cert, OS_KEY: _key, ...without } = env;
    const refused = await run(
      "/usr/bin/openstack",
      ["token", "issue", "-f", "value", "-c", "id"],
      without,
    );
    expect(refused.code).not.toBe(0);
  }, 120_000);
});
