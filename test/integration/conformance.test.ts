/**
 * Conformance with the Keystone installed on this machine, regenerated every run:
 * tokens of every payload version minted by Keystone's own TokenFormatter (varied ids, a
 * totp site, keys rotated between batches, old msgpack format) must decode field for field
 * as Keystone's validate_token returned them.
 */
import { execFile } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readKeyRepository } from "../../src/fernet/key-repository.js";
import { staticKeyRing } from "../../src/fernet/key-ring.js";
import { TokenDecoder } from "../../src/token/decoder.js";
import { renderKeystoneFields } from "../../src/token/render.js";
import { debianPythonEnv } from "../harness/client.js";
import { loadVectors, ringOf, type VectorFile } from "../harness/vectors.js";

const MINT = fileURLToPath(new URL("../harness/mint_vectors.py", import.meta.url));

let dir = "";
let file: VectorFile;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "ke-vectors-"));
  const out = join(dir, "vectors.json");
  await promisify(execFile)(
    "/usr/bin/python3",
    [MINT, "--key-repository", join(dir, "keys"), "--out", out],
    { env: debianPythonEnv(), timeout: 120_000 },
  );
  file = loadVectors(out);
}, 180_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe("tokens minted just now by Keystone's TokenFormatter", () => {
  it("come from the installed Keystone and cover payload versions 0–9 and a totp site", () => {
    expect(file.keystone_version).toMatch(/^\d+\./);
    const versions = [...new Set(file.vectors.map((v) => v.payload_version))].sort((a, b) => a - b);
    expect(versions).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(file.vectors.some((v) => v.auth_methods.includes("totp"))).toBe(true);
    expect(new Set(file.vectors.map((v) => v.signing_key)).size).toBeGreaterThan(1);
  });

  it("decode field for field as Keystone's validate_token returns them (real clock)", () => {
    const keys = staticKeyRing(ringOf(file));
    const mismatches: string[] = [];
    for (const vector of file.vectors) {
      const decoder = new TokenDecoder({
        keys,
        authMethods: vector.auth_methods,
        defaultDomainId: file.default_domain_id,
      });
      const result = decoder.decode(vector.token);
      if (result.status !== "valid") {
        mismatches.push(`${vector.name}: ${result.status} ${result.error.code}`);
        continue;
      }
      const { payload_version, ...fields } = renderKeystoneFields(result.token);
      try {
        expect(fields).toEqual(vector.expected);
        expect(payload_version).toBe(vector.payload_version);
        expect(String(result.token.keyIndex)).toBe(vector.signing_key);
      } catch (error) {
        mismatches.push(`${vector.name}: ${(error as Error).message}`);
      }
    }
    expect(mismatches).toEqual([]);
  });

  it("are read from the very repository Keystone wrote, with its own file layout", async () => {
    const ring = await readKeyRepository(join(dir, "keys"));
    expect(ring.signature).toBe(ringOf(file).signature);
  });
});
