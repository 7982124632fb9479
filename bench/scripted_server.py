"""An OpenAI-compatible chat server that answers from a script.

It stands in for a model only where a real one cannot be made to say a given thing: hostile
output, or a request that fails on cue. It speaks the protocol `transformers serve` and vLLM
speak: GET /v1/models, POST /v1/chat/completions streamed as server-sent events with a final
usage chunk, errors as JSON with an HTTP status. It can also break the way servers break: hang
after the first chunks (`Stall`), reset the connection in the middle of a stream (`Reset`), or
stream bytes that are not the protocol (`Garbage`), or point the client elsewhere (`Redirect`).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Stall:
    """Stream ``text`` and then send nothing more for ``seconds`` (a server that hangs mid-answer)."""

    text: str = "Well, let me"
    seconds: float = 30.0


@dataclass(frozen=True)
class Reset:
    """Stream ``text`` and then reset the TCP connection (RST), as a crashing server does."""

    text: str = "Once upon a"


@dataclass(frozen=True)
class Garbage:
    """A 200 event stream whose events are not the OpenAI protocol (``payload`` as raw bytes)."""

    payload: bytes = b"data: {this is not json\n\n"


@dataclass(frozen=True)
class Redirect:
    """Answer the request with a redirect to ``location`` (a server pointing clients elsewhere)."""

    location: str
    status: int = 307


class ScriptedServer:
    MODEL = "scripted-model"

    def __init__(self, replies: list, *, default: str = "Fine.", chunk_delay: float = 0.02):
        """``replies`` are used in order, one per request: a string to stream, or an
        (HTTP status, message) tuple to fail with. Then every request gets ``default``."""
        self.replies = deque(replies)
        self.default = default
        self.chunk_delay = chunk_delay
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    model_name = MODEL

    def start(self) -> ScriptedServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _next(self):
        with self.lock:
            return self.replies.popleft() if self.replies else self.default

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status, payload):
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": server.MODEL, "object": "model"}]})
                else:
                    self._json(404, {"detail": "not found"})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append(body)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._json(404, {"detail": "not found"})
                reply = server._next()
                if isinstance(reply, tuple):
                    status, message = reply
                    return self._json(status, {"error": {"message": message, "type": "scripted"}})
                if isinstance(reply, Redirect):
                    self.send_response(reply.status)
                    self.send_header("Location", reply.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if isinstance(reply, (Stall, Reset, Garbage)):
                    return self._break(reply)
                if not body.get("stream"):
                    return self._json(200, {
                        "id": "x", "object": "chat.completion", "model": server.MODEL,
                        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                     "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": 5, "completion_tokens": len(reply.split()),
                                  "total_tokens": 5 + len(reply.split())}})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Connection", "close")
                self.end_headers()

                def event(payload):
                    self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                    self.wfile.flush()

                base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": server.MODEL}
                event({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
                pieces = [reply[i:i + 12] for i in range(0, len(reply), 12)] or [""]
                for piece in pieces:
                    time.sleep(server.chunk_delay)
                    event({**base, "choices": [{"index": 0, "delta": {"content": piece}}]})
                event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": len(pieces),
                                 "total_tokens": 5 + len(pieces)}})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()
                self.close_connection = True

            def _break(self, fault):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                if isinstance(fault, Garbage):
                    self.wfile.write(fault.payload)
                    self.wfile.flush()
                    return
                base = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": server.MODEL}
                for payload in ({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
                                {**base, "choices": [{"index": 0, "delta": {"content": fault.text}}]}):
                    self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
                    self.wfile.flush()
                if isinstance(fault, Stall):
                    time.sleep(fault.seconds)
                    return
                # SO_LINGER 0: close() sends RST instead of FIN.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def finish(self):
                try:
                    super().finish()
                except OSError:  # the connection was reset on purpose
                    pass

        return Handler
