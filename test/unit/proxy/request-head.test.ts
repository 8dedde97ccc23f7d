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
      ["X-Real-IP", "10.0.0.9"],
      ["Forwarded", "for=10.0.0.9;proto=http"],
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
      ["X-Real-IP", "10.0.0.9"],
      ["Forwarded", "for=10.0.0.9;proto=https"],
    ]);
    const listedXff = reader.read(
      request(["Connection", "X-Forwarded-For", "X-Forwarded-For", "1.1.1.1"]),
    );
    expect(pairs(listedXff.headers)).toEqual([
      ["X-Forwarded-For", "10.0.0.9"],
      ["X-Forwarded-Proto", "http"],
      ["X-Real-IP", "10.0.0.9"],
      ["Forwarded", "for=10.0.0.9;proto=http"],
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
      "X-Real-IP",
      "Forwarded",
    ]);
    expect(head.userToken).toBe("t");
  });

  it("overwrites the proxy headers a service trusts: Forwarded, X-Real-IP; drops X-Forwarded-Prefix", () => {
    // oslo.middleware's HTTPProxyToWSGI takes proto, host and for from the FIRST Forwarded
    // element and SCRIPT_NAME from X-Forwarded-Prefix: a client must set none of them.
    const head = reader.read(
      request([
        "Host",
        "nova",
        "Forwarded",
        "for=6.6.6.6;proto=https;host=evil",
        "forwarded",
        "for=7.7.7.7",
        "X-Real-IP",
        "6.6.6.6",
        "X-Forwarded-Prefix",
        "/admin",
        "x-real-ip",
        "7.7.7.7",
      ]),
    );
    const names = pairs(head.headers).map(([n]) => n.toLowerCase());
    expect(names.filter((n) => n === "forwarded")).toHaveLength(1);
    expect(names.filter((n) => n === "x-real-ip")).toHaveLength(1);
    expect(names).not.toContain("x-forwarded-prefix");
    expect(pairs(head.headers)).toContainEqual(["Forwarded", "for=10.0.0.9;proto=http"]);
    expect(pairs(head.headers)).toContainEqual(["X-Real-IP", "10.0.0.9"]);
  });

  it("writes IPv6 peers as RFC 7239 wants and IPv4-mapped ones as IPv4", () => {
    const v6 = { rawHeaders: [], socket: { remoteAddress: "2001:db8::7" } };
    const mapped = { rawHeaders: [], socket: { remoteAddress: "::ffff:192.0.2.1" } };
    const h6 = pairs(reader.read(v6 as unknown as IncomingMessage).headers);
    expect(h6).toContainEqual(["Forwarded", 'for="[2001:db8::7]";proto=http']);
    expect(h6).toContainEqual(["X-Forwarded-For", "2001:db8::7"]);
    const hm = pairs(reader.read(mapped as unknown as IncomingMessage).headers);
    expect(hm).toContainEqual(["Forwarded", "for=192.0.2.1;proto=http"]);
    expect(hm).toContainEqual(["X-Real-IP", "192.0.2.1"]);
  });

  it("takes Host from an absolute-form target's authority, added when the client sent none", () => {
    const replaced = pairs(
      reader.read(request(["Host", "nova:8774", "Accept", "x"]), "api.example:80").headers,
    );
    expect(replaced.filter(([n]) => n.toLowerCase() === "host")).toEqual([
      ["Host", "api.example:80"],
    ]);
    expect(replaced).toContainEqual(["X-Forwarded-Host", "api.example:80"]);
    const added = pairs(reader.read(request(["Accept", "x"]), "api.example").headers);
    expect(added).toContainEqual(["Host", "api.example"]);
    expect(added).toContainEqual(["X-Forwarded-Host", "api.example"]);
  });
});
