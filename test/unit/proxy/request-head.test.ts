import type { IncomingMessage } from "node:http";
import { describe, expect, it } from "vitest";

import { isIdentityHeader } from "../../../src/contract/strip.js";
import { RequestHeadReader } from "../../../src/proxy/request-head.js";

function request(rawHeaders: string[], tls = false): IncomingMessage {
  const socket = tls
    ? { remoteAddress: "10.0.0.9", encrypted: true }
    : { remoteAddress: "10.0.0.9" };
  return { rawHeaders, socket } as unknown as IncomingMessage;
}

function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i] as string, flat[i + 1] as string]);
  return out;
}

describe("RequestHeadReader", () => {
  const reader = new RequestHeadReader(isIdentityHeader);

  it("forwards ordinary headers in order, strips identity and hop-by-hop ones, adds X-Forwarded-*", () => {
    const head = reader.read(
      request([
        "Host",
        "nova:8774",
        "X-Auth-Token",
        "tok",
        "x-user-id",
        "spoofed",
        "X_ROLES",
        "admin",
        "X-Identity-Status",
        "Confirmed",
        "OpenStack-System-Scope",
        "all",
        "Keep-Alive",
        "timeout=5",
        "Transfer-Encoding",
        "chunked",
        "TE",
        "trailers",
        "X-Forwarded-Proto",
        "https",
        "X-Forwarded-Host",
        "evil",
        "Accept",
        "application/json",
        "User-Agent",
        "curl",
      ]),
    );
    expect(pairs(head.headers)).toEqual([
      ["Host", "nova:8774"],
      ["X-Auth-Token", "tok"],
      ["Accept", "application/json"],
      ["User-Agent", "curl"],
      ["X-Forwarded-For", "10.0.0.9"],
      ["X-Forwarded-Proto", "http"],
      ["X-Forwarded-Host", "nova:8774"],
    ]);
    expect(head).toMatchObject({
      userToken: "tok",
      serviceToken: undefined,
      accept: "application/json",
      hasBody: true,
    });
  });

  it("reads the tokens: X-Auth-Token before X-Storage-Token, and the service token", () => {
    expect(reader.read(request(["X-Storage-Token", "s", "X-Service-Token", "svc"]))).toMatchObject({
      userToken: "s",
      serviceToken: "svc",
      hasBody: false,
    });
    expect(reader.read(request(["x-storage-token", "s", "x-auth-token", "a"])).userToken).toBe("a");
    expect(reader.read(request(["Content-Length", "0"])).hasBody).toBe(true);
  });

  it("joins a repeated token header as Node does, so two tokens never pick one", () => {
    const head = reader.read(
      request(["X-Auth-Token", "a", "x-auth-token", "b", "Accept", "x", "accept", "y"]),
    );
    expect(head.userToken).toBe("a, b");
    expect(head.accept).toBe("x, y");
  });

  it("drops the headers Connection names, and appends to the client's X-Forwarded-For", () => {
    const head = reader.read(
      request(
        [
          "Connection",
          "close, X-Custom",
          "X-Custom",
          "1",
          "X-Other",
          "2",
          "X-Forwarded-For",
          "1.1.1.1",
          "x-forwarded-for",
          "2.2.2.2",
        ],
        true,
      ),
    );
    expect(pairs(head.headers)).toEqual([
      ["X-Other", "2"],
      ["X-Forwarded-For", "1.1.1.1, 2.2.2.2, 10.0.0.9"],
      ["X-Forwarded-Proto", "https"],
    ]);
    const listedXff = reader.read(
      request(["Connection", "X-Forwarded-For", "X-Forwarded-For", "1.1.1.1"]),
    );
    expect(pairs(listedXff.headers)).toEqual([
      ["X-Forwarded-For", "10.0.0.9"],
      ["X-Forwarded-Proto", "http"],
    ]);
  });

  it("classifies a spelling the same way whether or not it is remembered", () => {
    const small = new RequestHeadReader(isIdentityHeader);
    // Fill the name memory with junk, then check that unremembered names still classify.
    for (let i = 0; i < 2000; i++) small.read(request([`X-Junk-${String(i)}`, "v"]));
    const head = small.read(
      request(["X-User-Id", "spoofed", "X-Late-Name", "v", "X-Auth-Token", "t"]),
    );
    expect(pairs(head.headers).map(([n]) => n)).toEqual([
      "X-Late-Name",
      "X-Auth-Token",
      "X-Forwarded-For",
      "X-Forwarded-Proto",
    ]);
    expect(head.userToken).toBe("t");
  });
});
