import { describe, expect, it } from "vitest";

import type { KeystoneToken } from "../../../src/token/body.js";
import { tokenBody } from "../../harness/doubles.js";
import type { AuthDecision } from "../../../src/validation/decision.js";
import {
  EdgeAuthenticator,
  type AuthenticatorOptions,
} from "../../../src/validation/authenticator.js";
import type { Verdict } from "../../../src/validation/pipeline.js";

function body(user: string, roles: string[], extra: Record<string, unknown> = {}): KeystoneToken {
  return tokenBody(user, {
    roles: roles.map((name) => ({ id: name, name })),
    catalog: [{ type: "compute", name: "nova", id: "c", endpoints: [] }],
    ...extra,
  });
}

const valid = (token: KeystoneToken): Verdict => ({ kind: "valid", token, source: "keystone" });
const EXPIRED: Verdict = { kind: "invalid", code: "expired", source: "local_reject" };
const NOT_FOUND: Verdict = { kind: "invalid", code: "not_found", source: "keystone" };

function setup(
  verdicts: Record<string, Verdict>,
  overrides: Partial<AuthenticatorOptions> = {},
  expiredAnswers: Record<string, Verdict> = {},
) {
  const calls = { validate: [] as string[], allowingExpired: [] as string[] };
  const authenticator = new EdgeAuthenticator({
    validate: (t) => {
      calls.validate.push(t);
      return Promise.resolve(verdicts[t] ?? NOT_FOUND);
    },
    validateAllowingExpired: (t) => {
      calls.allowingExpired.push(t);
      return Promise.resolve(expiredAnswers[t] ?? NOT_FOUND);
    },
    delayAuthDecision: false,
    wwwAuthenticateUri: "http://keystone/v3",
    includeServiceCatalog: true,
    serviceTokenRoles: ["service"],
    serviceTokenRolesRequired: true,
    ...overrides,
  });
  return { authenticator, calls };
}

const GET = (url = "/v2.1/servers") => ({ accept: undefined, method: "GET", url });

function header(decision: AuthDecision, name: string): string | undefined {
  return decision.headers.find(([n]) => n === name)?.[1];
}

