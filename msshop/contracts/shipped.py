"""What ships as data inside the package, which both sides read (the dashboard lists the
experiments): configs/<folder>/*.toml as msshop.configs.<folder> (demos, experiments),
docs/protocol.md as msshop.docs, examples/ as msshop.examples."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any


def toml_files(folder: str) -> dict[str, Any]:
    """The TOML files of configs/<folder> by name (stem): from the installed package, or,
    when msshop runs from a source checkout, from configs/<folder> beside it."""
    found: Any
    try:
        found = resources.files(f"msshop.configs.{folder}")
    except ModuleNotFoundError:
        found = Path(__file__).resolve().parents[2] / "configs" / folder
    return {Path(item.name).stem: item for item in found.iterdir()
            if item.name.endswith(".toml")}


def tree_item(package: str, folder: str) -> Any:
    """msshop.<package> (a Traversable): from the installed package, or, from a source
    checkout, <folder> beside it (docs, examples)."""
    try:
        return resources.files(f"msshop.{package}")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[2] / folder
