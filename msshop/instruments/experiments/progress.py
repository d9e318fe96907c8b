"""`msshop experiment --progress FILE`: the run's progress appended to FILE as it goes, one
JSON document a line (contracts/progress.py), each line flushed as it is written, so that a
reader that follows the file (the dashboard) sees the run as the terminal does."""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import IO

from msshop.contracts.errors import InvalidArgument
from msshop.contracts.progress import ProgressLine


class ProgressFile:
    def __init__(self, path: Path) -> None:
        try:
            self._file: IO[str] = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise InvalidArgument(f"cannot write the progress into {path}: "
                                  f"{exc.strerror or exc}; choose another {{progress}}",
                                  "progress") from None

    def __call__(self, line: ProgressLine) -> None:
        try:
            self._file.write(json.dumps(line) + "\n")
            self._file.flush()
        except OSError:
            pass  # a full disk: the run goes on, and its report says how it went

    def __enter__(self) -> ProgressFile:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._file.close()
