"""A tqdm progress bar for the backup commands, silent when not on a terminal or -v 0."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tqdm import tqdm


@contextmanager
def progress_bar(
    *, desc: str, total: int | None = None, unit: str = "B", enabled: bool = True, **extra: Any
) -> Iterator[Callable[[int], None]]:
    bytes_unit = unit == "B"
    bar = tqdm(
        total=total,
        desc=desc,
        unit=unit,
        unit_scale=bytes_unit,
        unit_divisor=1024 if bytes_unit else 1000,
        disable=not enabled or not sys.stderr.isatty(),
        dynamic_ncols=True,
        **extra,
    )
    try:
        yield bar.update
    finally:
        bar.close()
