"""A door that opens late: a loopback port that refuses connections until opened, then forwards to a target."""

import selectors
import socket
import socketserver
import threading

from bench.processes import free_port


class _Pipe(socketserver.BaseRequestHandler):
    def handle(self):
        upstream = socket.create_connection(("127.0.0.1", self.server.target_port), timeout=30)
        with upstream, selectors.DefaultSelector() as selector:
            selector.register(self.request, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, self.request)
            while True:
                for key, _ in selector.select(timeout=60):
                    data = key.fileobj.recv(65536)
                    if not data:
                        return
                    key.data.sendall(data)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class LateDoor:
    """Nothing listens on ``port`` (connections are refused) until ``open()``, which takes effect at once
    and forwards every connection to ``target_port``: a server that comes up late, without its start-up time."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = free_port()
        self.server: _Server | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def open(self) -> None:
        self.server = _Server(("127.0.0.1", self.port), _Pipe)
        self.server.target_port = self.target_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
