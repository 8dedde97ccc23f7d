/**
 * Tokens issued over HTTP by the running Keystone (POST /v3/auth/tokens), decoded locally
 * from Keystone's own key repository, must agree with what Keystone answers for them on
 * GET /v3/auth/tokens; and tokens must survive `keystone-manage fernet_rotate` exactly as
 * long as Keystone accepts them.
 */
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { KeyRepository } from "../../src/fernet/key-repository.js";
import { TokenDecoder, type DecodeResult } from "../../src/token/decoder.js";
import { renderKeystoneFields, type KeystoneTokenFields } from "../../src/token/render.js";
import {
  issueToken,
  keystoneManage,
  validateToken,
  type KeystoneTokenBody,
  type TokenScope,
} from "../harness/client.js";

const keystone = inject("keystone");
const BIN = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

let repository: KeyRepository;
let decoder: TokenDecoder;
let adminToken = "";

beforeAll(async () => {
  repository = await KeyRepository.open({
    directory: keystone.keyRepository,
    settleMs: 50,
    pollIntervalMs: 1_000,
  });
  decoder = new TokenDecoder({ keys: repository, authMethods: keystone.authMethods });
  adminToken = (await issueToken(keystone, { kind: "system" })).token;
});

afterAll(() => {
  repository.close();
});

function valid(result: DecodeResult): KeystoneTokenFields {
  if (result.status !== "valid") {
    throw new Error(`expected a valid token, got ${result.status}: ${result.error.code}`);
  }
  return renderKeystoneFields(result.token);
}

/** The fields Keystone's GET /v3/auth/tokens body shares with validate_token's. */
function fromKeystoneBody(body: KeystoneTokenBody): Partial<KeystoneTokenFields> {
  const t = body.token;
  return {
    user_id: t.user.id,
    methods: t.methods,
    audit_ids: t.audit_ids,
    system: t.system?.all === true ? "all" : null,
    domain_id: t.domain?.id ?? null,
    project_id: t.project?.id ?? null,
    issued_at: t.issued_at,
    expires_at: t.expires_at,
  };
}

const scopes: [string, TokenScope, number][] = [
  ["project", { kind: "project", name: "admin", domainId: "default" }, 2],
  ["domain", { kind: "domain", id: "default" }, 1],
  ["system", { kind: "system" }, 8],
  ["unscoped", { kind: "unscoped" }, 0],
];

describe("tokens issued by Keystone over HTTP", () => {
  it.each(scopes)("a %s token decodes as Keystone validates it", async (_name, scope, version) => {
    const issued = await issueToken(keystone, scope);
    const fields = valid(decoder.decode(issued.token));
    expect(fields.payload_version).toBe(version);
    const validated = await validateToken(keystone, adminToken, issued.token, { nocatalog: true });
    expect(validated.status).toBe(200);
    expect(fields).toMatchObject(fromKeystoneBody(validated.body as KeystoneTokenBody));
    expect(fields).toMatchObject(fromKeystoneBody(issued.body));
  });

  it("a token rescoped with the token method carries both audit ids and both methods", async () => {
    const unscoped = await issueToken(keystone, { kind: "unscoped" });
    const res = await fetch(`${keystone.url}/auth/tokens`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Connection: "close" },
      body: JSON.stringify({
        auth: {
          identity: { methods: ["token"], token: { id: unscoped.token } },
          scope: { project: { name: "admin", domain: { id: "default" } } },
        },
      }),
    });
    expect(res.status).toBe(201);
    const rescoped = res.headers.get("x-subject-token") ?? "";
    const fields = valid(decoder.decode(rescoped));
    expect(fields.audit_ids).toHaveLength(2);
    expect(fields.audit_ids[1]).toBe(valid(decoder.decode(unscoped.token)).audit_ids[0]);
    // Keystone's validation reads methods from the token, highest bit first; its issue
    // response echoes the request's order instead. The edge must match validation.
    expect(fields.methods).toEqual(["token", "password"]);
    const validated = await validateToken(keystone, adminToken, rescoped, { nocatalog: true });
    expect(validated.status).toBe(200);
    expect(fields).toMatchObject(fromKeystoneBody(validated.body as KeystoneTokenBody));
  });

  it("the CLI prints the same fields for a Keystone token, read from stdin", async () => {
    const issued = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const child = execFile(process.execPath, [
      BIN,
      "token",
      "decode",
      "--key-repository",
      keystone.keyRepository,
      "--auth-methods",
      keystone.authMethods.join(","),
      "-",
    ]);
    child.stdin?.end(issued.token);
    const stdout = await new Promise<string>((resolve, reject) => {
      let out = "";
      child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => {
        if (code === 0) resolve(out);
        else reject(new Error(`exit ${String(code)}: ${out}`));
      });
    });
    expect(JSON.parse(stdout)).toMatchObject(fromKeystoneBody(issued.body));
  });

  it("a token revoked at Keystone still decodes: decryption alone cannot see revocation", async () => {
    // This is the documented limit of local decoding (contract §4); the revocation feed
    // issue closes it. The test pins the behaviour so that nobody mistakes one for the other.
    const issued = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const res = await fetch(`${keystone.url}/auth/tokens`, {
      method: "DELETE",
      headers: { "X-Auth-Token": adminToken, "X-Subject-Token": issued.token, Connection: "close" },
    });
    expect(res.status).toBe(204);
    expect((await validateToken(keystone, adminToken, issued.token)).status).toBe(404);
    expect(decoder.decode(issued.token).status).toBe("valid");
  });
});

