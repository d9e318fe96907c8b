"""The service protocol as msshop ships it: its text (docs/protocol.md), its typed document
(contracts/protocol.py), and a starting point for a program of your own (`msshop new
service`: a reference program of examples/ and its README, copied into a new directory)."""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path
from typing import TypedDict

from msshop.contracts import protocol
from msshop.contracts.errors import UsageError
from msshop.contracts.shipped import tree_item

#: --lang -> the example's folder, its program, and the interpreter that runs it
STARTERS: dict[str, tuple[str, str, str]] = {
    "python": ("service-d-python", "service.py", "python3"),
    "node": ("service-d-node", "service.js", "node"),
}
#: the services a reference program exists for (the lesson's Service D)
STARTED = ("query",)
REPLACEABLE = ("users", "products", "orders", "query")


class NewService(TypedDict):
    """`msshop new service --json`."""

    service: str
    lang: str
    directory: str
    files: list[str]
    command: str  # the program, as `msshop up --service NAME='...'` takes it
    run: str  # the shell line that runs it as the service


def text() -> str:
    """docs/protocol.md, as shipped."""
    return str(tree_item("docs", "docs").joinpath("protocol.md").read_text())


def document() -> protocol.ProtocolDocument:
    return protocol.document()


def new_service(kind: str, service: str, lang: str, directory: str) -> NewService:
    """Write the reference program for `service` in `lang` and its README into `directory`
    (new, or empty): all of it or nothing (written beside it, then renamed into place)."""
    check_request(kind, service, lang)
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{directory} exists and is not an empty directory; name a new one")
    folder, program, interpreter = STARTERS[lang]
    source = tree_item("examples", "examples").joinpath(folder)
    files = [program, "README.md"]
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        for name in files:
            (staging / name).write_bytes(source.joinpath(name).read_bytes())
        (staging / program).chmod(0o755)
        staging.chmod(0o755)
        staging.replace(target)  # onto an empty directory too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    command = f"{interpreter} {shlex.quote(str(target / program))}"
    return {"service": service, "lang": lang, "directory": directory, "files": files,
            "command": command,
            "run": f"msshop up --service {service}={shlex.quote(command)}"}


def check_request(kind: str, service: str, lang: str) -> None:
    if kind != "service":
        raise UsageError(f"msshop new makes a service only: msshop new service {service} "
                         f"--lang python DIR (not {kind!r})")
    if service == "bus":
        raise UsageError("a program of your own as the bus is not supported yet (it would "
                         "have to check each writer's credential); try: msshop new service "
                         "query")
    if service not in REPLACEABLE:
        raise UsageError(f"unknown service {service!r}; choose one of: "
                         f"{', '.join(REPLACEABLE)}")
    if service not in STARTED:
        raise UsageError(f"no starting point for {service} yet, only for query: "
                         f"msshop new service query --lang python DIR")
    if lang not in STARTERS:
        raise UsageError(f"--lang {lang!r} is not one of: {', '.join(STARTERS)}")
