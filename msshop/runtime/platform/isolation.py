"""The isolation guard: in a service's process, SQLite may open the service's own file and
no other, by any road (connect, ATTACH, VACUUM INTO, an extension).

Installed first thing in a service's process (runner.serve); the service's Database puts
the guard's authorizer on its connections (guard_connection).
"""

from __future__ import annotations

import _sqlite3
import ctypes
import errno
import functools
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from msshop.runtime.platform.landlock import Confinement

log = logging.getLogger("msshop.isolation")


class IsolationViolation(PermissionError):
    """A service tried to reach a database file that is not its own."""


# --- isolation guard -------------------------------------------------------------------------
#
# In a service's process (install_isolation_guard) every road from the sqlite3 module to a file:
#
# - Opening a connection. The audit hook sees `sqlite3.connect` whatever makes the connection
#   (connect(), a factory, sqlite3.Connection(...)). The name is read the way SQLite reads it: a
#   `file:` URI with SQLite's own grammar (_uri, a copy of sqlite3ParseUri: %HH decoded, %00
#   ends a part, the last `mode=`/`vfs=` wins), a path through its symlinks. Anything on disk
#   but the own file is refused before SQLite touches it. Then the new connection is asked what
#   it opened (pragma_database_list): the ground truth, however the name was spelled.
# - ATTACH, and VACUUM INTO (SQLite authorizes its target as an ATTACH), on EVERY connection:
#   each gets the guard's authorizer before `sqlite3.connect` returns it. The audit event
#   `sqlite3.connect/handle` cannot set it (on 3.11 it comes before the connection is usable:
#   "Base Connection.__init__ not called"), so `sqlite3.connect` is wrapped to set it, and a
#   connection made any other way (sqlite3.Connection(...) directly, a `connect` bound before
#   the guard) is refused at `sqlite3.connect/handle`.
# - Loading an extension (native code: it could open anything) is refused.
#
# - Reading another service's files without sqlite3 (with `closed`, the sandbox's data/):
#   Python's open(), os.open and io.open_code of a path there outside the own directory
#   (through any symlink: the real path is checked), and os.link of one, are refused. So
#   `open()` + `Connection.deserialize` is shut even where the kernel holds no rule.
#
# Not shut, because an audit hook cannot see it: `set_authorizer` (any form: None, or one's own
# authorizer) replaces the guard on that connection; a factory's own __init__ can use its
# connection before connect() returns; libc called through ctypes, or a child process, reading
# another file; a connection opened before the guard (serve() installs it first). Those take
# deliberate code, and the kernel's rule (confine, below: a Landlock ruleset per service) shuts
# each of them: the file cannot be opened by this process at all.

# --- the kernel's rule ------------------------------------------------------------------------
#
# Where the kernel has Landlock, the service's process is first put under its ruleset
# (landlock.py: its own directory read-write, what it runs on read-only), which shuts every
# door above for any code, sqlite3 or not. The guard stays: it names the offending code path
# in the service's log, where the kernel only says EACCES.

_held_by_kernel: list[int] = []  # the rules applied, once (a fork of the supervisor: none)


def confine(confinement: Confinement | None) -> None:
    """Put this process under its Landlock ruleset (None: the kernel does not hold the rule
    here). Files open before it (the service's log on fds 1 and 2) stay usable: Landlock
    checks a file when it is opened. LandlockError if it cannot be applied."""
    if confinement is None:
        return
    _held_by_kernel.append(confinement.apply())
    # SQLite writes its temporary files (big sorts, statement journals, temp tables) in the
    # first of /var/tmp, /usr/tmp, /tmp it can access(), which Landlock does not answer:
    # it would pick one the ruleset refuses. The own directory, then (a process-wide
    # setting, made once through a connection that touches no file).
    with closing(sqlite3.connect(":memory:")) as conn:
        conn.execute(f"PRAGMA temp_store_directory = '{_quoted(confinement.own)}'")


def held_by() -> str:
    """Who holds the isolation rule in this process: "kernel" (a Landlock ruleset) or
    "process" (the guard below, alone)."""
    return "kernel" if _held_by_kernel else "process"


def _quoted(path: Path) -> str:
    return os.fspath(path).replace("'", "''")


Reporter = Callable[[str], None]
Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]

