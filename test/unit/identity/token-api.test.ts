import { describe, expect, it } from "vitest";

import { isDiscoveryPath, rewriteDiscovery } from "../../../src/identity/discovery.js";
import { mayInspectToken } from "../../../src/identity/policy.js";
import { TokenApi, type TokenApiRequest } from "../../../src/identity/token-api.js";
import type { KeystoneToken } from "../../../src/token/body.js";
import type { Verdict } from "../../../src/validation/pipeline.js";
import { tokenBody } from "../../harness/doubles.js";

function body(user: string, roles: string[], extra: Record<string, unknown> = {}): KeystoneToken {
  return tokenBody(user, {
    roles: roles.map((name) => ({ id: `id-${name}`, name })),
    catalog: [{ type: "identity", name: "keystone", id: "c", endpoints: [] }],
    ...extra,
  });
}

const valid = (token: KeystoneToken): Verdict => ({ kind: "valid", token, source: "keystone" });
const NOT_FOUND: Verdict = { kind: "invalid", code: "not_found", source: "keystone" };

function api(verdicts: Record<string, Verdict>, expired: Record<string, Verdict> = {}) {
  const asked: string[] = [];
  const tokenApi = new TokenApi({
    validate: (t) => {
      asked.push(t);
      return Promise.resolve(verdicts[t] ?? NOT_FOUND);
    },
    validateAllowingExpired: (t) => Promise.resolve(expired[t] ?? verdicts[t] ?? NOT_FOUND),
    retryAfterSeconds: 2,
  });
  return { tokenApi, asked };
}

function request(overrides: Partial<TokenApiRequest>): TokenApiRequest {
  return {
    method: "GET",
    authToken: "caller",
    subjectToken: "subject",
    query: new URLSearchParams(),
    accessRulesVersion: "1.0",
    publicUrl: "http://edge:5000/v3",
    ...overrides,
  };
}

const header = (r: { headers: readonly (readonly [string, string])[] }, name: string) =>
  r.headers.find(([n]) => n === name)?.[1];

describe("Keystone's default token policy", () => {
  const subject = body("u-subject", ["member"]);
  it("admin, system reader and service validate any token; HEAD leaves out service", () => {
    expect(mayInspectToken("validate", body("a", ["admin"]), subject)).toBe(true);
    expect(mayInspectToken("check", body("a", ["Admin"]), subject)).toBe(true);
    const systemReader = body("r", ["reader"], { system: { all: true } });
    expect(mayInspectToken("validate", systemReader, subject)).toBe(true);
    expect(mayInspectToken("validate", body("r", ["reader"]), subject)).toBe(false);
    expect(mayInspectToken("validate", body("s", ["service"]), subject)).toBe(true);
    expect(mayInspectToken("check", body("s", ["service"]), subject)).toBe(false);
  });
  it("anyone validates their own user's tokens, nobody else's", () => {
    expect(mayInspectToken("validate", body("u-subject", ["member"]), subject)).toBe(true);
    expect(mayInspectToken("check", body("u-subject", []), subject)).toBe(true);
    expect(mayInspectToken("validate", body("other", ["member"]), subject)).toBe(false);
  });
});

