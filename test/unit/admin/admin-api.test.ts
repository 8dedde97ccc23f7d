/**
 * The mutating admin API through the admin listener: off without a secret, 401 without
 * the right bearer secret (compared in constant time), POST only, and a flush that drops
 * the in-process caches and says how many entries went.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Registry } from "prom-client";
import { afterEach, describe, expect, it } from "vitest";

import { AdminApi } from "../../../src/admin/admin-api.js";
import { createAdminServer } from "../../../src/admin/admin-server.js";
import { validateConfig } from "../../../src/config/load.js";
import { RecordingLogger } from "../../harness/doubles.js";

const SECRET = "an admin secret of some length";
const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
});

async function admin(secret: string | undefined) {
  const flushes: number[] = [];
  const logger = new RecordingLogger();
  const server = createAdminServer({
    registry: new Registry(),
    readiness: [],
    api: new AdminApi({
      secret,
      flushCaches: () => {
        flushes.push(1);
        return { l1: 7, context: 2 };
      },
      logger,
    }),
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${String((server.address() as AddressInfo).port)}`;
  return { url, flushes, logger };
}

const flush = (url: string, authorization?: string, method = "POST") =>
  fetch(`${url}/cache/flush`, {
    method,
    headers: authorization === undefined ? {} : { authorization },
  });

describe("admin API", () => {
  it("is off without admin_secret", async () => {
    const a = await admin(undefined);
    const res = await flush(a.url, `Bearer ${SECRET}`);
    expect(res.status).toBe(404);
    expect(a.flushes).toEqual([]);
  });

  it("refuses a missing, malformed or wrong secret with 401, and anything but POST", async () => {
    const a = await admin(SECRET);
    for (const auth of [undefined, SECRET, `Basic ${SECRET}`, `Bearer ${SECRET}x`, "Bearer "]) {
      const res = await flush(a.url, auth);
      expect(res.status, String(auth)).toBe(401);
      expect(res.headers.get("www-authenticate")).toMatch(/^Bearer /);
    }
    expect((await flush(a.url, `Bearer ${SECRET}`, "GET")).status).toBe(405);
    expect(a.flushes).toEqual([]);
  });

  it("flushes the in-process caches with the right secret, and never logs it", async () => {
    const a = await admin(SECRET);
    const res = await flush(a.url, `Bearer ${SECRET}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ flushed: { l1: 7, context: 2 } });
    expect(a.flushes).toHaveLength(1);
    expect(a.logger.text()).toContain("flushed");
    expect(a.logger.text()).not.toContain(SECRET);
  });

  it("admin_secret is a secret option: from the environment, 16 characters at least", () => {
    const base = {
      listen: "127.0.0.1:8774",
      upstream: "http://127.0.0.1:18774",
      keystone: {
        www_authenticate_uri: "http://127.0.0.1:5000/v3",
        auth: {
          type: "password",
          username: "u",
          password: "p",
          user_domain_id: "default",
          project_name: "s",
          project_domain_id: "default",
        },
      },
      fernet: { key_repository: "/etc/keystone/fernet-keys" },
    };
    const sources = {
      env: { EDGE_ADMIN_SECRET: SECRET },
      readFile: () => {
        throw new Error("no files here");
      },
    };
    const ok = validateConfig({ ...base, admin_secret_env: "EDGE_ADMIN_SECRET" }, { sources });
    expect(ok.admin_secret).toBe(SECRET);
    expect(() => validateConfig({ ...base, admin_secret: "short" })).toThrow(/admin_secret/);
  });
});