describe("EdgeAuthenticator", () => {
  it("forwards a valid user token with its headers, refuses an invalid one with 401", async () => {
    const { authenticator } = setup({ good: valid(body("u1", ["member"])) });
    const ok = await authenticator.authenticate("good", undefined, GET());
    expect(ok).toMatchObject({ kind: "forward", outcome: "valid" });
    expect(header(ok, "X-User-Id")).toBe("u1");
    expect(await authenticator.authenticate("bad", undefined, GET())).toMatchObject({
      kind: "respond",
      status: 401,
      outcome: "invalid",
    });
  });

  it("answers 503 with Retry-After (the breakers' open duration) when no Keystone answers", async () => {
    const down: Verdict = { kind: "unavailable", reason: "connection" };
    const { authenticator } = setup({ t: down }, { retryAfterSeconds: 2.5 });
    const d = await authenticator.authenticate("t", undefined, GET());
    expect(d).toMatchObject({ kind: "respond", status: 503, outcome: "unavailable" });
    expect(header(d, "Retry-After")).toBe("3");
    const other = setup({ t: down }).authenticator;
    expect(header(await other.authenticate("t", undefined, GET()), "Retry-After")).toBe("5");
  });

  it("treats empty token headers as absent, as keystonemiddleware does", async () => {
    const { authenticator, calls } = setup({ good: valid(body("u1", ["member"])) });
    expect(await authenticator.authenticate("", undefined, GET())).toMatchObject({
      status: 401,
      outcome: "no_token",
    });
    // An empty service token neither counts nor spoils a valid user token.
    const d = await authenticator.authenticate("good", "", GET());
    expect(d).toMatchObject({ kind: "forward", outcome: "valid" });
    expect(header(d, "X-Service-Identity-Status")).toBeUndefined();
    expect(calls.validate).toEqual(["good"]);
  });

  describe("allow_expired", () => {
    const expiredAnswer = { old: valid(body("u1", ["member"])) };

    it("accepts an expired user token with a service token passing the role check", async () => {
      const { authenticator, calls } = setup(
        { old: EXPIRED, svc: valid(body("nova", ["service"])) },
        {},
        expiredAnswer,
      );
      const d = await authenticator.authenticate("old", "svc", GET());
      expect(d).toMatchObject({ kind: "forward", outcome: "valid" });
      expect(header(d, "X-User-Id")).toBe("u1");
      expect(header(d, "X-Service-Identity-Status")).toBe("Confirmed");
      expect(calls.allowingExpired).toEqual(["old"]);
    });

    it("does so even when service tokens need no role, but only for one that has it", async () => {
      const lax = { serviceTokenRolesRequired: false };
      const withRole = setup(
        { old: EXPIRED, svc: valid(body("nova", ["service"])) },
        lax,
        expiredAnswer,
      );
      expect(await withRole.authenticator.authenticate("old", "svc", GET())).toMatchObject({
        kind: "forward",
      });
      const without = setup(
        { old: EXPIRED, svc: valid(body("nova", ["member"])) },
        lax,
        expiredAnswer,
      );
      expect(await without.authenticator.authenticate("old", "svc", GET())).toMatchObject({
        status: 401,
      });
      expect(without.calls.allowingExpired).toEqual([]);
    });

    it("never without a good service token, and never for a token invalid for another reason", async () => {
      const cases: [string | undefined, Record<string, Verdict>][] = [
        [undefined, { old: EXPIRED }],
        ["svc", { old: EXPIRED, svc: NOT_FOUND }],
        ["svc", { old: NOT_FOUND, svc: valid(body("nova", ["service"])) }],
        [
          "svc",
          {
            old: { kind: "invalid", code: "bad_signature", source: "local_reject" },
            svc: valid(body("nova", ["service"])),
          },
        ],
      ];
      for (const [service, verdicts] of cases) {
        const { authenticator, calls } = setup(verdicts, {}, expiredAnswer);
        expect(await authenticator.authenticate("old", service, GET())).toMatchObject({
          status: 401,
        });
        expect(calls.allowingExpired).toEqual([]);
      }
    });

    it("refuses when Keystone refuses the expired token too", async () => {
      const { authenticator } = setup({ old: EXPIRED, svc: valid(body("nova", ["service"])) });
      expect(await authenticator.authenticate("old", "svc", GET())).toMatchObject({ status: 401 });
    });

    it("takes the slow path from the in-process cache's expired verdict", async () => {
      const verdicts: Record<string, Verdict> = {
        old: EXPIRED,
        svc: valid(body("nova", ["service"])),
      };
      const { authenticator, calls } = setup(
        verdicts,
        { validateNow: (t) => verdicts[t] },
        expiredAnswer,
      );
      expect(await authenticator.authenticate("old", "svc", GET())).toMatchObject({
        kind: "forward",
      });
      expect(calls.allowingExpired).toEqual(["old"]);
    });
  });

  describe("access rules", () => {
    const restricted = body("u2", ["member"], {
      methods: ["application_credential"],
      application_credential: {
        id: "ac",
        name: "ac",
        restricted: true,
        access_rules: [{ id: "r", service: "compute", method: "GET", path: "/v2.1/servers" }],
      },
    });

    it("lets through what a rule allows and refuses the rest, with the outcome named", async () => {
      const { authenticator } = setup({ ac: valid(restricted) }, { serviceType: "compute" });
      expect(
        await authenticator.authenticate("ac", undefined, GET("/v2.1/servers?limit=1")),
      ).toMatchObject({
        kind: "forward",
        outcome: "valid",
      });
      expect(await authenticator.authenticate("ac", undefined, GET("/v2.1/flavors"))).toMatchObject(
        {
          status: 401,
          outcome: "access_rules",
        },
      );
      expect(
        await authenticator.authenticate("ac", undefined, {
          accept: undefined,
          method: "DELETE",
          url: "/v2.1/servers",
        }),
      ).toMatchObject({ status: 401 });
    });

    it("refuses restricted tokens without service_type; unrestricted ones are untouched", async () => {
      const { authenticator } = setup({
        ac: valid(restricted),
        good: valid(body("u1", ["member"])),
      });
      expect(await authenticator.authenticate("ac", undefined, GET())).toMatchObject({
        status: 401,
      });
      expect(await authenticator.authenticate("good", undefined, GET("/anything"))).toMatchObject({
        kind: "forward",
      });
    });

    it("marks the user Invalid under delay_auth_decision", async () => {
      const { authenticator } = setup(
        { ac: valid(restricted) },
        { serviceType: "compute", delayAuthDecision: true },
      );
      const d = await authenticator.authenticate("ac", undefined, GET("/v2.1/flavors"));
      expect(d).toMatchObject({ kind: "forward", outcome: "delayed_access_rules" });
      expect(header(d, "X-Identity-Status")).toBe("Invalid");
      expect(header(d, "X-User-Id")).toBeUndefined();
    });
  });
});
