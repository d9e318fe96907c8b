"""The file descriptors a process may open: raised as far as it may go, and what a service
can spend of them on the connections it takes.

Standard library only, like http1.py: the supervisor raises its limit before it forks (so
every service and nats-server inherits it), each service again as it starts (one started
some other way), and the CLI's load generators, which open many connections.
"""

from __future__ import annotations

import resource

from msshop.contracts.config import ConnectionLimits


def raise_fd_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit, the most an unprivileged
    process may take; the (soft, hard) limits now. Where the hard limit is unlimited
    (macOS) the kernel still caps the soft one: a refusal leaves the limit as it was."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, hard
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def connection_cap(limits: ConnectionLimits, fd_limit: int) -> int:
    """How many connections a service takes: the setting, but well below the descriptors
    it may open, which it also needs for its files, its calls to other services and the
    bus. Past its limit libuv accepts each new connection and closes it at once: everyone
    is refused, and the service cannot say why."""
    if fd_limit == resource.RLIM_INFINITY or fd_limit <= 0:
        return limits.max_connections
    reserve = max(48, fd_limit // 4)
    return max(8, min(limits.max_connections, fd_limit - reserve))