_ATTACH = sqlite3.SQLITE_ATTACH
_OK = sqlite3.SQLITE_OK
_DENY = sqlite3.SQLITE_DENY
_SET_AUTHORIZER = sqlite3.Connection.set_authorizer  # the C method, whatever a factory overrides
_installed: list[str] = []


def _by_sqlite(path: str) -> object:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _by_open(path: str) -> object:  # the bytes, then a database made of them in memory
    with Path(path).open("rb") as file, closing(sqlite3.connect(":memory:")) as conn:
        conn.deserialize(file.read())
        return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()


def _by_ctypes(path: str) -> object:  # libc's open(2), which no audit hook sees
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(os.fsencode(path), os.O_RDONLY)
    if fd < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    os.close(fd)
    return fd


def _by_child(path: str) -> object:  # another program, in a child process
    done = subprocess.run(["cat", path], capture_output=True, check=False)
    if done.returncode:
        raise OSError(errno.EACCES, done.stderr.decode(errors="replace").strip())
    return len(done.stdout)


def _by_symlink(path: str) -> object:  # a name in its own directory for their file
    alias = Path(_installed[0]).parent / f".trespass-{os.getpid()}"
    alias.unlink(missing_ok=True)
    alias.symlink_to(path)
    try:
        return alias.read_bytes()[:16]
    finally:
        alias.unlink(missing_ok=True)


def _by_hardlink(path: str) -> object:  # their file linked into its own directory
    alias = Path(_installed[0]).parent / f".trespass-{os.getpid()}"
    alias.unlink(missing_ok=True)
    os.link(path, alias)
    try:
        return alias.read_bytes()[:16]
    finally:
        alias.unlink(missing_ok=True)


#: how a service may try to read another's database (POST /chaos/trespass's `how`)
DOORS: dict[str, Callable[[str], object]] = {
    "sqlite": _by_sqlite, "open": _by_open, "ctypes": _by_ctypes, "child": _by_child,
    "symlink": _by_symlink, "hardlink": _by_hardlink}


def trespass(other: str, how: str = "sqlite") -> tuple[str, str, str]:
    """Try to read another service's database by `how` (DOORS), as a bug or an attacker in
    this service would: (the path tried, who refused: "guard" or "kernel", their words).
    Only where the guard is installed (a service's own process); if the file were read,
    RuntimeError says so."""
    if not _installed:
        raise RuntimeError("no isolation guard in this process: nothing to show")
    path = str(Path(_installed[0]).parent.parent / other / f"{other}.db")  # data/<other>/
    try:
        DOORS[how](path)
    except IsolationViolation as exc:
        return path, "guard", str(exc)
    except (OSError, sqlite3.Error) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        by = "kernel" if held_by() == "kernel" else "the system"
        return path, by, (f"the kernel's isolation rule (Landlock) refused {how} of {path}: "
                          f"{why}" if by == "kernel" else f"{how} of {path} failed: {why}")
    raise RuntimeError(f"the isolation rule let this process read {path} (by {how})")


