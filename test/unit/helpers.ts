/**
 * Shared helpers for unit tests: key rings and repositories built from fresh random keys,
 * and a wait-until for background loops.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  generateFernetKeyText,
  parseFernetKey,
  type FernetKey,
} from "../../src/fernet/envelope.js";
import { KeyRing } from "../../src/fernet/key-ring.js";

export function keyFromText(text: string): FernetKey {
  const key = parseFernetKey(text);
  if (typeof key === "string") throw new Error(key);
  return key;
}

/** A ring with keys named by `indexes` (default 0, 1, 2: staged, secondary, primary). */
export function makeRing(indexes: readonly number[] = [0, 1, 2]): {
  ring: KeyRing;
  texts: Map<number, string>;
} {
  const texts = new Map(indexes.map((i) => [i, generateFernetKeyText()] as const));
  const ring = KeyRing.from([...texts].map(([index, text]) => ({ index, key: keyFromText(text) })));
  return { ring, texts };
}

/** A temporary key repository directory holding `files` (name → content). */
export async function makeRepository(
  files: Record<string, string>,
): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "ke-keys-"));
  for (const [name, content] of Object.entries(files)) {
    await writeFile(join(dir, name), content);
  }
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export { waitUntil } from "../harness/wait.js";
