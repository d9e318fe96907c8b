"""A sandbox made before issue 24 kept every database side by side (data/<service>.db); now
each service has a directory of its own (data/<service>/<service>.db), the one a Landlock
rule lets it write. `move_to_service_dirs` moves an old sandbox over, at `up` (under the
supervisor's lock, before anything opens a file) and before `msshop repair bus` writes.

Nothing is lost, whenever it stops: a service's files (the database with its -wal, -shm and
-journal: a WAL holds commits not yet in the file) are renamed into data/.<service>.moving/
and that directory is renamed to data/<service>/ in one step, so the database appears at
its new place whole or not at all. A move cut short is finished by the next call. Where
data/<service>/ is there already (a program of your own ran as that service), the files
go in one by one, the database last, and a name taken there is refused, never overwritten.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from msshop.contracts.errors import SandboxError
from msshop.contracts.topology import SERVICES, ServiceSpec

BESIDE = ("-wal", "-shm", "-journal")  # SQLite's files that go with a database


def move_to_service_dirs(root: Path) -> list[str]:
    """Move each database still at data/<service>.db into data/<service>/; the names of the
    services moved (none: the sandbox has the new layout already)."""
    moved = [spec.name for spec in SERVICES if _move(spec, root)]
    if moved:
        _sync(root / "data")
    return moved


def refuse_old_layout(root: Path, command: str) -> None:
    """For a command that writes nothing (`check`, `inspect`): a SandboxError naming the way
    over if a database still sits at the old place, instead of reading it as missing."""
    old = [spec.legacy_db_path(root) for spec in SERVICES
           if os.path.lexists(spec.legacy_db_path(root))
           or (root / "data" / f".{spec.name}.moving").is_dir()]
    if old:
        raise SandboxError(
            f"this sandbox keeps its databases side by side ({old[0].relative_to(root)}…), "
            f"the layout before each service had a directory of its own; `msshop up` moves "
            f"them over (nothing is lost), then run `msshop {command}` again")


def moved_note(names: list[str]) -> str:
    return (f"moved the databases of {', '.join(names)} into a directory each "
            f"(data/<service>/<service>.db), with their -wal and -shm files")


def _move(spec: ServiceSpec, root: Path) -> bool:
    old = spec.legacy_db_path(root)
    present = [file for file in (old.with_name(old.name + end) for end in ("", *BESIDE))
               if os.path.lexists(file)]
    staging = root / "data" / f".{spec.name}.moving"
    if not present and not staging.is_dir():
        return False
    target = spec.data_dir(root)
    if os.path.lexists(old) and os.path.lexists(spec.db_path(root)):
        raise SandboxError(
            f"{spec.name}'s database is in two places: {old} (the layout before each service "
            f"had a directory) and {spec.db_path(root)}; move away the one you do not want "
            f"and run the command again")
    try:
        staging.mkdir(mode=0o700, exist_ok=True)
        for file in present:
            file.rename(staging / file.name)
        if not os.path.lexists(target):
            staging.rename(target)  # the whole service at once
            return True
        staged = sorted(staging.iterdir(), key=lambda f: f.name == spec.db_filename)
        taken = [f.name for f in staged if os.path.lexists(target / f.name)]
        if taken:
            raise SandboxError(
                f"cannot move {spec.name}'s database into {target}: {taken[0]} is there "
                f"already; the files to move wait in {staging}: keep the ones you want "
                f"and run the command again")
        for file in staged:  # the database last: it is found whole, with its WAL
            file.rename(target / file.name)
        staging.rmdir()
    except OSError as exc:
        raise SandboxError(
            f"cannot move {spec.name}'s database into {target}: {exc.strerror}; nothing was "
            f"lost (its files are at {old} or in {staging}); fix that and run the command "
            f"again") from None
    return True


def _sync(folder: Path) -> None:
    """The renames on disk before anything opens the files at their new place."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
