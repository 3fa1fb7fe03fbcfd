"""Binding the simulator's listening socket, with a sentence instead of an errno when it fails."""

from __future__ import annotations

import errno
import socket

_CLI_PORT_FIX = "stop it or pass --port N (0 picks a free port)"
# The command line's exit status when it cannot listen (argparse uses 2 for usage errors too).
CLI_LISTEN_FAILED_STATUS = 2

__all__ = ["CLI_LISTEN_FAILED_STATUS", "PortInUseError", "bind_socket", "port_in_use_message"]


class PortInUseError(OSError):
    """The simulator's port is already taken by another process."""

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def port_in_use_message(host: str, port: int, fix: str = _CLI_PORT_FIX) -> str:
    """The one sentence shown when ``host:port`` is taken.

    Args:
        host: Interface the simulator tried to listen on.
        port: Port it tried to listen on.
        fix: What the user can do about it, phrased for the caller (command line or Python).

    Returns:
        A sentence naming the port, the likely culprit and the fix.

    Examples:
        >>> port_in_use_message("127.0.0.1", 8765)  # doctest: +NORMALIZE_WHITESPACE
        'port 8765 on 127.0.0.1 is already in use (another simulator or `make ui` may be
        running): stop it or pass --port N (0 picks a free port)'
    """
    return (
        f"port {port} on {host} is already in use "
        f"(another simulator or `make ui` may be running): {fix}"
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket; ``port=0`` picks a free port.

    Args:
        host: Interface to bind, e.g. ``127.0.0.1``.
        port: Port number, or 0 for any free port.

    Returns:
        The bound, listening socket, ready to hand to uvicorn.

    Raises:
        PortInUseError: If another process already listens on ``host:port``.
        OSError: If the socket cannot be bound for another reason (unknown host, no
            permission).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only skips TIME_WAIT leftovers; Linux still refuses a live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(errno.EADDRINUSE, port_in_use_message(host, port)) from exc
        raise
    return sock
