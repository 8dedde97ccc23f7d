#!/usr/bin/python3
"""Reference for the header contract: what Debian's unmodified keystonemiddleware auth_token
puts on a request, for given Keystone answers.

Runs the real ``keystonemiddleware.auth_token.AuthProtocol`` around a tiny WSGI app that
captures the environ it receives. Only the network call to Keystone is replaced:
``IdentityServer.verify_token`` (the layer under ``AuthProtocol.fetch_token``, so the real
fetch_token, token cache, AccessInfo construction, expiry/bind/access-rule checks,
service-token-role decision, header stripping and setting, 401/503 paths all run) returns the
given body, or raises what it raises for a 404 (``InvalidToken``) or an unreachable Keystone
(``ServiceError``).

stdin, one case or ``{"cases": [case, ...]}``::

    {"user":    <GET /v3/auth/tokens body> | null | "invalid" | "unavailable",
     "service": <body> | null | "invalid" | "unavailable",
     "conf": {"include_service_catalog": bool, "service_token_roles": [...],
              "service_token_roles_required": bool, "delay_auth_decision": bool,
              "www_authenticate_uri": str, "service_type": str},      # all optional
     "client_headers": {name: value},          # optional, sent by the "client"
     "request": {"method": "GET", "path": "/"}}  # optional

``null`` = the client sent no such token. stdout, one result or ``{"results": [...]}``::

    {"status": 200,
     "headers": {Name: value},     # identity headers the app got, keystonemiddleware casing
     "none_headers": [Name, ...],  # set by keystonemiddleware to None (key in environ, value
                                   # None: webob does not delete them; no HTTP hop can carry
                                   # them, so an HTTP edge leaves them out)
     "response": {"status", "headers", "body"}}  # when the app was not called (401/503)

``{"mode": "all_auth_headers"}`` prints ``_AuthTokenRequest._all_auth_headers()`` in order.
"""
import json
import logging
import sys

import webob

from keystonemiddleware import auth_token
from keystonemiddleware.auth_token import _exceptions as ksm_exceptions
from keystonemiddleware.auth_token import _request

logging.disable(logging.CRITICAL)

_DEFAULT_CONF = {
    "www_authenticate_uri": "https://keystone.example/v3",
    "delay_auth_decision": False,
    "include_service_catalog": True,
    "service_token_roles": ["service"],
    "service_token_roles_required": False,
}

_USER_TOKEN = "user-token"
_SERVICE_TOKEN = "service-token"


def _all_auth_headers():
    return list(_request._AuthTokenRequest.blank("/")._all_auth_headers())


def _identity_names():
    """environ key -> header name, for every header auth_token strips or sets."""
    names = _all_auth_headers() + [_request._AuthTokenRequest._SYSTEM_SCOPE_HEADER]
    return {"HTTP_" + n.upper().replace("-", "_"): n for n in names}


def _paste_value(value):
    # auth_token reads paste.ini strings; give it the same.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def _run(case):
    conf = dict(_DEFAULT_CONF)
    conf.update(case.get("conf") or {})
    paste_conf = {k: _paste_value(v) for k, v in conf.items()}

    captured = {}

    def app(environ, start_response):
        captured.update(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    middleware = auth_token.AuthProtocol(app, paste_conf)
    answers = {_USER_TOKEN: case.get("user"), _SERVICE_TOKEN: case.get("service")}

    def verify_token(token, retry=True, allow_expired=False):
        answer = answers[token]
        if answer == "invalid":
            raise ksm_exceptions.InvalidToken("Token authorization failed")
        if answer == "unavailable":
            raise ksm_exceptions.ServiceError("Keystone unavailable")
        return json.loads(json.dumps(answer))  # a fresh copy, as from the wire

    middleware._identity_server.verify_token = verify_token

    request = case.get("request") or {}
    headers = dict(case.get("client_headers") or {})
    if case.get("user") is not None:
        headers["X-Auth-Token"] = _USER_TOKEN
    if case.get("service") is not None:
        headers["X-Service-Token"] = _SERVICE_TOKEN
    req = webob.Request.blank(request.get("path", "/"), headers=headers)
    req.method = request.get("method", "GET")
    resp = req.get_response(middleware)

    result = {"status": resp.status_int, "headers": {}, "none_headers": []}
    if captured:
        for key, name in _identity_names().items():
            if key in captured:
                if captured[key] is None:
                    result["none_headers"].append(name)
                else:
                    result["headers"][name] = captured[key]
    else:
        result["response"] = {
            "status": resp.status_int,
            "headers": [list(h) for h in resp.headerlist],
            "body": resp.body.decode("utf-8"),
        }
    return result


def main():
    data = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    if data.get("mode") == "all_auth_headers":
        out = {"all_auth_headers": _all_auth_headers()}
    elif "cases" in data:
        out = {"results": [_run(case) for case in data["cases"]]}
    else:
        out = _run(data)
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
