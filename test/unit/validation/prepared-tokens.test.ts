/**
 * PreparedTokens: the identity headers of the answers of one context are built once and
 * shared (the lists themselves, not equal copies), and are what a token prepared on its own
 * would get; answers Keystone gave for themselves get their own.
 */
import { describe, expect, it } from "vitest";

import { PreparedToken } from "../../../src/contract/inject.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import type { Token } from "../../../src/token/decoder.js";
import { answerFromContext } from "../../../src/validation/context.js";
import { PreparedTokens } from "../../../src/validation/prepared-tokens.js";
import { APP_CRED, PROJECT } from "../../harness/contract-fixtures.js";

/** A new token's own fields, as the context cache reads them from its payload. */
function newToken(auditId: string, expiresAtSeconds: number): Token {
  return {
    payload: { methods: ["password", "totp"], auditIds: [auditId] },
    issuedAtSeconds: expiresAtSeconds - 3600,
    expiresAtSeconds,
  } as unknown as Token;
}

describe("PreparedTokens", () => {
  it.each([true, false])(
    "shares one context's header lists between its tokens (include_service_catalog %s)",
    (includeServiceCatalog) => {
      const prepared = new PreparedTokens(includeServiceCatalog);
      const context = Object.freeze({ ...PROJECT }) as KeystoneToken;
      const a = answerFromContext(context, newToken("aaaaaaaaaaaaaaaaaaaaaa", 2_000_000_000));
      const b = answerFromContext(context, newToken("bbbbbbbbbbbbbbbbbbbbbb", 2_000_003_600));
      const pa = prepared.of(a);
      const pb = prepared.of(b);
      expect(pa.token).toBe(a);
      expect(pb.token).toBe(b);
      expect(pb.user).toBe(pa.user);
      expect(pb.service).toBe(pa.service);
      expect(pb.roleNames).toBe(pa.roleNames);
      expect(prepared.of(a)).toBe(pa);
      const alone = new PreparedToken(b, includeServiceCatalog);
      expect(pb.user).toEqual(alone.user);
      expect(pb.service).toEqual(alone.service);
      expect(pb.systemScoped).toBe(alone.systemScoped);
      expect(pb.includeServiceCatalog).toBe(includeServiceCatalog);
    },
  );

  it("prepares an answer Keystone gave for itself on its own, access rules included", () => {
    const prepared = new PreparedTokens(true);
    const one = prepared.of({ ...APP_CRED });
    const other = prepared.of({ ...APP_CRED });
    expect(other.user).not.toBe(one.user);
    expect(other.user).toEqual(one.user);
    expect(one.accessRestriction).toEqual(new PreparedToken(APP_CRED, true).accessRestriction);
  });
});