def install_isolation_guard(service: str, own_file: Path, report: Reporter | None = None,
                            *, closed: Path | None = None) -> None:
    """From now on this process may open only `own_file` (and in-memory databases), by any
    connection, by connect, ATTACH or VACUUM INTO, and may load no SQLite extension. With
    `closed` (the sandbox's data/), Python's open() of a file there outside the own file's
    directory is refused too: `open()` + `Connection.deserialize` reads another file's
    bytes without sqlite3 (ctypes and a child process still can: the kernel's rule shuts
    those, landlock.py).

    Audit hooks cannot be removed, so call this only in a service's own process, before it
    opens any connection.
    """
    own = _real(own_file)
    if _installed:
        raise RuntimeError(f"the isolation guard is already installed here (for {_installed[0]})")
    _installed.append(own)
    say = report or log.error
    rules = _uri_rules()  # before connect is replaced
    guard = _attach_guard(service, own, rules, say)
    opening = _Opening()

    def refuse(what: str) -> NoReturn:
        message = _message(service, own, what)
        say(message)
        raise IsolationViolation(message)

    original = sqlite3.connect

    @functools.wraps(original)
    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        made = opening.made
        first = len(made)
        opening.depth += 1
        try:
            conn: sqlite3.Connection = original(*args, **kwargs)
        finally:
            opening.depth -= 1
            fresh, made[first:] = made[first:], []
            # Every connection made in this call (a factory may make more than it returns).
            refused = [file for each, memdb in fresh if (file := secure(each, memdb))]
            if refused:
                refuse(f"refused to open {refused[0]}")
        return conn

    def secure(conn: sqlite3.Connection, memdb: str | None) -> str | None:
        """The guard's authorizer, then what SQLite really opened, however it was named: a file
        not its own closes the connection."""
        try:
            _SET_AUTHORIZER(conn, guard)
        except sqlite3.ProgrammingError:
            return None  # its __init__ failed after opening: it cannot be used
        for file in _opened_files(conn):
            if file != memdb and _real(file) != own:
                sqlite3.Connection.close(conn)
                return file
        return None

    for module in (sqlite3, sqlite3.dbapi2, _sqlite3):
        vars(module)["connect"] = connect

    def opens(args: tuple[Any, ...]) -> None:  # sqlite3.connect: before SQLite opens anything
        opening.memdb = None
        try:
            name = os.fsencode(args[0])
        except TypeError:
            return  # not a name at all: sqlite3 refuses it itself
        (reading,) = _readings(name, rules, uri=True)  # uri=False: the check after opening
        opening.memdb = reading.memdb
        if reading.file is not None and reading.file != own:
            refuse(f"refused to open {reading.file}")

    def opened(args: tuple[Any, ...]) -> None:  # sqlite3.connect/handle: not usable yet
        if not opening.depth:
            refuse(f"refused a connection made without sqlite3.connect "
                   f"({type(args[0]).__qualname__}): it would not carry the ATTACH check")
        opening.made.append((args[0], opening.memdb))

    def enables_extensions(args: tuple[Any, ...]) -> None:
        if args[1]:
            refuse("refused to enable SQLite extensions (native code opens any file)")

    def loads_extension(args: tuple[Any, ...]) -> None:
        refuse(f"refused to load the SQLite extension {args[1]}")

    handlers: dict[str, Callable[[tuple[Any, ...]], None]] = {
        "sqlite3.connect": opens, "sqlite3.connect/handle": opened,
        "sqlite3.enable_load_extension": enables_extensions,
        "sqlite3.load_extension": loads_extension,
    }
    if closed is not None:
        fence, home = _real(closed) + os.sep, str(Path(own).parent) + os.sep

        def theirs(name: object) -> str | None:
            """The real path, if it is another service's data."""
            if isinstance(name, int):
                return None  # a descriptor already open
            try:
                path = _real(os.fsdecode(name))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return None
            return path if path.startswith(fence) and not path.startswith(home) else None

        def opens_a_file(args: tuple[Any, ...]) -> None:  # open(), os.open, io.open_code
            if path := theirs(args[0]):
                refuse(f"refused to open {path} (another service's data)")

        def links_a_file(args: tuple[Any, ...]) -> None:  # os.link: theirs, by a new name
            if path := theirs(args[0]):
                refuse(f"refused to link {path} (another service's data)")

        handlers["open"] = opens_a_file
        handlers["os.link"] = links_a_file

    def hook(event: str, args: tuple[Any, ...]) -> None:
        handler = handlers.get(event)
        if handler is not None:
            handler(args)

    sys.addaudithook(hook)


def guard_connection(service: str, conn: sqlite3.Connection, own_file: Path,
                     report: Reporter | None = None) -> None:
    """Refuse ATTACH DATABASE and VACUUM INTO of any file but the service's own on `conn`.

    The connection's authorizer becomes the guard alone, the one check on the hot path (in a
    guarded process every connection already has it).
    """
    _SET_AUTHORIZER(conn, _attach_guard(service, _real(own_file), _uri_rules(),
                                        report or log.error))


def _attach_guard(service: str, own: str, rules: _UriRules, report: Reporter) -> Authorizer:
    def refused(name: str | None) -> int:
        if name is None:  # a bound parameter or an expression: SQLite does not say which file
            target: str | None = "a file given as a parameter"
        else:  # the text SQLite will open, in SQLite's own encoding
            target = next((r.file for r in _readings(name.encode(), rules, uri=False)
                           if r.file is not None and r.file != own), None)
            if target is None:
                return _OK
        report(_message(service, own, f"refused to ATTACH {target}"))
        return _DENY

    def authorizer(action: int, arg1: str | None, arg2: str | None, db_name: str | None,
                   source: str | None) -> int:
        # Called for each action of every statement prepared: one comparison when not ATTACH.
        if action != _ATTACH:
            return _OK
        return refused(arg1)

    return authorizer


