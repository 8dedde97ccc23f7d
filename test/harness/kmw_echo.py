#!/usr/bin/python3
"""A WSGI app that echoes the request headers it receives, wrapped by Debian's unmodified
keystonemiddleware auth_token: the reference for what an OpenStack service sees.

With KMW_BARE=1 the app runs alone, unwrapped. Configuration comes as JSON in the KMW_CONF environment variable: auth_token's own option
names (auth_type, auth_url, username, password, project_name, user_domain_id,
project_domain_id, www_authenticate_uri, delay_auth_decision, include_service_catalog,
service_token_roles, service_token_roles_required, ...), exactly as in a paste.ini.
"""
import json
import os

from keystonemiddleware import auth_token


def echo(environ, start_response):
    headers = {}
    for key, value in environ.items():
        # auth_token assigns None to headers that do not apply (X-Domain-Id on a project
        # token, ...); a service reading them sees "absent", and over HTTP absent is all
        # there is. So None is left out, as an absent header.
        if key.startswith("HTTP_") and value is not None:
            headers[key[5:].replace("_", "-").lower()] = value
    body = json.dumps({
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO", ""),
        "query": environ.get("QUERY_STRING", ""),
        "headers": headers,
    }).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


# KMW_BARE=1: the echo app alone (the benchmark's baseline for auth_token's own cost).
if os.environ.get("KMW_BARE") == "1":
    application = echo
else:
    application = auth_token.AuthProtocol(echo, json.loads(os.environ["KMW_CONF"]))
