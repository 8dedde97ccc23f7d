/**
 * What the edge reads from a client's request head, in one pass over the raw headers.
 *
 * Owns: the outgoing header list (the client's headers minus hop-by-hop ones, minus the
 * headers its `Connection` header names, minus every identity header — strip before set —
 * and minus the proxy headers a service trusts, which only the edge sets: `Forwarded`
 * (one element, `for` and `proto`, which oslo.middleware's `HTTPProxyToWSGI` prefers to
 * everything else), `X-Real-IP`, `X-Forwarded-Proto`, `X-Forwarded-Host` (overwritten),
 * `X-Forwarded-Prefix` (dropped: it would move the service's `SCRIPT_NAME`);
 * `X-Forwarded-For` is appended to, its last entry the edge's peer) and, from the same
 * pass, the tokens, the
 * `Accept` header, and whether a body follows. Node's `req.headers` object is never built:
 * header names are classified once per spelling (a bounded cache), so a request costs no
 * lower-casing and no per-header object.
 *
 * Repeated headers read as Node's `req.headers` reads them: `Host` first wins; tokens and
 * `Accept` are joined with ", " (so two different `X-Auth-Token`s make one invalid token,
 * never a choice between them).
 */
import type { IncomingMessage } from "node:http";
import { connectionListed, isHopByHop } from "./hop-by-hop.js";

const enum Kind {
  Forward,
  Drop,
  ForwardedFor,
  ForwardedOther,
  Connection,
  AuthToken,
  StorageToken,
  ServiceToken,
  Accept,
  Host,
  ContentLength,
  TransferEncoding,
}

const SPECIAL: ReadonlyMap<string, Kind> = new Map([
  ["x-forwarded-for", Kind.ForwardedFor],
  ["x-forwarded-proto", Kind.ForwardedOther],
  ["x-forwarded-host", Kind.ForwardedOther],
  ["x-forwarded-prefix", Kind.ForwardedOther],
  ["x-real-ip", Kind.ForwardedOther],
  ["forwarded", Kind.ForwardedOther],
  ["connection", Kind.Connection],
  ["x-auth-token", Kind.AuthToken],
  ["x-storage-token", Kind.StorageToken],
  ["x-service-token", Kind.ServiceToken],
  ["accept", Kind.Accept],
  ["host", Kind.Host],
  ["content-length", Kind.ContentLength],
  ["transfer-encoding", Kind.TransferEncoding],
]);

/** Spellings remembered at most: clients use few; a flood of odd names cannot grow memory. */
const MAX_REMEMBERED_NAMES = 1024;

/** The request head, as the edge needs it. */
export interface RequestHead {
  /** Outgoing headers, flat `[name, value, …]`: stripped, with `X-Forwarded-*` added. */
  readonly headers: string[];
  /** `X-Auth-Token`, else `X-Storage-Token`. */
  readonly userToken: string | undefined;
  /** `X-Service-Token`. */
  readonly serviceToken: string | undefined;
  readonly accept: string | undefined;
  /** A `Content-Length` or `Transfer-Encoding` header came: a body follows. */
  readonly hasBody: boolean;
}

/** Reads request heads; one per server (it remembers header-name spellings). */
export class RequestHeadReader {
  private readonly kinds = new Map<string, Kind>();

  /** @param isIdentityHeader Lower-case names never forwarded from the client. */
  constructor(private readonly isIdentityHeader: (lowerName: string) => boolean) {}

  /**
   * @param authority The authority of an absolute-form target (RFC 9112 §3.2.2): it
   *   replaces the client's `Host`.
   */
  read(req: IncomingMessage, authority?: string): RequestHead {
    const raw = req.rawHeaders;
    const out: string[] = [];
    let forwardedFor: string | undefined;
    let userToken: string | undefined;
    let storageToken: string | undefined;
    let serviceToken: string | undefined;
    let accept: string | undefined;
    let host: string | undefined;
    let connection: string | undefined;
    let hasBody = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i] as string;
      const value = raw[i + 1] as string;
      switch (this.kindOf(name)) {
        case Kind.Forward:
          out.push(name, value);
          break;
        case Kind.Drop:
        case Kind.ForwardedOther:
          break;
        case Kind.ForwardedFor:
          forwardedFor = join(forwardedFor, value);
          break;
        case Kind.Connection:
          connection = join(connection, value);
          break;
        case Kind.AuthToken:
          userToken = join(userToken, value);
          out.push(name, value);
          break;
        case Kind.StorageToken:
          storageToken = join(storageToken, value);
          out.push(name, value);
          break;
        case Kind.ServiceToken:
          serviceToken = join(serviceToken, value);
          out.push(name, value);
          break;
        case Kind.Accept:
          accept = join(accept, value);
          out.push(name, value);
          break;
        case Kind.Host:
          host ??= authority ?? value;
          out.push(name, authority ?? value);
          break;
        case Kind.ContentLength:
          hasBody = true;
          out.push(name, value);
          break;
        case Kind.TransferEncoding:
          hasBody = true; // hop-by-hop: undici frames the body itself
          break;
      }
    }
    const listed = connection === undefined ? undefined : connectionListed(connection);
    const headers = listed === undefined ? out : withoutListed(out, listed);
    if (listed?.has("x-forwarded-for") === true) forwardedFor = undefined;
    if (host === undefined && authority !== undefined) {
      host = authority;
      headers.push("Host", authority);
    }
    const client = peerAddress(req.socket.remoteAddress);
    const proto = "encrypted" in req.socket ? "https" : "http";
    headers.push(
      "X-Forwarded-For",
      forwardedFor === undefined ? client : `${forwardedFor}, ${client}`,
    );
    headers.push("X-Forwarded-Proto", proto);
    if (host !== undefined) headers.push("X-Forwarded-Host", host);
    headers.push("X-Real-IP", client);
    headers.push("Forwarded", `for=${forwardedNode(client)};proto=${proto}`);
    return { headers, userToken: userToken ?? storageToken, serviceToken, accept, hasBody };
  }

  private kindOf(name: string): Kind {
    let kind = this.kinds.get(name);
    if (kind === undefined) {
      const lower = name.toLowerCase();
      kind =
        SPECIAL.get(lower) ??
        (isHopByHop(lower, undefined) || this.isIdentityHeader(lower) ? Kind.Drop : Kind.Forward);
      if (this.kinds.size < MAX_REMEMBERED_NAMES) this.kinds.set(name, kind);
    }
    return kind;
  }
}

/** The peer's address as a service should see it: IPv4-mapped IPv6 as plain IPv4. */
export function peerAddress(address: string | undefined): string {
  if (address === undefined) return "unknown";
  return address.startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}

/** RFC 7239 §6 node: IPv4 as a token, IPv6 bracketed and quoted, else obfuscated. */
export function forwardedNode(address: string): string {
  if (/^[0-9.]+$/.test(address)) return address;
  if (/^[0-9A-Fa-f:.]+$/.test(address)) return `"[${address}]"`;
  return "unknown";
}

function join(previous: string | undefined, value: string): string {
  return previous === undefined ? value : `${previous}, ${value}`;
}

/** `out` minus the headers a `Connection` header lists (rare: custom hop-by-hop names). */
function withoutListed(out: string[], listed: ReadonlySet<string>): string[] {
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) {
    const name = out[i] as string;
    if (!listed.has(name.toLowerCase())) kept.push(name, out[i + 1] as string);
  }
  return kept;
}
