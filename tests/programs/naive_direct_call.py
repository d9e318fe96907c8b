"""A naive N+1 Service D for the challenge tests: the Python reference (its path is the
first argument, so the kernel's rule lets this program read it), with its one products
call for all titles swapped for one call per product. Its answers stay right; rung 2
(batched) must fail it, naming the user and how many requests products got."""

from __future__ import annotations

import importlib.util
import sys

spec = importlib.util.spec_from_file_location("service_d", sys.argv[1])
assert spec is not None and spec.loader is not None
reference = importlib.util.module_from_spec(spec)
sys.modules["service_d"] = reference  # its dataclasses look their module up by name
spec.loader.exec_module(reference)
# the N+1 pattern: one products call per title
reference.product_titles = reference.product_titles_one_by_one  # type: ignore[attr-defined]
reference.main()
