"""The isolation rule held by the kernel: a Landlock ruleset (Linux 5.13+) that lets a
service's process write only its own directory and read only what it runs on.

Three system calls, through ctypes (no binding: the one on PyPI is a pre-release, and this
is all of it): landlock_create_ruleset (asked first for the ABI's version), add_rule for
each path (a rule covers everything beneath it), restrict_self (after PR_SET_NO_NEW_PRIVS).
From then on the kernel refuses this process, and every process it starts (exec keeps the
domain), any file outside its rules, whatever the code: sqlite3, open(), ctypes, a child,
a symlink (the kernel checks where it leads) or a hard link (linking a file in from a
directory it may not use is refused, EXDEV).

What Landlock cannot take away: stat, chdir and some metadata calls, and files opened
before restrict_self (a service's log is one, on purpose). Rulesets stack and only narrow;
the supervisor never restricts itself, so each start (a new fork) gets one fresh domain.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import stat
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# The system calls' numbers, the same on both (the generic table): other machines are refused
# quietly (abi() is 0), as a kernel without Landlock is.
SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights (linux/landlock.h), with the ABI that brought each.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link or rename into another directory
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
RIGHTS_OF_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1}
LATEST = (1 << 16) - 1  # ABI 5 and later

READ = READ_FILE | READ_DIR | EXECUTE  # what a process runs on: its program, libraries, system
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # a rule on a file

# What any process needs to run, read-only: the system, and what Python and Node read.
SYSTEM = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt", "/proc", "/sys")
DEVICES = {"/dev/null": READ_FILE | WRITE_FILE, "/dev/zero": READ_FILE,
           "/dev/random": READ_FILE, "/dev/urandom": READ_FILE}


class LandlockError(OSError):
    """A ruleset that could not be made or applied: the start fails with these words."""


# Scopes (ABI 6): a process may not signal, nor connect to an abstract unix socket of, a
# process outside its domain: a service cannot kill or stop another (the supervisor still
# can: the scope binds the process restricted, not those outside).
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1
SCOPES_FROM_ABI = 6


class _RulesetAttr(ctypes.Structure):
    # the network rights (ABI 4) are not handled: services talk over 127.0.0.1. A kernel of
    # an older ABI takes the whole struct as long as what it does not know is zero.
    _fields_ = (("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64))


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # __attribute__((packed)) in linux/landlock.h
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def abi() -> int:
    """The Landlock ABI this kernel speaks; 0 where there is none (not Linux, another
    machine, a kernel built without it or booted with it off)."""
    numbers = SYSCALLS.get(platform.machine())
    if not sys.platform.startswith("linux") or numbers is None:
        return 0
    version = _libc().syscall(numbers[0], None, ctypes.c_size_t(0),
                              ctypes.c_uint32(CREATE_RULESET_VERSION))
    return max(int(version), 0)


def handled(version: int) -> int:
    """Every filesystem right this ABI knows: the ruleset handles them all, so each one is
    refused unless a rule grants it."""
    return RIGHTS_OF_ABI.get(version, LATEST)


def kernel_rule(enabled: bool) -> bool:
    """Whether each service starts under its ruleset: asked for, and the kernel has it."""
    return enabled and abi() >= 1


def kernel_rule_note(enabled: bool) -> str | None:
    """What `up` says, once, when the kernel does not hold the isolation rule."""
    if not enabled:
        return ("the kernel's isolation rule is turned off ([isolation] kernel = false or "
                "MSSHOP_KERNEL_ISOLATION=0): the rule is checked only inside msshop's Python "
                "services")
    if abi() < 1:
        return ("no Landlock on this system (Linux 5.13 or later has it): the isolation rule "
                "is checked only inside msshop's Python services")
    return None


@dataclass(frozen=True)
class Confinement:
    """What one service's process may touch: everything beneath `own` (its directory), and
    read-only what it runs on. Nothing that holds `sandbox` is granted whole: the sandbox is
    closed to it but for its own directory (and `readable` files in it, e.g. a config).

    Its `rules` are worked out when it is made, in the supervisor (the part every service
    shares once per sandbox): the child only opens each path and makes the system calls."""

    own: Path
    sandbox: Path
    readable: tuple[Path, ...] = ()  # its program, its arguments that are files, a config
    rules: tuple[tuple[str, int], ...] = field(init=False)  # (path, rights), own first

    def __post_init__(self) -> None:
        sandbox = os.path.realpath(self.sandbox)
        rules: dict[str, int] = {os.path.realpath(self.own): handled(abi())}
        wanted: list[str] = []
        for given in map(os.path.realpath, self.readable):
            if not _holds(sandbox, given):
                wanted.append(given)
            elif Path(given).is_file():  # in the sandbox (a config): that file alone
                rules.setdefault(given, READ_FILE)
        for path in _outermost([*_shared(sandbox), *_granted(wanted, sandbox)]):
            rules.setdefault(path, READ)
        for path, rights in DEVICES.items():
            if Path(path).exists():
                rules.setdefault(path, rights)
        object.__setattr__(self, "rules", tuple(rules.items()))

    def apply(self) -> int:
        """Restrict this process (and whatever it execs or starts) to its rules, for the
        rest of its life; the number of rules. LandlockError names what failed."""
        return restrict(self.rules)


@functools.cache
def _shared(sandbox: str) -> tuple[str, ...]:
    """What every service of the sandbox reads: the system, and this Python."""
    return tuple(_granted([*SYSTEM, *runtime_paths()], sandbox))


def program_files(argv: Sequence[str], cwd: str | None) -> tuple[Path, ...]:
    """What a program of your own reads to run, besides the system: its executable and
    every argument that is an existing file (`node d.js`: d.js), each with its directory
    (a script's own modules)."""
    found: list[Path] = []
    for arg in argv:
        path = Path(cwd or Path.cwd(), arg)
        if arg and path.is_file():
            found += [path, path.parent]
    if argv and (manager := version_manager(Path(cwd or Path.cwd(), argv[0]))):
        found.append(manager)
    return tuple(found)


def version_manager(program: Path) -> Path | None:
    """The root of the version manager whose shim `program` is (pyenv, rbenv, nodenv,
    asdf: <root>/shims/<name>; volta: <root>/bin/<name>), or None. A shim runs the
    manager's code and the runtime it chose, all beneath that root: without it the
    program cannot start (`python3` on PATH is often pyenv's)."""
    folder = program.parent
    if folder.name == "shims" or (folder.name == "bin" and folder.parent.name == ".volta"):
        return folder.parent
    return None


@functools.cache
def runtime_paths() -> tuple[str, ...]:
    """What this Python reads to run: its prefixes, every sys.path entry that exists (an
    editable install's source among them), and msshop's own package."""
    import msshop

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix,
             *(entry or str(Path.cwd()) for entry in sys.path),
             str(Path(msshop.__file__).parent)]
    return tuple(dict.fromkeys(os.path.realpath(p) for p in paths if Path(p).exists()))


