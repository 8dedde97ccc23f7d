/**
 * The responses keystonemiddleware's auth_token answers with itself, byte for byte.
 *
 * Owns: the 401 for a missing/invalid token (`webob.exc.HTTPUnauthorized` with a JSON body
 * built in `AuthProtocol.process_request`), the `WWW-Authenticate` header auth_token also
 * appends to every 401 the service returns (`process_response`), and the 503 for an
 * unreachable Keystone (`webob.exc.HTTPServiceUnavailable`, whose body webob 1.8 negotiates
 * from the request's `Accept` header: HTML, JSON or plain text), including a port of webob's
 * `Accept` parsing for that choice.
 *
 * Headers are the ones webob itself writes (a WSGI server adds `Date`, `Server`, connection
 * headers). For a `HEAD` request webob sends the same headers, `Content-Length` included, and
 * no body.
 */
import type { HeaderPair } from "./inject.js";

/** A response as plain data. */
export interface ContractResponse {
  readonly status: number;
  readonly headers: readonly HeaderPair[];
  readonly body: string;
}

const UNAUTHORIZED_BODY =
  '{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}}';

/**
 * `WWW-Authenticate: Keystone uri="<www_authenticate_uri>"`, the URI inserted verbatim
 * (`'Keystone uri="%s"' % uri`). auth_token adds it to its own 401 and appends it to every
 * 401 coming back from the service (even when the service already sent one).
 */
export function wwwAuthenticateHeader(wwwAuthenticateUri: string): HeaderPair {
  return ["WWW-Authenticate", `Keystone uri="${wwwAuthenticateUri}"`];
}

/**
 * auth_token's 401 (no/invalid user token, or a service token that is invalid or does not
 * count), whatever the `Accept` header: `Content-Type: application/json` (no charset),
 * `Content-Length: 114`, `WWW-Authenticate`, body
 * `{"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made
 * requires authentication."}}` (Python `json.dumps` spacing).
 */
export function unauthorizedResponse(wwwAuthenticateUri: string): ContractResponse {
  return {
    status: 401,
    headers: [
      ["Content-Type", "application/json"],
      ["Content-Length", String(Buffer.byteLength(UNAUTHORIZED_BODY))],
      wwwAuthenticateHeader(wwwAuthenticateUri),
    ],
    body: UNAUTHORIZED_BODY,
  };
}

const EXPLANATION = "The server is currently unavailable. Please try again at a later time.";
const DETAIL = "The Keystone service is temporarily unavailable.";

const UNAVAILABLE_BODIES = {
  html: {
    contentType: "text/html; charset=UTF-8",
    body:
      "<html>\n <head>\n  <title>503 Service Unavailable</title>\n </head>\n <body>\n" +
      `  <h1>503 Service Unavailable</h1>\n  ${EXPLANATION}<br /><br />\n${DETAIL}\n\n\n` +
      " </body>\n</html>",
  },
  json: {
    contentType: "application/json",
    body:
      `{"message": "${EXPLANATION}<br /><br />\\n${DETAIL}\\n\\n", ` +
      '"code": "503 Service Unavailable", "title": "Service Unavailable"}',
  },
  plain: {
    contentType: "text/plain; charset=UTF-8",
    body: `503 Service Unavailable\n\n${EXPLANATION}\n\n ${DETAIL}  `,
  },
} as const;

/** Which body webob renders for an error response. */
export type ErrorBodyFormat = keyof typeof UNAVAILABLE_BODIES;

/**
 * The `Retry-After` value of a 503 for `seconds` (default 5): whole seconds, at least 1.
 * keystonemiddleware sends none; the edge's 503s (proxy and Identity face) all do.
 */
export function retryAfterValue(seconds = 5): string {
  return String(Math.max(1, Math.ceil(seconds)));
}

/**
 * auth_token's 503 when Keystone cannot be reached (connect failure, timeout, discovery
 * failure, or Keystone answering 5xx / refusing the service credentials twice) and
 * `delay_auth_decision` is off. Headers in webob's order: `Content-Length`, `Content-Type`.
 *
 * @param accept the request's `Accept` header (`undefined` when absent)
 */
