#!/usr/bin/env python3
"""Serves the demo page of the local stack: a page whose Content-Security-Policy it violates on
purpose, reporting to the local ingest, so a person can open it in a browser, click, and watch the
reports land in ClickHouse.

    deploy/demo/serve.py PORT REPORT_URI        (deploy/local.sh starts it on 127.0.0.1:8090)

Loopback only. Standard library only.
"""
import http.server
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
}


def policy(report_uri: str) -> str:
    return (
        "default-src 'self'; script-src 'self' 'report-sample'; "
        "style-src 'self' 'report-sample'; img-src 'self'; connect-src 'self'; "
        f"report-uri {report_uri}"
    )


class Handler(http.server.BaseHTTPRequestHandler):
    report_uri = ""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        entry = FILES.get(self.path.split("?", 1)[0])
        if entry is None:
            self.send_error(404)
            return
        name, content_type = entry
        body = (HERE / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Security-Policy", policy(self.report_uri))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("demo page: " + (fmt % args) + "\n")


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: serve.py PORT REPORT_URI")
    Handler.report_uri = sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.serve_forever()


if __name__ == "__main__":
    main()
