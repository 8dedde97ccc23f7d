"""Reads a subunit v2 stream (``stestr last --subunit``) on stdin and prints one JSON object:
{"tests": [{"id", "status", "reason"?, "traceback"?}]}, test ids without their
``[id-…,smoke]`` tags. Status is subunit's: success, fail, skip, xfail, uxsuccess.
Run with Debian's /usr/bin/python3 (it has python3-subunit, which tempest pulls in)."""
import json
import re
import sys

import subunit
import testtools

TAGS = re.compile(r"\[.*\]$")
tests = []


def on_test(test):
    status = test["status"]
    if status in ("exists", "inprogress", None):
        return
    entry = {"id": TAGS.sub("", test["id"]), "status": status}
    details = test.get("details") or {}
    reason = details.get("reason")
    if reason is not None:
        entry["reason"] = reason.as_text().strip()
    traceback = details.get("traceback")
    if traceback is not None and status in ("fail", "uxsuccess"):
        # The last lines say what failed; the whole of it is in the workspace's log.
        entry["traceback"] = "\n".join(traceback.as_text().strip().splitlines()[-12:])
    tests.append(entry)


stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name="stdout")
result = testtools.StreamToDict(on_test)
result.startTestRun()
try:
    stream.run(result)
finally:
    result.stopTestRun()
json.dump({"tests": tests}, sys.stdout)