describe("keystone-manage fernet_rotate", () => {
  it("a token decodes after each rotation exactly as long as Keystone accepts it", async () => {
    const before = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    const signedBy = decoderKey(before.token);
    expect(signedBy).toBe(repository.current().primary.index);

    const rotate = async (): Promise<void> => {
      const primary = repository.current().primary.index;
      await keystoneManage(keystone, [
        "fernet_rotate",
        "--keystone-user",
        "root",
        "--keystone-group",
        "root",
      ]);
      const deadline = Date.now() + 10_000;
      while (repository.current().primary.index === primary) {
        if (Date.now() > deadline) throw new Error("the key repository was not reloaded");
        await new Promise((r) => setTimeout(r, 25));
      }
    };

    // First rotation: the old primary becomes a secondary; the token issued before still
    // decodes after the reload, and Keystone signs new tokens with the promoted staged key,
    // which the edge already held.
    const stagedBefore = repository.current().entries.find((e) => e.role === "staged")?.key;
    await rotate();
    expect(decoderKey(before.token)).toBe(signedBy);
    expect((await validateToken(keystone, adminToken, before.token)).status).toBe(200);
    expect(repository.current().primary.key.fingerprint).toBe(stagedBefore?.fingerprint);
    const after = await issueToken(keystone, {
      kind: "project",
      name: "admin",
      domainId: "default",
    });
    expect(decoderKey(after.token)).toBe(repository.current().primary.index);

    // Further rotations: the verdicts of the edge and of Keystone stay equal, and the token
    // dies exactly when its key leaves the repository (max_active_keys = 3).
    let rotations = 1;
    while (repository.current().entries.some((e) => e.index === signedBy)) {
      await rotate();
      rotations++;
      const ours = decoder.decode(before.token);
      // A fresh caller token: the one from beforeAll was signed by the key that goes away.
      const caller = (await issueToken(keystone, { kind: "system" })).token;
      const theirs = await validateToken(keystone, caller, before.token);
      const keyPresent = repository.current().entries.some((e) => e.index === signedBy);
      expect(ours.status === "valid", `rotation ${rotations}`).toBe(keyPresent);
      expect(theirs.status, `rotation ${rotations}`).toBe(keyPresent ? 200 : 404);
      if (!keyPresent) expect(ours.status === "invalid" && ours.error.code).toBe("bad_signature");
      expect(rotations).toBeLessThanOrEqual(4);
    }
    expect(rotations).toBeGreaterThanOrEqual(2);
    expect(repository.status()).toMatchObject({ key_count: 3, last_reload: { result: "ok" } });
  });
});

function decoderKey(token: string): number {
  const result = decoder.decode(token);
  if (result.status !== "valid") throw new Error(`token is ${result.status}`);
  return result.token.keyIndex;
}
