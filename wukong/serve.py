"""A small HTTP prediction server (standard library only).

- ``GET /health`` -> ``{"status": "ok", "modality": ..., "classes": [...]}``
- ``POST /predict`` with image bytes (image models), or JSON ``{"text": "..."}`` /
  ``{"texts": [...]}`` (text models); ``?top_k=K``. Answers the same records as
  ``wukong predict --json``.

With a ``token``, ``POST /predict`` requires the header ``Authorization: Bearer <token>`` (401
otherwise); ``/health`` stays open, for load balancers. The server binds 127.0.0.1 by default.
"""

from __future__ import annotations

import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from wukong.errors import WukongError

MAX_BODY = 32 * 1024 * 1024
DRAIN_LIMIT = 256 * 1024 * 1024  # an oversized body up to this is read and dropped; beyond, the connection closes
SOCKET_TIMEOUT = 30.0


def make_server(
    model: Any, host: str = "127.0.0.1", port: int = 8000, *, token: str | None = None
) -> ThreadingHTTPServer:
    """A server bound to ``host:port`` (``port=0``: any free port); call ``serve_forever``.

    ``token``: the bearer token that ``POST /predict`` must carry (``None``: no check).
    """
    expected = f"Bearer {token}".encode() if token else None
    lock = threading.Lock()  # one prediction at a time: torch already uses every core

    class Handler(BaseHTTPRequestHandler):
        timeout = SOCKET_TIMEOUT  # a client that stalls mid-request loses its connection, not a thread forever

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if urlparse(self.path).path == "/health":
                self._send(200, {"status": "ok", "modality": model.modality, "classes": list(model.classes_)})
            else:
                self._send(404, {"error": "not found: use GET /health or POST /predict"})

        def do_HEAD(self) -> None:  # noqa: N802 - load balancers probe with HEAD
            status = 200 if urlparse(self.path).path == "/health" else 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/predict":
                self._send(404, {"error": "not found: use POST /predict"})
                return
            given = (self.headers.get("Authorization") or "").encode()
            if expected is not None and not hmac.compare_digest(given, expected):
                self._send(401, {"error": "missing or wrong token: send 'Authorization: Bearer <token>'"})
                return
            given_length = (self.headers.get("Content-Length") or "").strip()
            if not given_length.isdigit():
                self.close_connection = True  # the body's end is unknown: this connection cannot go on
                self._send(411 if not given_length else 400, {"error": "send a Content-Length header: a byte count"})
                return
            length = int(given_length)
            if length == 0:
                self._send(400, {"error": f"empty body: send an image (or JSON for text), up to {MAX_BODY} bytes"})
                return
            if length > MAX_BODY:
                self._drain(length)
                self._send(413, {"error": f"body of {length} bytes: over the {MAX_BODY}-byte limit"})
                return
            try:
                body = self.rfile.read(length)
            except OSError:  # a client that stalls past the socket timeout, or goes away
                self.close_connection = True
                return
            if len(body) < length:
                return  # the client went away mid-body
            try:
                top_k = _top_k(parse_qs(url.query).get("top_k", ["1"])[0])
                with lock:
                    result = _predict(model, body, self.headers.get("Content-Type", ""), top_k)
            except (WukongError, ValueError) as exc:
                self._send(400, {"error": str(exc)})
                return
            self._send(200, result)

        def _drain(self, length: int) -> None:
            """Read and drop an oversized body (up to a bound), so the client can read the answer."""
            if length > DRAIN_LIMIT:
                self.close_connection = True
                return
            left = length
            while left > 0:
                chunk = self.rfile.read(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # quiet by default
            pass

    return ThreadingHTTPServer((host, port), Handler)


def _top_k(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"top_k={value!r}: give a whole number >= 1")
    return int(value)


def _predict(model: Any, body: bytes, content_type: str, top_k: int) -> Any:
    if model.modality == "image":  # the body is one encoded image
        row = model.predict_records([body], top_k)[0]
        if "error" in row:
            raise ValueError(f"the uploaded image: {row['error']}")
        return {**row, "input": "upload"}
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f'send JSON {{"text": ...}}: {exc}') from exc
    if not isinstance(payload, dict):
        raise ValueError(f'send a JSON object {{"text": "..."}} or {{"texts": [...]}}, not a {type(payload).__name__}')
    texts = payload.get("texts") or ([payload["text"]] if "text" in payload else None)
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError('send JSON {"text": "..."} or {"texts": ["...", ...]}')
    rows = model.predict_records(texts, top_k)
    return rows[0] if "text" in payload and "texts" not in payload else rows


def serve(model: Any, host: str = "127.0.0.1", port: int = 8000, *, token: str | None = None) -> None:
    server = make_server(model, host, port, token=token)
    print(f"serving {model.modality} model on http://{host}:{server.server_port} (POST /predict, GET /health)")
    if not token and host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: {host} is reachable from other machines and --token is not set: anyone can predict")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
