"""A hung endpoint for the tests of timeouts and probes."""

import socket


class SilentServer:
    """A TCP listener that accepts connections and never answers: a hung endpoint."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.sock.settimeout(0.05)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def drain(self) -> int:
        """Accept what is waiting; returns how many connections arrived so far."""
        while True:
            try:
                connection, _ = self.sock.accept()
            except (TimeoutError, BlockingIOError, OSError):
                return len(self.accepted)
            self.accepted.append(connection)

    def close(self) -> None:
        for connection in self.accepted:
            connection.close()
        self.sock.close()
