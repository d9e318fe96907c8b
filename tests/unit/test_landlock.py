"""The Landlock ruleset a service starts under (runtime/platform/landlock.py): which paths
it names, that none of them holds the sandbox, the rights masked to the kernel's ABI, and a
rule that cannot be made named in words. Restricting is tried in forked children only
(a ruleset lasts as long as the process: never in the test runner)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import multiprocess
import pytest

from msshop.runtime.platform import landlock
from msshop.runtime.platform.landlock import READ, READ_FILE, Confinement

needs_landlock = pytest.mark.skipif(landlock.abi() < 1, reason="this kernel has no Landlock")


def holds(folder: str, path: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def a_repo_holding_the_sandbox(tmp_path: Path) -> tuple[Path, Path, Path]:
    """`msshop up` run in a directory that has ./sandbox, beside a program of your own."""
    repo = tmp_path / "repo"
    sandbox = repo / "sandbox"
    own = sandbox / "data" / "query"
    own.mkdir(parents=True)
    (sandbox / "data" / "users").mkdir()
    (sandbox / "state.json").write_text("{}")
    (repo / "d.js").write_text("")
    (repo / "lib").mkdir()
    (repo / "lib" / "deep").mkdir()
    return repo, sandbox, own


def test_nothing_that_holds_the_sandbox_is_granted_only_its_other_branches(
        tmp_path: Path) -> None:
    repo, sandbox, own = a_repo_holding_the_sandbox(tmp_path)
    rules = dict(Confinement(own, sandbox, readable=(repo / "d.js", repo)).rules)

    assert next(iter(rules)) == str(own), "its own directory first"
    assert rules[str(own)] == landlock.handled(landlock.abi())
    assert rules[str(repo / "d.js")] == READ and rules[str(repo / "lib")] == READ
    assert str(repo / "lib" / "deep") not in rules, "beneath a granted one: no rule of its own"
    for path in rules:
        if path != str(own):
            assert not holds(path, str(sandbox)), f"{path} holds the sandbox"
            assert not holds(str(sandbox), path), f"{path} is in the sandbox"
    assert rules["/dev/null"] == landlock.READ_FILE | landlock.WRITE_FILE


def test_a_file_in_the_sandbox_is_granted_alone_and_a_folder_there_never(
        tmp_path: Path) -> None:
    _, sandbox, own = a_repo_holding_the_sandbox(tmp_path)
    config = sandbox / "nats" / "bus.conf"
    config.parent.mkdir()
    config.write_text("")
    rules = dict(Confinement(own, sandbox, readable=(config, sandbox / "data" / "users",
                                                     sandbox)).rules)
    assert rules[str(config)] == READ_FILE
    assert str(sandbox / "data" / "users") not in rules and str(sandbox) not in rules


def test_every_right_the_abi_knows_and_no_other() -> None:
    assert not landlock.handled(1) & landlock.REFER
    assert landlock.handled(2) & landlock.REFER and not landlock.handled(2) & landlock.TRUNCATE
    assert landlock.handled(3) & landlock.TRUNCATE
    assert not landlock.handled(4) & landlock.IOCTL_DEV
    assert landlock.handled(5) & landlock.IOCTL_DEV and landlock.handled(7) == landlock.LATEST


def test_a_program_reads_its_executable_and_the_files_it_is_given(tmp_path: Path) -> None:
    (tmp_path / "d.js").write_text("")
    found = landlock.program_files(["/bin/sh", "d.js", "--port", "missing.js"], str(tmp_path))
    assert found == (Path("/bin/sh"), Path("/bin"), tmp_path / "d.js", tmp_path)


def in_a_child(work: Callable[[], Any]) -> Any:
    """`work`'s result (or its error, as text) from a forked child."""
    context = multiprocess.get_context("fork")
    queue = context.Queue()

    def run() -> None:
        try:
            queue.put(work())
        except Exception as exc:
            queue.put(f"{type(exc).__name__}: {exc}")

    child = context.Process(target=run)
    child.start()
    answer = queue.get(timeout=30)
    child.join(10)
    return answer


@needs_landlock
def test_a_rule_that_cannot_be_made_is_named(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    answer = in_a_child(lambda: landlock.restrict([(str(gone), READ)]))
    assert answer == (f"LandlockError: [Errno 2] cannot name {gone} in a Landlock rule: No "
                      f"such file or directory")


@needs_landlock
def test_applied_it_holds_for_the_process_and_what_it_costs(
        tmp_path: Path) -> None:
    _, sandbox, own = a_repo_holding_the_sandbox(tmp_path)
    confinement = Confinement(own, sandbox)

    def applied() -> tuple[int, float, str, str]:
        import time

        start = time.perf_counter()
        count = confinement.apply()
        took = time.perf_counter() - start
        (own / "mine").write_text("ok")
        try:
            (sandbox / "state.json").read_text()
            theirs = "read"
        except PermissionError as exc:
            theirs = exc.strerror or ""
        return count, took, (own / "mine").read_text(), theirs

    count, took, mine, theirs = in_a_child(applied)
    assert (mine, theirs) == ("ok", os.strerror(13))
    assert 10 <= count <= 40, count
    print(f"Landlock set-up: {count} rules in {took * 1e6:.0f} us")  # reported, not judged


def test_where_the_kernel_has_none_up_says_so_and_asks_for_no_rule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(landlock, "abi", lambda: 0)  # an older Linux, macOS
    assert landlock.kernel_rule(True) is False
    assert landlock.kernel_rule_note(True) == (
        "no Landlock on this system (Linux 5.13 or later has it): the isolation rule is "
        "checked only inside msshop's Python services")
    with pytest.raises(landlock.LandlockError, match="this kernel has no Landlock"):
        landlock.restrict([])


def test_turned_off_it_is_said_and_asked_for_nowhere() -> None:
    assert landlock.kernel_rule(False) is False
    assert "turned off ([isolation] kernel = false or MSSHOP_KERNEL_ISOLATION=0)" in (
        landlock.kernel_rule_note(False) or "")
    if landlock.abi() >= 1:
        assert landlock.kernel_rule(True) and landlock.kernel_rule_note(True) is None


@pytest.mark.parametrize(("program", "root"), [
    ("/home/a/.pyenv/shims/python3", "/home/a/.pyenv"),
    ("/home/a/.asdf/shims/node", "/home/a/.asdf"),
    ("/home/a/.volta/bin/node", "/home/a/.volta"),
    ("/usr/bin/python3", None),
    ("/home/a/bin/node", None),
])
def test_a_version_managers_shim_names_the_root_it_runs_from(program: str,
                                                               root: str | None) -> None:
    found = landlock.version_manager(Path(program))
    assert found == (Path(root) if root else None)