def _message(service: str, own: str, what: str) -> str:
    return f"isolation guard: service '{service}' may open only its own database {own}; {what}"


class _Opening(threading.local):
    """Per thread: how deep in sqlite3.connect, the connections made there (each with the memdb
    name its name parsed to), the memdb name just parsed."""

    def __init__(self) -> None:
        super().__init__()
        self.depth = 0
        self.made: list[tuple[sqlite3.Connection, str | None]] = []
        self.memdb: str | None = None


def _opened_files(conn: sqlite3.Connection) -> list[str]:
    """The files a connection has open, as SQLite reports them (a BLOB: no text_factory)."""
    cursor = sqlite3.Cursor(conn)  # not conn.cursor(): no factory's override, no row_factory
    try:
        rows = cursor.execute("SELECT CAST(file AS BLOB) FROM pragma_database_list").fetchall()
    finally:
        cursor.close()
    return [os.fsdecode(file) for (file,) in rows if file]


def _real(path: str | os.PathLike[str]) -> str:
    return os.path.realpath(os.fspath(path))


# --- names, as SQLite reads them -------------------------------------------------------------


@dataclass(frozen=True)
class _UriRules:
    """How this SQLite library reads a name (compile-time options)."""

    always: bool  # SQLITE_USE_URI: `file:...` is a URI even when the connection did not ask
    authority: bool  # SQLITE_ALLOW_URI_AUTHORITY: `file://host/path` is the path //host/path


@functools.cache
def _uri_rules() -> _UriRules:
    # USE_URI is listed when defined (#ifdef); nobody builds it defined as 0.
    with closing(sqlite3.connect(":memory:")) as conn:
        options = {row[0] for row in conn.execute("PRAGMA compile_options")}
    return _UriRules(always="USE_URI" in options, authority="ALLOW_URI_AUTHORITY" in options)


@dataclass(frozen=True)
class _Opens:
    """What a name opens: a file on disk (its real path), or nothing on disk (file is None:
    in memory, or a temporary database SQLite makes and deletes)."""

    file: str | None
    memdb: str | None = None  # vfs=memdb: in memory, but SQLite reports this name as its file


_NOTHING_ON_DISK = _Opens(None)
_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _readings(name: bytes, rules: _UriRules, *, uri: bool) -> tuple[_Opens, ...]:
    """What SQLite may open for `name`. `file:...` is a URI when the connection was opened with
    uri=True or the library always reads URIs; when that is unknown (uri=False) both readings
    count."""
    if not name.startswith(b"file:"):  # case-sensitive, as in SQLite
        return (_plain(name),)
    if uri or rules.always:
        return (_uri(name, rules),)
    return (_uri(name, rules), _plain(name))


def _plain(name: bytes) -> _Opens:
    if name in (b"", b":memory:"):
        return _NOTHING_ON_DISK
    return _Opens(_real(os.fsdecode(name)))


def _uri(name: bytes, rules: _UriRules) -> _Opens:
    """A `file:` URI, parsed as sqlite3ParseUri (SQLite's main.c) parses it."""
    start = 5
    if rules.authority:
        if name.startswith(b"///", 5):
            start = 8 if name.startswith(b"///", 7) else 7
        elif name.startswith(b"//localhost/", 5):
            start = 16
    elif name.startswith(b"//", 5):
        end = name.find(b"/", 7)
        end = len(name) if end < 0 else end
        if name[7:end] not in (b"", b"localhost"):
            return _Opens(os.fsdecode(name))  # SQLite refuses it: "invalid uri authority"
        start = end
    path, _, query = name[start:].split(b"#", 1)[0].partition(b"?")
    options: dict[bytes, bytes] = {}
    for option in query.split(b"&"):
        key, _, value = option.partition(b"=")
        key = _unescape(key)
        if key:  # SQLite skips an option with an empty name
            options[key] = _unescape(value)  # the last one wins, as in SQLite
    file = _unescape(path)
    if options.get(b"mode") == b"memory":
        return _NOTHING_ON_DISK
    if options.get(b"vfs") == b"memdb":
        return _Opens(None, memdb=os.fsdecode(file))
    return _plain(file)


def _unescape(part: bytes) -> bytes:
    """%HH decoded; %00 ends the part (SQLite skips the rest of it)."""
    return _ESCAPE.sub(lambda m: bytes((int(m[1], 16),)), part).split(b"\x00", 1)[0]
