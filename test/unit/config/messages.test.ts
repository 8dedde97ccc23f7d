/**
 * What an operator reads when a configuration is refused: a missing option says
 * "required", an unknown one names the option it most likely meant, and every problem of
 * a document — types, ranges, unknown options and the rules across options — comes in
 * the same pass.
 */
import { describe, expect, it } from "vitest";
import { suggestOption, validateConfig } from "../../../src/config/load.js";
import { editDistance } from "../../../src/edit-distance.js";
import { noSecrets, problemsOf } from "./helpers.js";

type Doc = Record<string, unknown> & {
  keystone: Record<string, unknown> & { auth: Record<string, unknown> };
};

function valid(): Doc {
  return {
    listen: "127.0.0.1:8774",
    upstream: "http://127.0.0.1:18774",
    keystone: {
      www_authenticate_uri: "https://keystone.example:5000/v3",
      auth: { type: "password", username: "edge", password: "pw", project_name: "service" },
    },
    fernet: { key_repository: "/etc/keystone/fernet-keys" },
  };
}

describe("a missing option", () => {
  it("is 'required', whatever its type would have been", () => {
    expect(validateConfig(valid(), { sources: noSecrets }).upstream).toBe("http://127.0.0.1:18774");
    const noUpstream = valid();
    delete noUpstream.upstream;
    expect(problemsOf(noUpstream)).toEqual(["upstream: required"]);
    const noKeystone: Record<string, unknown> = valid();
    delete noKeystone.keystone;
    expect(problemsOf(noKeystone)).toEqual(["keystone: required"]);
    const noRepository = valid();
    noRepository.fernet = {};
    expect(problemsOf(noRepository)).toEqual(["fernet.key_repository: required"]);
  });

  it("says what a discriminator may be, and how a secret may be given", () => {
    const noType = valid();
    delete noType.keystone.auth.type;
    expect(problemsOf(noType)).toEqual([
      "keystone.auth.type: required (password or application_credential)",
    ]);
    const noPassword = valid();
    delete noPassword.keystone.auth.password;
    expect(problemsOf(noPassword)).toEqual([
      "keystone.auth.password: required (give password, password_file or password_env)",
    ]);
  });

  it("is not 'required' when given with the wrong type, null included", () => {
    const doc = valid();
    doc.upstream = null;
    doc.listen = 8774;
    const problems = problemsOf(doc);
    expect(problems).toHaveLength(2);
    expect(
      problems.some((p) => p.startsWith("upstream: expected an http:// or https:// URL")),
    ).toBe(true);
    expect(problems.some((p) => p.startsWith("listen: "))).toBe(true);
    expect(problems.join("\n")).not.toMatch(/required/);
  });
});

