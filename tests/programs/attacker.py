"""A query service that tries, at start, every door to another service's database (users.db)
and to the rest of the sandbox, then serves GET /health so that it runs like any program of
your own. Standard library only; what each door gave is printed (its log) and written to
report.json in its own directory (the one place it may write), for the test to read.

Run by tests/e2e/test_kernel_isolation.py as `msshop up --service query='python3 ...'`."""

from __future__ import annotations

import ctypes
import errno
import http.server
import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

DATA = Path(os.environ["MSSHOP_DATA_DIR"])
SANDBOX = DATA.parent.parent
THEIRS = DATA.parent / "users" / "users.db"


def by_sqlite() -> object:
    return sqlite3.connect(THEIRS).execute("SELECT count(*) FROM users").fetchone()


def by_attach() -> object:  # set_authorizer or not: there is no guard here at all
    conn = sqlite3.connect(":memory:")
    conn.execute("ATTACH DATABASE ? AS theirs", (str(THEIRS),))
    return conn.execute("SELECT count(*) FROM theirs.users").fetchone()


def by_open_and_deserialize() -> object:
    conn = sqlite3.connect(":memory:")
    conn.deserialize(THEIRS.read_bytes())
    return conn.execute("SELECT count(*) FROM users").fetchone()


def by_ctypes() -> object:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.open(bytes(THEIRS), os.O_RDONLY)
    if fd < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number))
    return os.read(fd, 16)


def by_child() -> object:
    done = subprocess.run(["cat", str(THEIRS)], capture_output=True, check=False)
    if done.returncode:
        raise OSError(done.stderr.decode().strip())
    return len(done.stdout)


def by_symlink() -> object:
    alias = DATA / "alias.db"
    alias.unlink(missing_ok=True)
    alias.symlink_to(THEIRS)
    return sqlite3.connect(alias).execute("SELECT count(*) FROM users").fetchone()


def by_hardlink() -> object:
    alias = DATA / "hard.db"
    alias.unlink(missing_ok=True)
    os.link(THEIRS, alias)
    return alias.read_bytes()[:16]


def by_another_process() -> object:  # /proc/<pid>/fd of the users service: its open file
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(
                    b"msshop: users"):
                for fd in (entry / "fd").iterdir():
                    if fd.readlink() == THEIRS:
                        return fd.read_bytes()[:16]
                return "its file is not open"
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                continue
            raise
    return "no users process"


def signal_another() -> object:  # is the users service there? (signal 0: only asks)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(
                b"msshop: users"):
            os.kill(int(entry.name), 0)
            return "it could signal users"
    return "no users process"


def write_beside() -> object:  # in data/, beside the services' directories
    return (SANDBOX / "data" / "planted").write_text("x")


def write_in_the_sandbox() -> object:
    return (SANDBOX / "planted").write_text("x")


def write_where_it_runs() -> object:  # the directory msshop up ran in (it holds the sandbox)
    return Path("planted").write_text("x")


def read_the_state() -> object:  # the owner's token is in it
    return (SANDBOX / "state.json").read_text()[:16]


def own_database() -> object:  # its own directory works, temporary files and all
    conn = sqlite3.connect(DATA / "mine.db")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    conn.executemany("INSERT INTO t VALUES (?)", ((os.urandom(64),) for _ in range(20000)))
    conn.commit()
    conn.execute("PRAGMA cache_size = -64")  # a sort bigger than its cache: a temporary file
    return conn.execute("SELECT count(*) FROM (SELECT x FROM t ORDER BY x)").fetchone()


DOORS: dict[str, Callable[[], object]] = {
    "sqlite": by_sqlite, "attach": by_attach, "open": by_open_and_deserialize,
    "ctypes": by_ctypes, "child": by_child, "symlink": by_symlink, "hardlink": by_hardlink,
    "another process": by_another_process, "signal": signal_another,
    "write beside": write_beside, "write in the sandbox": write_in_the_sandbox,
    "write where it runs": write_where_it_runs, "read the state": read_the_state,
    "own database": own_database}


def main() -> None:
    report = {}
    for name, door in DOORS.items():
        try:
            report[name] = f"allowed: {door()!r}"
        except Exception as exc:
            report[name] = f"{type(exc).__name__}: {exc}"
        print(f"door {name}: {report[name]}", flush=True)
    tmp = DATA / "report.json.tmp"
    tmp.write_text(json.dumps(report))
    tmp.replace(DATA / "report.json")

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"service": "query", "status": "ok", "pid": os.getpid(),
                               "ready_at": None, "chaos": None, "db": str(DATA),
                               "rows": {}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(0))
    server = http.server.HTTPServer((os.environ["MSSHOP_HOST"],
                                     int(os.environ["MSSHOP_PORT"])), Health)
    server.serve_forever()


if __name__ == "__main__":
    main()
