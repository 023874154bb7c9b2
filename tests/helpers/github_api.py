#!/usr/bin/python3
"""A scripted GitHub REST API on loopback for tests/integration/test_pr.sh.

usage: github_api.py PORTFILE LOGFILE
Every request is appended to LOGFILE as one JSON line {method, path, headers, body}.
POST /repos/O/N/pulls: 201 with a new pull request; 422 "A pull request already exists" when one
  is open for that head; 500 when the title contains FAIL500.
GET /repos/O/N/pulls?head=O:BRANCH&state=open: the open ones of that head.
POST /repos/O/N/issues/K/comments: 201.
"""
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

port_file, log_file = sys.argv[1], sys.argv[2]
lock = threading.Lock()
pulls = {}  # "O/N" -> list of {number, head, html_url}


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, status, obj):
        b = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        parts = u.path.strip("/").split("/")
        with lock:
            with open(log_file, "a") as f:
                f.write(json.dumps({"method": self.command, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": raw.decode("utf-8", "replace")}) + "\n")
            if len(parts) == 4 and parts[0] == "repos" and parts[3] == "pulls":
                repo = parts[1] + "/" + parts[2]
                lst = pulls.setdefault(repo, [])
                if self.command == "POST":
                    body = json.loads(raw)
                    if "FAIL500" in body.get("title", ""):
                        return self.reply(500, {"message": "Server Error"})
                    if any(p["head"] == body["head"] for p in lst):
                        return self.reply(422, {"message": "Validation Failed", "errors": [
                            {"resource": "PullRequest", "code": "custom",
                             "message": "A pull request already exists for %s:%s." % (parts[1], body["head"])}]})
                    num = 100 + sum(len(v) for v in pulls.values())
                    pr = {"number": num, "head": body["head"],
                          "html_url": "https://github.example/%s/pull/%d" % (repo, num)}
                    lst.append(pr)
                    return self.reply(201, {"number": num, "html_url": pr["html_url"], "draft": body.get("draft")})
                if self.command == "GET":
                    q = parse_qs(u.query)
                    head = q.get("head", [""])[0]
                    owner, _, branch = head.partition(":")
                    found = [{"number": p["number"], "html_url": p["html_url"]} for p in lst
                             if p["head"] == branch and owner == parts[1]]
                    return self.reply(200, found)
            if len(parts) == 6 and parts[0] == "repos" and parts[3] == "issues" and parts[5] == "comments" \
                    and self.command == "POST":
                return self.reply(201, {"id": 1, "html_url": "https://github.example/c/1"})
        self.reply(404, {"message": "Not Found"})

    do_GET = do_POST = do_PATCH = handle_any


srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
with open(port_file + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
import os
os.rename(port_file + ".tmp", port_file)
srv.serve_forever()
