/**
 * Owns: the text of the sandbox's `new-tokens.mjs` — a stand-alone script (Node built-ins
 * and global fetch only) that logs in to the sandbox Keystone and writes fresh tokens into
 * the files the printed drill commands read. The sandbox runs it once at start (so the
 * script it prints is known to work) and tells the user to run it again when the tokens
 * have gone: revoked by the revocation drill, retired by two key rotations, expired, or
 * signed before the last rotation (the key-lag drill wants tokens the primary key signed).
 * Only test/harness/sandbox.ts uses it.
 */

/** One file the script (re)writes: a comment line, then one token per login. */
export interface TokenFile {
  readonly path: string;
  readonly comment: string;
  /** `POST /v3/auth/tokens` bodies' `auth` objects, one token each. */
  readonly logins: readonly unknown[];
}

/** The script's text, for Keystone's Identity v3 URL `keystoneUrl` (…/v3). */
export function newTokensScript(keystoneUrl: string, files: readonly TokenFile[]): string {
  return `#!/usr/bin/env node
// Written by \`npm run sandbox\`: fresh tokens from the sandbox Keystone for the drills.
// Run it again whenever the tokens are gone (revoked, expired, or signed by a key that two
// rotations retired) and before key-lag after a rotation. Holds passwords: mode 0600.
import { writeFileSync } from "node:fs";

const KEYSTONE = ${JSON.stringify(keystoneUrl)};
const FILES = ${JSON.stringify(files, null, 2)};

async function issue(auth) {
  const res = await fetch(\`\${KEYSTONE}/auth/tokens\`, {
    method: "POST",
    headers: { "content-type": "application/json", connection: "close" },
    body: JSON.stringify({ auth }),
    signal: AbortSignal.timeout(30_000),
  });
  const token = res.headers.get("x-subject-token");
  const text = await res.text();
  if (res.status !== 201 || token === null) {
    throw new Error(\`Keystone answered \${res.status}: \${text.slice(0, 200)}\`);
  }
  return token;
}

try {
  for (const file of FILES) {
    const tokens = [];
    for (const auth of file.logins) tokens.push(await issue(auth));
    writeFileSync(file.path, \`# \${file.comment}\\n\${tokens.join("\\n")}\\n\`, { mode: 0o600 });
    console.log(\`new-tokens: \${tokens.length} fresh token(s) in \${file.path}\`);
  }
} catch (error) {
  console.error(\`new-tokens: \${error instanceof Error ? error.message : String(error)}\`);
  process.exitCode = 1;
}
`;
}
