"""A webhook receiver in a process of its own, for the tests: one fixed answer to every request.

``python -m tests.hookserver HOST LOG STATUS [LOCATION]`` listens on a free port of HOST,
answers every request (any method) with STATUS and, when given, ``Location: LOCATION``,
and appends one JSON line to LOG per event: ``{"listening": PORT}`` once bound, then
``{"connection": ADDRESS}`` for each TCP connection accepted and ``{"method", "path",
"signature", "body"}`` for each request, so a test sees even a connection that sent nothing.
"""

from __future__ import annotations

import http.server
import json
import sys
import threading
from pathlib import Path


def serve(host: str, log: Path, status: int, location: str | None) -> None:
    """Serve on ``host`` until killed, logging connections and requests to ``log``."""
    lock = threading.Lock()

    def record(entry: dict) -> None:
        with lock, log.open("a") as out:
            out.write(json.dumps(entry) + "\n")

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace")
            record({"method": self.command, "path": self.path,
                    "signature": self.headers.get("X-Voe-Signature"), "body": body})
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = do_PATCH = _answer  # noqa: N815

        def log_message(self, *args: object) -> None:
            """Quiet: the log file holds what the tests look at."""

    class Server(http.server.ThreadingHTTPServer):
        def verify_request(self, request: object, client_address: tuple) -> bool:
            record({"connection": client_address[0]})
            return True

    server = Server((host, 0), Handler)
    record({"listening": server.server_address[1]})
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]),
          sys.argv[4] if len(sys.argv) > 4 else None)
