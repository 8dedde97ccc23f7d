/**
 * The vector file format written by test/harness/mint_vectors.py: tokens minted by
 * Keystone's own TokenFormatter, with what its validate_token returned for each.
 */
import { readFileSync } from "node:fs";
import { parseFernetKey } from "../../src/fernet/envelope.js";
import { KeyRing } from "../../src/fernet/key-ring.js";

export interface Vector {
  readonly name: string;
  readonly payload_version: number;
  readonly auth_methods: readonly string[];
  readonly token: string;
  readonly expected: Readonly<Record<string, unknown>>;
  readonly signing_key?: string;
}

export interface VectorFile {
  readonly generated_at: number;
  readonly keystone_version: string;
  readonly default_domain_id: string;
  readonly keys: Readonly<Record<string, string>>;
  readonly vectors: readonly Vector[];
}

export function loadVectors(path: string): VectorFile {
  return JSON.parse(readFileSync(path, "utf8")) as VectorFile;
}

export function ringOf(file: VectorFile): KeyRing {
  return KeyRing.from(
    Object.entries(file.keys).map(([index, text]) => {
      const key = parseFernetKey(text);
      if (typeof key === "string") throw new Error(`vector key ${index}: ${key}`);
      return { index: Number(index), key };
    }),
  );
}
