"""A pass-through HTTP proxy in front of the fake server that can hold batch creations, so a test
can kill a real `evalbatch` process at an exact step: after its input file was uploaded and
before the batch exists (`hold="before"`: the create never reaches the server), or after the
server created the batch and before the process heard its ID (`hold="after"`: the reply never
comes back)."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_CREATE_PATHS = ("/v1/batches", "/v1/messages/batches")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "accept-encoding"}


class HoldingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.hold: str | None = None
        """None: pass everything; "before" or "after": hold batch creations there."""
        self.held = threading.Event()
        """Set once a creation is held."""
        self._release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                proxy._forward(self)

            def do_POST(self) -> None:
                proxy._forward(self)

            def do_DELETE(self) -> None:
                proxy._forward(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> HoldingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else None
        creating = handler.command == "POST" and handler.path.split("?")[0] in _CREATE_PATHS
        if creating and self.hold == "before":
            self._wait_forever()
            return
        request = urllib.request.Request(self.upstream + handler.path, data=body, method=handler.command,
                                         headers={k: v for k, v in handler.headers.items()
                                                  if k.lower() not in _HOP_HEADERS})
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status, headers, content = reply.status, reply.headers, reply.read()
        except urllib.error.HTTPError as error:
            status, headers, content = error.code, error.headers, error.read()
        if creating and self.hold == "after":
            self._wait_forever()
            return
        handler.send_response(status)
        for key, value in headers.items():
            if key.lower() not in _HOP_HEADERS:
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content)

    def _wait_forever(self) -> None:
        """Until the test ends: the client sees neither a reply nor a closed connection."""
        self.held.set()
        self._release.wait()
