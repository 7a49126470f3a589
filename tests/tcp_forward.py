"""A plain TCP forwarder for the partition tests: `forward(listen, upstream)` accepts on `listen`
and pipes each connection to `upstream`, on threads of the calling process. Like a database
server told to (the product asks PostgreSQL for the same), it notices a client that went silent
(keepalives, TCP_USER_TIMEOUT: about 10 s) and then closes both ends, so the server's session and
its locks end too instead of waiting out TCP's retransmissions."""
from __future__ import annotations

import socket
import threading


class Forwarder:
    def __init__(self, server: socket.socket):
        self.server, self.open = server, set()

    def close(self) -> None:
        """Stop accepting and end every connection."""
        for s in [self.server, *self.open]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def _watch(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 10000)


def forward(listen: tuple[str, int], upstream: tuple[str, int]) -> Forwarder:
    """Start forwarding; close the Forwarder to stop."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(listen)
    server.listen(128)
    forwarder = Forwarder(server)

    def pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
                forwarder.open.discard(s)

    def accept() -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            _watch(client)
            try:
                far = socket.create_connection(upstream, timeout=10)
                far.settimeout(None)
            except OSError:
                client.close()
                continue
            forwarder.open.update((client, far))
            threading.Thread(target=pipe, args=(client, far), daemon=True).start()
            threading.Thread(target=pipe, args=(far, client), daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    return forwarder
