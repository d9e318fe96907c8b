"""What ships as data inside the package: configs/<folder>/*.toml as msshop.configs.<folder>
(demos, experiments)."""

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