describe("an unknown option", () => {
  it("names the sibling it most likely meant", () => {
    const doc: Record<string, unknown> = valid();
    doc.upstrem = doc.upstream;
    delete doc.upstream;
    expect(problemsOf(doc)).toEqual([
      "upstream: required",
      "upstrem: unknown option (did you mean upstream?)",
    ]);
  });

  it("looks among the options of its own section, the chosen variant and secret sources", () => {
    const doc = valid();
    doc.keystone.auth.usernme = "x";
    doc.keystone.auth.password_fiel = "/run/secrets/pw";
    doc.keystone.timeout = 5;
    doc.cache = { lru_max_entrys: 5 };
    expect([...problemsOf(doc)].sort()).toEqual(
      [
        "cache.lru_max_entrys: unknown option (did you mean lru_max_entries?)",
        "keystone.auth.password_fiel: unknown option (did you mean password_file?)",
        "keystone.auth.usernme: unknown option (did you mean username?)",
        "keystone.timeout: unknown option (did you mean timeout_ms?)",
      ].sort(),
    );
  });

  it("names the section that has it when it is in the wrong one, and guesses nothing far off", () => {
    const doc: Record<string, unknown> = valid();
    doc.memcached_servers = ["127.0.0.1:11211"];
    doc.flux_capacitor = true;
    // application_credential's options, not password's
    (doc as Doc).keystone.auth.application_credential_i = "x";
    expect([...problemsOf(doc)].sort()).toEqual(
      [
        "flux_capacitor: unknown option",
        "keystone.auth.application_credential_i: unknown option",
        "memcached_servers: unknown option (did you mean cache.memcached_servers?)",
      ].sort(),
    );
  });

  it("edit distance and the guess", () => {
    expect(editDistance("upstrem", "upstream")).toBe(1);
    expect(editDistance("listne", "listen")).toBe(2);
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("kitten", "sitting")).toBe(3);
    // the command line's hints count a swap of two neighbours as one edit
    expect(editDistance("listne", "listen", { transpositions: true })).toBe(1);
    expect(editDistance("gracee", "grace", { transpositions: true })).toBe(1);
    expect(editDistance("kitten", "sitting", { transpositions: true })).toBe(3);
    expect(suggestOption("Upstream", ["upstream", "listen"])).toBe("upstream");
    expect(suggestOption("lsten", ["listen", "upstream"])).toBe("listen");
    expect(suggestOption("abc", ["listen", "upstream"])).toBeUndefined();
    // a prefix of two options is no guess
    expect(suggestOption("max_header", ["max_header_count", "max_header_bytes"])).toBeUndefined();
  });
});

describe("every problem in one pass", () => {
  it("a type error and a rule across options together", () => {
    const doc = valid();
    doc.keystone.timeout_ms = "2s";
    delete doc.keystone.auth.username;
    expect(problemsOf(doc)).toEqual([
      "keystone.timeout_ms: Invalid input: expected number, received string",
      "keystone.auth: give exactly one of username, user_id",
    ]);
  });

  it("the schema's own cross-field rules run beside other problems of their section", () => {
    const doc: Record<string, unknown> = valid();
    doc.client = { max_header_bytes: 65_536, max_head_bytes: 16_384, max_url_bytes: "8k" };
    doc.cache = { memcached_servers: ["127.0.0.1:11211"], lru_max_entries: -1 };
    doc.identity_relay = { max_body_bytes: 2_000_000, max_buffered_bytes: 1_000_000, x: 1 };
    (doc as Doc).keystone.endpoints = [
      { name: "same", url: "https://a.example/v3" },
      { name: "same", url: "https://b.example/v3" },
    ];
    (doc as Doc).keystone.timeout_ms = 0;
    const problems = problemsOf(doc);
    expect(problems).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^client\.max_url_bytes: /),
        "client.max_header_bytes: must not exceed max_head_bytes",
        expect.stringMatching(/^cache\.lru_max_entries: /),
        "cache.memcache_secret_key: memcache_secret_key is required when memcached_servers is set",
        "identity_relay.x: unknown option",
        "identity_relay.max_buffered_bytes: max_buffered_bytes must be at least max_body_bytes",
        expect.stringMatching(/^keystone\.timeout_ms: /),
        "keystone.endpoints: endpoint names must be unique (unnamed ones are named after host:port)",
      ]),
    );
    expect(problems).toHaveLength(8);
  });

  it("a rule across options says nothing about an option of the wrong type", () => {
    const doc: Record<string, unknown> = valid();
    doc.client = { max_header_bytes: "big", max_head_bytes: 16_384 };
    doc.cache = { memcached_servers: "127.0.0.1:11211" };
    doc.identity_relay = "on";
    (doc as Doc).keystone.endpoints = ["not a url", "also not"];
    const problems = problemsOf(doc);
    expect(problems.every((p) => !/must not exceed|required when|unique|at least/.test(p))).toBe(
      true,
    );
    expect(problems.map((p) => p.split(":")[0])).toEqual(
      expect.arrayContaining([
        "client.max_header_bytes",
        "cache.memcached_servers",
        "identity_relay",
        "keystone.endpoints.0",
      ]),
    );
  });
});
