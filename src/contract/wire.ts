/**
 * Getting a contract header value across the HTTP hop to the service.
 *
 * Owns: the one thing keystonemiddleware never had to do. In-process it writes Python `str`
 * values straight into the WSGI environ, so `X-User-Name: 研究` reaches the service as the
 * text `研究`. Behind an HTTP edge the service's WSGI server (uwsgi, mod_wsgi, eventlet) builds
 * the environ from bytes, decoding them as ISO-8859-1 (PEP 3333). Node's HTTP clients write a
 * header string as ISO-8859-1 too and refuse characters above U+00FF and control characters
 * (`ERR_INVALID_CHAR`), so a raw value with, e.g., CJK characters would fail the request.
 */

/** Characters an HTTP/1.1 header value may carry as one ISO-8859-1 byte each (Node's check). */
const LATIN1_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** Characters that can never be sent: C0 controls but tab (CR/LF would split headers), DEL. */
// eslint-disable-next-line no-control-regex
const UNSENDABLE = /[\x00-\x08\x0a-\x1f\x7f]/;

/**
 * The string to hand Node's `http`/undici for a contract header value (Node writes each
 * character as one byte), or `undefined` when the value cannot cross an HTTP hop at all
 * (it holds a control character other than tab, or DEL).
 *
 * - Only ISO-8859-1 characters (all ASCII, `Jürgen`): returned unchanged; the service's WSGI
 *   server decodes the bytes back to exactly the string keystonemiddleware would have set.
 * - Anything above U+00FF (`研究`, emoji): its UTF-8 bytes, one character per byte. The
 *   service sees the PEP 3333 "bytes as latin-1" string; `.encode('latin-1').decode('utf-8')`
 *   recovers the text. No HTTP encoding can reproduce keystonemiddleware's environ exactly
 *   here; UTF-8 is the lossless choice. (`X-Service-Catalog` is always ASCII.)
 *
 * The check is one regular-expression test, allocation-free for the common ASCII case.
 */
export function wireHeaderValue(value: string): string | undefined {
  if (LATIN1_SAFE.test(value)) return value;
  if (UNSENDABLE.test(value)) return undefined;
  return Buffer.from(value, "utf8").toString("latin1");
}