export function serviceUnavailableResponse(accept: string | undefined): ContractResponse {
  const { contentType, body } = UNAVAILABLE_BODIES[errorBodyFormat(accept)];
  return {
    status: 503,
    headers: [
      ["Content-Length", String(Buffer.byteLength(body))],
      ["Content-Type", contentType],
    ],
    body,
  };
}

// ---------------------------------------------------------------------------------------------
// webob.acceptparse (1.8), as far as WSGIHTTPException.generate_response needs it.

const OWS = "[ \\t]*";
const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const QVALUE = "(?:0(?:\\.[0-9]{0,3})?)|(?:1(?:\\.0{0,3})?)";
const WEIGHT = `${OWS};${OWS}[qQ]=(${QVALUE})`;
const QDTEXT = "[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]";
const QUOTED_PAIR = "\\\\[\\t \\x21-\\x7e\\x80-\\xff]";
const QUOTED_STRING = `"(?:(?:${QDTEXT})|(?:${QUOTED_PAIR}))*"`;
const PARAMETER = `${TOKEN}=(?:(?:${TOKEN})|(?:${QUOTED_STRING}))`;
const MEDIA_RANGE = `((?:${TOKEN}/${TOKEN}))((?:${OWS};${OWS}(?![qQ]=)${PARAMETER})*)`;
const ACCEPT_EXT = `${OWS};${OWS}${TOKEN}(?:=(?:(?:${TOKEN})|(?:${QUOTED_STRING})))?`;
const ELEMENT = `${MEDIA_RANGE}(?:${WEIGHT}((?:${ACCEPT_EXT})*))?`;
/** `_list_0_or_more__compiled_re(element)`, as `re.match` uses it. */
const VALID_ACCEPT = new RegExp(
  `^(?:(?:$)|(?:(?:,|(?:${ELEMENT}))(?:${OWS},(?:${OWS}${ELEMENT})?)*)$)`,
);
const ELEMENTS = new RegExp(ELEMENT, "g");

/** Python's `$` also matches before a final newline. */
function validAccept(value: string): boolean {
  return (
    VALID_ACCEPT.test(value) || (value.endsWith("\n") && VALID_ACCEPT.test(value.slice(0, -1)))
  );
}

/**
 * webob's choice between `text/html` and `application/json` offers
 * (`acceptable_offers(['text/html', 'application/json'])[0]`): an absent or empty header
 * accepts neither (plain text); an invalid header accepts both (HTML); otherwise each offer
 * takes the q of the most specific matching range (`type/subtype` without parameters, then
 * `type/*`, then `*∕*`; first one wins a tie; a range with parameters never matches these
 * parameterless offers exactly), q=0 drops it, and the higher q wins, HTML on a tie.
 */
export function errorBodyFormat(accept: string | undefined): ErrorBodyFormat {
  const value = accept ?? "";
  if (!validAccept(value)) return "html";
  const offers = [
    { type: "text", subtype: "html", q: 0, specificity: 0 },
    { type: "application", subtype: "json", q: 0, specificity: 0 },
  ];
  for (const match of value.matchAll(ELEMENTS)) {
    const typeSubtype = (match[1] ?? "").toLowerCase();
    const hasParams = (match[2] ?? "") !== "";
    const q = match[3] !== undefined && match[3] !== "" ? Number(match[3]) : 1;
    const slash = typeSubtype.indexOf("/");
    const rangeType = typeSubtype.slice(0, slash);
    const rangeSubtype = typeSubtype.slice(slash + 1);
    for (const offer of offers) {
      let specificity: number;
      if (offer.type === rangeType && offer.subtype === rangeSubtype) {
        if (hasParams) continue;
        specificity = 3;
      } else if (rangeSubtype === "*" && offer.type === rangeType) {
        specificity = 2;
      } else if (typeSubtype === "*/*") {
        specificity = 1;
      } else {
        continue;
      }
      if (specificity <= offer.specificity) continue;
      offer.q = q;
      offer.specificity = specificity;
    }
  }
  const [html, json] = offers as [(typeof offers)[number], (typeof offers)[number]];
  if (html.q === 0 && json.q === 0) return "plain";
  return json.q > html.q ? "json" : "html";
}
