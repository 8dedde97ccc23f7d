/**
 * keystonemiddleware's own 401 and 503, byte for byte as the real AuthProtocol answers
 * (driven through test/harness/kmw_headers.py), and webob's Accept negotiation that picks
 * the 503 body, checked against webob on generated Accept headers.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  errorBodyFormat,
  serviceUnavailableResponse,
  unauthorizedResponse,
  wwwAuthenticateHeader,
  type ContractResponse,
} from "../../../src/contract/responses.js";
import { PROJECT, SERVICE_NO_ROLE } from "../../harness/contract-fixtures.js";
import { runKmw, runPythonSnippet, type KmwCase } from "../../harness/kmw-python.js";

const URI = "https://keystone.example:5000/v3";

/** webob's choice, as WSGIHTTPException.generate_response makes it. */
const WEBOB_PY = `
import json, sys
from webob.acceptparse import create_accept_header
out = []
for value in json.loads(sys.stdin.buffer.read().decode("utf-8")):
    offers = create_accept_header(header_value=value).acceptable_offers(
        offers=["text/html", "application/json"])
    match = offers[0][0] if offers else None
    out.append({"text/html": "html", "application/json": "json"}.get(match, "plain"))
print(json.dumps(out))
`;

function asKmw(response: ContractResponse) {
  return {
    status: response.status,
    headers: response.headers.map(([n, v]) => [n, v]),
    body: response.body,
  };
}

describe("401", () => {
  it("is exactly what keystonemiddleware answers, for every way of failing", async () => {
    const conf = { www_authenticate_uri: URI, service_token_roles_required: true };
    const cases: KmwCase[] = [
      { user: null, service: null, conf },
      { user: "invalid", service: null, conf },
      { user: "invalid", service: null, conf, client_headers: { Accept: "text/html" } },
      { user: PROJECT, service: "invalid", conf },
      { user: PROJECT, service: SERVICE_NO_ROLE, conf },
      { user: null, service: null, conf, request: { method: "HEAD", path: "/x" } },
    ];
    const results = await runKmw(cases);
    for (const result of results) {
      expect(result.status).toBe(401);
      const ours = asKmw(unauthorizedResponse(URI));
      expect(result.response?.headers).toEqual(ours.headers);
      if (result.response?.body !== "") expect(result.response?.body).toBe(ours.body);
    }
    expect(results.at(-1)?.response?.body).toBe(""); // HEAD: same headers, no body
  });

  it("has the documented shape", () => {
    expect(unauthorizedResponse(URI)).toEqual({
      status: 401,
      headers: [
        ["Content-Type", "application/json"],
        ["Content-Length", "114"],
        ["WWW-Authenticate", `Keystone uri="${URI}"`],
      ],
      body: '{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}',
    });
    expect(wwwAuthenticateHeader("http://k/v3")).toEqual([
      "WWW-Authenticate",
      'Keystone uri="http://k/v3"',
    ]);
  });
});

describe("503", () => {
  it("is exactly what keystonemiddleware answers when Keystone is unreachable, per Accept", async () => {
    const accepts = [
      undefined,
      "",
      "application/json",
      "text/html",
      "*/*",
      "text/plain",
      "application/json, text/html;q=0.9",
      "text/html;q=0.5, application/json;q=0.5",
      "garbage",
      "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,*/*;q=0.8",
    ];
    const results = await runKmw(
      accepts.flatMap((accept): KmwCase[] => {
        const client_headers = accept === undefined ? {} : { Accept: accept };
        return [
          { user: "unavailable", service: null, client_headers },
          { user: PROJECT, service: "unavailable", client_headers },
        ];
      }),
    );
    results.forEach((result, i) => {
      const accept = accepts[Math.floor(i / 2)];
      expect(result.response, String(accept)).toEqual(asKmw(serviceUnavailableResponse(accept)));
    });
  });

  it("negotiates like webob: nothing → plain, JSON clients → json, browsers and garbage → html", () => {
    expect(errorBodyFormat(undefined)).toBe("plain");
    expect(errorBodyFormat("application/json")).toBe("json");
    expect(errorBodyFormat("*/*")).toBe("html");
    expect(errorBodyFormat("text/plain")).toBe("plain");
    expect(errorBodyFormat("not a media type")).toBe("html");
    expect(serviceUnavailableResponse("application/json").headers).toEqual([
      ["Content-Length", "218"],
      ["Content-Type", "application/json"],
    ]);
  });

  it("agrees with webob's Accept parsing on generated headers", async () => {
    const range = fc.oneof(
      fc.constantFrom(
        "text/html",
        "application/json",
        "TEXT/HTML",
        "Application/JSON",
        "*/*",
        "text/*",
        "application/*",
        "*/json",
        "text/plain",
        "application/xml",
        "image/*",
        "text",
        "text/",
        "/json",
        "text/html/x",
      ),
      fc.string({ unit: fc.constantFrom("a", "/", "*", "-", "+", ".", "x"), maxLength: 8 }),
    );
    const param = fc.constantFrom(
      "",
      ";level=1",
      ' ; charset="utf-8"',
      ";q=0",
      ";q=0.5",
      ";Q=0.001",
      ";q=1",
      ";q=1.000",
      ";q=1.0000",
      ";q=0.1234",
      ";q=2",
      ";q=0.5;ext",
      ';q=0.7;ext="a b";x=y',
      ";ext",
      ";",
      ';a="\\"q"',
      ";a=\u00e9",
      ';a="\u00e9"',
    );
    const element = fc.tuple(range, param).map(([r, p]) => r + p);
    const separator = fc.constantFrom(",", ", ", " ,", ",,", " , ", "\t,", ";");
    const header = fc
      .array(fc.tuple(element, separator), { maxLength: 5 })
      .map((parts) => parts.map(([e, s], i) => (i === 0 ? e : s + e)).join(""));
    const values = [
      ...fc.sample(header, { numRuns: 3000, seed: 11 }),
      ...fc.sample(fc.string({ maxLength: 12 }), { numRuns: 300, seed: 12 }),
      "",
      " ",
      ",",
      "text/html\n",
      "application/json\n",
    ];
    const expected = (await runPythonSnippet(WEBOB_PY, values)) as string[];
    expect(expected).toHaveLength(values.length);
    const mismatches = values
      .map((v, i) => ({ v, got: errorBodyFormat(v), want: expected[i] }))
      .filter((m) => m.got !== m.want);
    expect(mismatches.slice(0, 5)).toEqual([]);
    expect(new Set(expected)).toEqual(new Set(["html", "json", "plain"]));
  });
});
