"""A broker connection on a plain socket, for the clients that speak a protocol themselves (the MQTT
publisher, the NATS pull socket): their requests are written whole, so Nagle's delay is off."""

from __future__ import annotations

import socket

__all__ = ["open_socket"]


def open_socket(host: str, port: int, timeout: float, error: type[Exception]) -> socket.socket:
    """A TCP connection to ``host:port`` with ``TCP_NODELAY`` and ``timeout`` on every operation; a
    failure raises ``error("connecting to host:port: ...")`` (the client's retryable error)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise error(f"connecting to {host}:{port}: {exc}") from exc
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        sock.close()
        raise error(f"connecting to {host}:{port}: {exc}") from exc
    return sock
