#!/usr/bin/python3
"""keystonemiddleware's access-rule path matching, as the reference for the edge's.

Reads JSON on stdin:
  {"matches": [[request_path, path_pattern], ...], "paths": [path_info, ...]}
and prints JSON:
  {"matches": [{"match": bool, "regex": str} | {"error": str, "regex": str}, ...],
   "paths": [str | null, ...]}

`matches` runs Debian's unmodified `keystonemiddleware.auth_token._path_matches`; `regex`
is the expression it built and handed to `re.match` (recorded, not recomputed); `error`
is what `re` raised (keystonemiddleware would fail the request). `paths` gives webob's
`request.path` of keystonemiddleware's own request class for a WSGI PATH_INFO (a Latin-1
str, as the server hands it), or null where webob raises.
"""
import json
import re
import sys
import warnings

from keystonemiddleware import auth_token
from keystonemiddleware.auth_token import _request

warnings.simplefilter("ignore")


class _Recorder:
    """Stands in for the `re` module inside auth_token: records the expression."""

    def __init__(self):
        self.last = None

    def finditer(self, *args, **kwargs):
        return re.finditer(*args, **kwargs)

    def match(self, pattern, string, *args, **kwargs):
        self.last = pattern
        return re.match(pattern, string, *args, **kwargs)


def main():
    data = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    recorder = _Recorder()
    auth_token.re = recorder
    matches = []
    for request_path, pattern in data.get("matches", []):
        recorder.last = None
        try:
            result = auth_token._path_matches(request_path, pattern)
            matches.append({"match": result is not None, "regex": recorder.last})
        except (re.error, RecursionError, OverflowError) as e:
            matches.append({"error": "%s: %s" % (type(e).__name__, e), "regex": recorder.last})
    auth_token.re = re

    paths = []
    for path_info in data.get("paths", []):
        environ = {"REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": path_info}
        try:
            paths.append(_request._AuthTokenRequest(environ).path)
        except UnicodeDecodeError:
            paths.append(None)

    sys.stdout.write(json.dumps({"matches": matches, "paths": paths}))


if __name__ == "__main__":
    main()