def _granted(paths: Iterable[str], sandbox: str) -> list[str]:
    """Each path, real; or where one holds the sandbox (`up` run in the directory that has
    ./sandbox, a program beside it), its children instead, recursively, all but the branch
    that leads to the sandbox."""
    granted: list[str] = []
    seen: set[str] = set()

    def grant(path: str) -> None:
        real = os.path.realpath(path)
        if real in seen or not Path(real).exists():
            return
        seen.add(real)
        if real == sandbox:
            return
        if not _holds(real, sandbox):
            granted.append(real)
            return
        with contextlib.suppress(OSError):
            for entry in os.scandir(real):
                grant(entry.path)

    for path in paths:
        grant(path)
    return granted


def _outermost(paths: list[str]) -> list[str]:
    """The paths less those beneath another of them (a rule covers what is beneath it)."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not kept or not _holds(kept[-1], path):
            kept.append(path)
    return kept


def _holds(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def restrict(rules: Sequence[tuple[str, int]]) -> int:
    """One ruleset handling every right of this kernel's ABI, a rule per (path, rights)
    (masked to the ABI; to a file's rights on a file), then no new privileges and
    restrict_self. The number of rules added."""
    version = abi()
    if version < 1:
        raise LandlockError(0, "this kernel has no Landlock")
    create, add, restrict_self = SYSCALLS[platform.machine()]
    libc = _libc()
    known = handled(version)
    scoped = (SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL) if version >= SCOPES_FROM_ABI else 0
    attr = _RulesetAttr(known, 0, scoped)
    ruleset = libc.syscall(create, ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
                           ctypes.c_uint32(0))
    if ruleset < 0:
        raise _error("cannot make a Landlock ruleset")
    try:
        for path, rights in rules:
            _add(libc, add, ruleset, path, rights & known)
        if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            raise _error("cannot set no_new_privs")
        if libc.syscall(restrict_self, ruleset, ctypes.c_uint32(0)) != 0:
            raise _error("cannot apply the Landlock ruleset")
    finally:
        os.close(ruleset)
    return len(rules)


def _add(libc: ctypes.CDLL, number: int, ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise LandlockError(exc.errno, f"cannot name {path} in a Landlock rule: "
                                       f"{exc.strerror}") from None
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS  # beneath a file is only the file
        attr = _PathBeneathAttr(rights, fd)
        if libc.syscall(number, ruleset, RULE_PATH_BENEATH, ctypes.byref(attr),
                        ctypes.c_uint32(0)) != 0:
            raise _error(f"cannot add a Landlock rule for {path}")
    finally:
        os.close(fd)


def _error(what: str) -> LandlockError:
    number = ctypes.get_errno()
    return LandlockError(number, f"{what}: {os.strerror(number)}")
