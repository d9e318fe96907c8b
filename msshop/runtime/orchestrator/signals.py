"""Signals to a supervised process's whole group. Its own module, light (os alone): the
CLI's `kill` uses it without importing what the supervisor runs on."""

from __future__ import annotations

import os


def signal_group(pid: int, signum: int) -> None:
    """Signal a service's process group: each service leads one of its own, so a program
    of your own's children (a shell's, node's workers) are killed, frozen and thawed with
    it, as a crash or a pause of the whole program would. A process that leads no group
    (not yet in its own, just forked) is signalled alone; one gone meanwhile is not an
    error (the supervisor reports it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass
