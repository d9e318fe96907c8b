"""The sandbox's ports, bound by the supervisor before anything starts.

Binding first means a port taken by another program is found (and named) before anything
starts, and `base_port = 0` gets a free port with no race. Each process's listening port
is handed to it at start; the ports a process binds itself (a nats-server's monitoring
and cluster ports) are held until it starts: a port let go at once could be taken
meanwhile, e.g. as another process's outgoing end.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable

from msshop.contracts.errors import SandboxError

Binder = Callable[[str, int, str], socket.socket]  # (host, port, what it is for) -> bound


class PortTaken(SandboxError):
    """A port another program holds; its words fit `up` (the sandbox may pick others)."""

    def __init__(self, port: int, service: str) -> None:
        super().__init__(
            f"port {port} for {service} is taken by another program; free it, or pick "
            "other ports with --base-port N or MSSHOP_BASE_PORT=N (0 picks free ones)")
        self.port, self.service = port, service

    def in_running_sandbox(self) -> SandboxError:
        """The same, said on a start or restart: a running sandbox keeps its ports (the
        URLs others were given name them), so the way out is to free this one."""
        return SandboxError(
            f"port {self.port} for {self.service} is taken by another program; free it and "
            "run the command again (a running sandbox keeps its ports; msshop down, then up, "
            "picks them again)")


def bind(host: str, port: int, service: str) -> socket.socket:
    """Bind (not yet listen) the service's port; a taken port is a clear SandboxError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortTaken(port, service) from None
        raise SandboxError(f"cannot bind {host}:{port} for {service}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def loopback(host: str) -> str:
    """This machine's own address in the family of `host`."""
    return "::1" if ":" in host else "127.0.0.1"


def url_host(host: str) -> str:
    """The host as a URL writes it (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


class PortBook:
    """The ports bound and not yet handed over, by the process they are for."""

    def __init__(self, host: str, bind: Binder = bind) -> None:
        self.host = host
        self.bind = bind
        self.listening: dict[str, socket.socket] = {}  # each process's own, until it starts
        self.held: dict[str, list[socket.socket]] = {}  # ports a process binds itself
        self.hosts: dict[str, str] = {}  # a process that listens elsewhere than `host`

    def listen(self, name: str, port: int, host: str | None = None) -> int:
        """Bind process `name`'s listening port (0 picks one) on `host` (None: the
        sandbox's); the port bound."""
        if host is not None:
            self.hosts[name] = host
        sock = self.bind(self.hosts.get(name, self.host), port, name)
        self.listening[name] = sock
        number: int = sock.getsockname()[1]
        return number

    def hold(self, name: str, port: int, what: str) -> int:
        """Bind a port process `name` will bind itself (0 picks one), held until it starts."""
        sock = self.bind(self.host, port, f"{name} ({what})")
        self.held.setdefault(name, []).append(sock)
        number: int = sock.getsockname()[1]
        return number

    def take(self, name: str, port: int, own_ports: Iterable[tuple[int, str]]
             ) -> socket.socket:
        """The listening socket to start `name` with, and its own ports still held: bound
        at prepare, or bound again now (a restart), so that a port taken meanwhile is
        named before the process starts (a port bound again is one the running sandbox
        gave out: taken, it is said so)."""
        try:
            sock = (self.listening.pop(name, None)
                    or self.bind(self.hosts.get(name, self.host), port, name))
        except PortTaken as taken:
            raise taken.in_running_sandbox() from None
        if name not in self.held:
            try:
                for number, what in own_ports:
                    self.hold(name, number, what)
            except BaseException as exc:
                sock.close()
                self.release(name)
                if isinstance(exc, PortTaken):
                    raise exc.in_running_sandbox() from None
                raise
        return sock

    def release(self, name: str) -> None:
        """Let go of the ports `name` binds itself: it is about to bind them."""
        for sock in self.held.pop(name, []):
            sock.close()

    def drop(self, name: str) -> None:
        """Let go of every port bound for `name` (a part whose reserving failed midway)."""
        sock = self.listening.pop(name, None)
        if sock is not None:
            sock.close()
        self.hosts.pop(name, None)
        self.release(name)

    def fds(self) -> list[int]:
        """Every descriptor still held: a child must not keep another's ports."""
        return [*(s.fileno() for s in self.listening.values()),
                *(s.fileno() for held in self.held.values() for s in held)]

    def close(self) -> None:
        for sock in self.listening.values():
            sock.close()
        self.listening.clear()
        for name in list(self.held):
            self.release(name)
