"""The code's shape mirrors the runtime rule: services never import each other; the CLI does
not load the server stack for commands that only talk to a running sandbox; only render/
imports rich; ruff and mypy are clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


def tool(name: str) -> str:
    found = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install '.[test]'")
    return found


def test_import_contracts_hold() -> None:
    result = subprocess.run([tool("lint-imports"), "--no-cache"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "A service never imports another service KEPT" in result.stdout


def test_cli_commands_that_talk_to_a_sandbox_do_not_import_the_server_stack() -> None:
    code = (
        "import sys; import msshop.cli, msshop.render, msshop.instruments.client; "
        "import msshop.instruments.seed; "
        "import msshop.runtime.orchestrator.lifecycle, msshop.runtime.orchestrator.service_logs; "
        "heavy = sorted(m for m in ('uvicorn', 'starlette', 'aiohttp', 'uvloop', 'msgspec', "
        "'multiprocess', 'msshop.runtime.platform', 'msshop.runtime.services') "
        "if m in sys.modules); "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert result.stdout.strip() == ""


def test_only_render_imports_rich() -> None:
    offenders = []
    for path in (ROOT / "msshop").rglob("*.py"):
        if path.is_relative_to(ROOT / "msshop" / "render"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "rich" or n.startswith("rich.") for n in names):
                offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_ruff_is_clean() -> None:
    result = subprocess.run([tool("ruff"), "check", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout


def test_mypy_is_clean() -> None:
    result = subprocess.run([tool("mypy")], cwd=ROOT, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout


def test_every_package_in_the_tree_is_installed() -> None:
    """pyproject lists the packages setuptools installs: one left out works in a checkout
    (and an editable install) but not after `pip install .`, where `msshop` fails."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    in_tree = {".".join(init.parent.relative_to(ROOT).parts)
               for init in (ROOT / "msshop").rglob("__init__.py")}
    assert in_tree - listed == set(), "add these to [tool.setuptools] packages in pyproject"
