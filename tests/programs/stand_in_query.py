"""A stand-in for a query service of someone else's: standard library only, no msshop
import. It learns its port and credential as the foreign-service contract says (its
environment and service.json) and serves GET /health and a canned GET /user-orders/{id}.

Its first argument picks a misbehaviour for the tests of what msshop says about it:
serve (the default), exit (fails at start), silent (runs, answers nothing), wrong-port
(listens on another port than the one it was given), flood (writes to its log without end).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/health":
            self.answer(200, {"service": os.environ["MSSHOP_SERVICE"], "status": "ok",
                              "pid": os.getpid()})
        elif self.path.startswith("/user-orders/"):
            user_id = int(self.path.split("/")[2].split("?")[0])
            self.answer(200, {"user_id": user_id, "orders": [{"order_id": 1, "title": "Hat"}],
                              "served_by": "stand-in"})
        else:
            self.answer(404, {"error": "no such route", "status": 404, "service": "query"})

    def answer(self, status: int, document: dict[str, object]) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        print("stand-in query:", format % args, flush=True)


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with Path(os.environ["MSSHOP_SERVICE_FILE"]).open(encoding="utf-8") as file:
        given = json.load(file)
    assert len(given["credential"]) == 64, "its credential comes in service.json"
    host, port = os.environ["MSSHOP_HOST"], int(os.environ["MSSHOP_PORT"])
    print(f"stand-in query starting ({mode}) for port {port}", flush=True)
    if mode == "exit":
        print("stand-in query: cannot open its read model: no such table", flush=True)
        sys.exit(3)
    if mode == "silent":
        while True:
            time.sleep(1)
    if mode == "wrong-port":
        port = 0  # a free one, not the one it was given
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    print(f"stand-in query serving on {host}:{server.socket.getsockname()[1]}", flush=True)
    if mode == "flood":  # serves, and writes to its log as fast as it can for 3 s (150 MB at most)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        line = "stand-in query: flooding " + "x" * 200 + "\n"
        until = time.monotonic() + 3
        for _ in range(700):
            sys.stdout.write(line * 1000)
            if time.monotonic() > until:
                break
        sys.stdout.flush()
        print("stand-in query: flood over", flush=True)
        while True:
            time.sleep(1)
    server.serve_forever()


if __name__ == "__main__":
    main()