describe("TokenApi", () => {
  const caller = valid(body("svc", ["service"]));
  const subject = valid(body("u1", ["member"]));

  it("200 with Keystone's body, the catalog unless nocatalog, the subject echoed", async () => {
    const { tokenApi } = api({ caller, subject });
    const ok = await tokenApi.answer(request({}));
    expect(ok.status).toBe(200);
    expect(header(ok, "X-Subject-Token")).toBe("subject");
    expect(JSON.parse(ok.body)).toEqual({ token: subject.kind === "valid" ? subject.token : {} });
    const bare = await tokenApi.answer(request({ query: new URLSearchParams("nocatalog") }));
    const bareToken = (JSON.parse(bare.body) as { token: KeystoneToken }).token;
    expect(bareToken.catalog).toBeUndefined();
    expect(bareToken.roles).toHaveLength(1);
    const head = await tokenApi.answer(request({ method: "HEAD", authToken: "own" }));
    expect(head.body).toBe("");
  });

  it("401 for a missing or invalid caller (naming the edge), 404 for the subject, 403 without the right", async () => {
    const { tokenApi, asked } = api({ caller, subject, member: valid(body("u2", ["member"])) });
    const noCaller = await tokenApi.answer(request({ authToken: undefined }));
    expect(noCaller.status).toBe(401);
    expect(header(noCaller, "WWW-Authenticate")).toBe('Keystone uri="http://edge:5000/v3"');
    expect(asked).toEqual([]);
    expect((await tokenApi.answer(request({ authToken: "bad" }))).status).toBe(401);
    expect((await tokenApi.answer(request({ subjectToken: "bad" }))).status).toBe(404);
    expect((await tokenApi.answer(request({ subjectToken: undefined }))).status).toBe(404);
    const forbidden = await tokenApi.answer(request({ authToken: "member" }));
    expect(forbidden.status).toBe(403);
    expect(forbidden.body).toContain("identity:validate_token");
    expect(forbidden.body).not.toContain("subject");
  });

  it("an application credential with access rules needs the caller's access-rules support", async () => {
    const rules = [{ service: "compute", method: "GET", path: "/v2.1/servers" }];
    const appcred = valid(
      body("u1", ["member"], { application_credential: { id: "ac", access_rules: rules } }),
    );
    const plain = valid(body("u1", ["member"], { application_credential: { id: "ac2" } }));
    const { tokenApi } = api({ caller, appcred, plain });
    expect((await tokenApi.answer(request({ subjectToken: "appcred" }))).status).toBe(200);
    const r = await tokenApi.answer(
      request({ subjectToken: "plain", accessRulesVersion: undefined }),
    );
    expect(r.status).toBe(200);
    for (const version of [undefined, "0.9", "x"]) {
      const r = await tokenApi.answer(
        request({ subjectToken: "appcred", accessRulesVersion: version }),
      );
      expect(r.status, String(version)).toBe(404);
    }
  });

  it("allow_expired goes through the expired-token path; Keystone down is 503 with Retry-After", async () => {
    const old = valid(body("u1", ["member"]));
    const { tokenApi } = api({ caller, down: { kind: "unavailable", reason: "timeout" } }, { old });
    expect((await tokenApi.answer(request({ subjectToken: "old" }))).status).toBe(404);
    const allowed = await tokenApi.answer(
      request({ subjectToken: "old", query: new URLSearchParams("allow_expired=1") }),
    );
    expect(allowed.status).toBe(200);
    const down = await tokenApi.answer(request({ subjectToken: "down" }));
    expect(down.status).toBe(503);
    expect(header(down, "Retry-After")).toBe("2");
  });
});

describe("version discovery", () => {
  it("points links under the Keystone root at the edge, leaves others alone", () => {
    const doc = JSON.stringify({
      versions: {
        values: [
          {
            id: "v3.14",
            links: [
              { rel: "self", href: "http://keystone:5000/v3/" },
              { rel: "describedby", href: "https://docs.openstack.org/" },
              { rel: "other", href: "http://keystone:50000/v3/" },
            ],
          },
        ],
      },
    });
    const out = JSON.parse(rewriteDiscovery(doc, "http://keystone:5000", "http://edge:5001/")) as {
      versions: { values: { links: { href: string }[] }[] };
    };
    const hrefs = out.versions.values[0]?.links.map((l) => l.href);
    expect(hrefs).toEqual([
      "http://edge:5001/v3/",
      "https://docs.openstack.org/",
      "http://keystone:50000/v3/",
    ]);
    expect(rewriteDiscovery("not json", "http://keystone:5000", "http://edge")).toBe("not json");
    expect(["/", "/v3", "/v3/"].every(isDiscoveryPath)).toBe(true);
    expect(isDiscoveryPath("/v3/users")).toBe(false);
  });
});
