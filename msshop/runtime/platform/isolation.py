"""The isolation guard: in a service's process, SQLite may open the service's own file and
no other, by any road (connect, ATTACH, VACUUM INTO, an extension).

Installed first thing in a service's process (runner.serve); the service's Database puts
the guard's authorizer on its connections (guard_connection).
"""

from __future__ import annotations

import _sqlite3
import functools
import logging
import os
import re
import sqlite3
import sys
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

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
# Not shut, because an audit hook cannot see it: `set_authorizer` (any form: None, or one's own
# authorizer) replaces the guard on that connection; a factory's own __init__ can use its
# connection before connect() returns; another file's bytes read without sqlite3 (open(), a
# subprocess, ctypes) and handed to Connection.deserialize(); a connection opened before the
# guard (serve() installs it first). Those take deliberate code, and an operating-system boundary
# (a user or a Landlock ruleset per service) to shut.

Reporter = Callable[[str], None]
Authorizer = Callable[[int, str | None, str | None, str | None, str | None], int]

_ATTACH = sqlite3.SQLITE_ATTACH
_OK = sqlite3.SQLITE_OK
_DENY = sqlite3.SQLITE_DENY
_SET_AUTHORIZER = sqlite3.Connection.set_authorizer  # the C method, whatever a factory overrides
_installed: list[str] = []


def trespass(other: str) -> tuple[str, str]:
    """Try to open another service's file, as a bug or an attacker in this service would:
    (the path tried, the guard's refusal). Only where the guard is installed (a service's
    own process); if the file were opened, it is closed at once and RuntimeError says so."""
    if not _installed:
        raise RuntimeError("no isolation guard in this process: nothing to show")
    path = str(Path(_installed[0]).parent / f"{other}.db")
    try:
        sqlite3.connect(path).close()
    except IsolationViolation as exc:
        return path, str(exc)
    raise RuntimeError(f"the isolation guard let this process open {path}")


def install_isolation_guard(service: str, own_file: Path, report: Reporter | None = None) -> None:
    """From now on this process may open only `own_file` (and in-memory databases), by any
    connection, by connect, ATTACH or VACUUM INTO, and may load no SQLite extension.

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
